"""`rlhf compare`: judge policy checkpoints side by side on the same prompts, samples and seeds.

A checkpoint may also be `<policy>+bon:N`: Best-of-N over that policy, its answers picked by `--reward`
(rlhf.evaluation.best_of_n). Per checkpoint: reward-model score (mean, 95% bootstrap CI), gold-judge accuracy (when the prompts are a task's
with a gold judge, see rlhf.tasks) and, when the task's judge has parts (the constraints task's constraint types),
the rate of each part, greedy and sampled; for a task that names what an answer should be about, the share of
answers on topic by a lexical proxy and of those both on topic and judged correct (rlhf.evaluation.on_topic);
response length, distinct-1/2, ROUGE-L against reference outputs, KL to a reference checkpoint. Between checkpoints: win-rate
matrices by gold judge and by reward model with bootstrap CIs. Per method against the baseline (the SFT policy):
one comparison table (win-rates, KL, length, the wall time and peak memory its stage recorded, tokens generated
per answer) and a headline sentence (rlhf.evaluation.table). Plus a temperature x top-p sweep, training curves
and reward over-optimisation for trained stages (their saved checkpoints' gold score against reward-model score;
gold score alone when no reward model is given). Writes metrics.json, report.md, a self-contained report.html
(plots inlined as PNG data URIs, a per-prompt explorer) and responses.jsonl (every response generated, with its
scores); optionally each checkpoint's greedy answers as AlpacaEval `model_outputs.json`.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from rlhf import tasks
from rlhf.argparse_utils import ArgumentParser, float_in, int_at_least
from rlhf.errors import UserError, exit_on_user_error
from rlhf.evaluation import best_of_n
from rlhf.evaluation.on_topic import on_topic
from rlhf.evaluation.plots import (
    plot_gold_by_checkpoint,
    plot_overoptimisation,
    plot_sweep,
    plot_training_curves,
    plot_winrates,
)
from rlhf.evaluation.report import report_files
from rlhf.evaluation.stats import bootstrap_ci, distinct_n, winrate_matrix
from rlhf.evaluation.table import comparison_rows, explorer_rows, headlines, prompt_outcomes
from rlhf.generate import Completion, SamplingParams, generate, response_logprobs
from rlhf.io import atomic_write_files, atomic_write_jsonl, require_writable_dir
from rlhf.lifecycle import PeakMemory
from rlhf.logs import LOG_FILE
from rlhf.models import ModelSource, locate_model
from rlhf.models import load_policy as load_policy_model
from rlhf.paths import refuse_overlap
from rlhf.prompt_rows import load_prompt_rows
from rlhf.tasks import Task
from rlhf.templates import TEMPLATES, display_prompt, render_prompt, render_prompts
from rlhf.training import complete_checkpoints

ROUGE_METRIC = Path(__file__).parent / "metrics" / "rouge_l.py"


@dataclass
class Policy:
    name: str
    path: Path
    kind: str
    model: object = field(repr=False)
    tokenizer: object = field(repr=False)
    template: str = "alpaca"
    manifest: dict | None = field(default=None, repr=False)  # a finished stage's (its wall time, peak memory)
    best_of: int = 0  # N for Best-of-N over this policy, 0 for the policy itself

    @property
    def spec(self) -> str:
        """How the command line names it: the path, or `<path>+bon:N`."""
        return f"{self.path}+bon:{self.best_of}" if self.best_of else str(self.path)


@dataclass
class Run:
    """One policy's responses to every prompt under one sampling setting, with their scores."""

    samples: list[list[Completion]]
    gold: list[list[float]] | None = None
    rm: list[list[float]] | None = None
    parts: list[list[dict[str, bool]]] | None = None  # the gold judgement's parts, when the task has them
    # per answer, when the task names what an answer should be about (rlhf.evaluation.on_topic)
    on_topic: list[list[bool]] | None = None

    def per_prompt(self) -> tuple:
        """Every per-prompt list after `samples`, in field order (None where absent)."""
        return self.gold, self.rm, self.parts, self.on_topic


def first_prompts(run: Run, n: int) -> Run:
    """`run` cut to its first `n` prompts (every per-prompt list cut alike)."""
    return Run(run.samples[:n], *(None if xs is None else xs[:n] for xs in run.per_prompt()))


# ----------------------------------------------------------------------------------------------- evaluation


def load_policy(
    source: ModelSource | str | Path, name: str | None = None, template: str | None = None
) -> Policy:
    """A stage is named by its kind (sft, ppo), anything else by its dir name; `template` for a model without a
    manifest."""
    loaded = load_policy_model(source, device="auto", template=template)
    src = loaded.source
    default = src.kind if src.stage is not None else Path(src.path).name
    manifest = src.stage.manifest if src.stage is not None else None
    return Policy(
        name or default, Path(src.path), src.kind, loaded.model, loaded.tokenizer, src.template, manifest
    )


def run_best_of_n(
    pol: Policy,
    prompts: list[dict],
    params: SamplingParams,
    scorer,
    batch_size: int,
    task: Task | None,
    drawn: Run | None = None,
    drawn_n: int = 0,
) -> tuple[Run, Run, Run]:
    """(candidates, sampled, greedy) of Best-of-N over `pol`: `params.num_samples` answers per prompt, each the
    reward model's pick of `pol.best_of` samples drawn at `params`; `greedy` holds each prompt's first pick (Best-of-N
    always samples: it has no greedy decoding). `candidates` holds every sample drawn, in groups of N.
    `drawn`: candidates already drawn from the same policy at the same settings in groups of `drawn_n` >= N
    (a larger Best-of-N's); then the first N of each group are this one's candidates (nested Best-of-N, as in
    Gao et al. 2022: the same i.i.d. samples, N of them, so nothing is drawn again)."""
    n = pol.best_of
    if drawn is not None:
        keep = [[g + i for g in range(0, len(s), drawn_n) for i in range(n)] for s in drawn.samples]
        cands = _subset(drawn, keep)
    else:
        cand_params = replace(params, num_samples=params.num_samples * n)
        cands = run_policy(pol, prompts, cand_params, scorer, max(1, batch_size // n), task)
    picks = best_of_n.select(cands.samples, cands.rm, n)
    return cands, _subset(cands, picks), _subset(cands, [p[:1] for p in picks])


def _subset(run: Run, keep: list[list[int]]) -> Run:
    """`run`'s samples (and their scores) at indices `keep[i]` for prompt i."""

    def take(rows):
        return None if rows is None else [[row[j] for j in ks] for row, ks in zip(rows, keep)]

    return Run(take(run.samples), *(take(xs) for xs in run.per_prompt()))


def generated_tokens(run: Run) -> int:
    return sum(c.num_tokens for s in run.samples for c in s)


def stage_cost(pol: Policy) -> dict:
    """The wall time and peak memory a finished stage recorded in its manifest (what is there of them)."""
    m = pol.manifest or {}
    out = {}
    if isinstance(m.get("started_at"), (int, float)) and isinstance(m.get("finished_at"), (int, float)):
        out["stage_seconds"] = float(m["finished_at"] - m["started_at"])
    peak = m.get("peak_memory") if isinstance(m.get("peak_memory"), dict) else {}
    for key, name in (("rss_mib", "stage_peak_rss_mib"), ("gpu_mib", "stage_peak_gpu_mib")):
        if isinstance(peak.get(key), (int, float)):
            out[name] = float(peak[key])
    return out


def run_policy(
    pol: Policy,
    prompts: list[dict],
    params: SamplingParams,
    scorer=None,
    batch_size: int = 64,
    task: Task | None = None,
) -> Run:
    """Responses to every prompt, scored by `task`'s gold judge (when given) and by `scorer` (when given)."""
    texts = render_prompts(prompts, pol.template, pol.tokenizer)
    samples = generate(pol.model, pol.tokenizer, texts, params, batch_size=batch_size, template=pol.template)
    run = Run(samples)
    if task is not None:
        run.gold = [[task.judge(p, c.text, c.finished) for c in s] for p, s in zip(prompts, samples)]
        if task.breakdown_metric:
            run.parts = [[task.breakdown(p, c.text, c.finished) for c in s] for p, s in zip(prompts, samples)]
        topics = [task.topic(p) for p in prompts]
        if any(t is not None for t in topics):
            run.on_topic = [[on_topic(t, c.text) for c in s] for t, s in zip(topics, samples)]
    if scorer is not None:
        flat_p = [p for p, s in zip(prompts, samples) for _ in s]
        flat = scorer.score(flat_p, [c.text for s in samples for c in s])
        k = params.num_samples
        run.rm = [flat[i * k : (i + 1) * k] for i in range(len(samples))]
    return run


def response_rows(
    name: str,
    path: Path,
    prompts: list[dict],
    run: Run,
    setting: str,
    params: SamplingParams,
    task: Task | None,
    best_of: int = 0,
) -> list[dict]:
    """responses.jsonl's rows for one run: one per (prompt, sample), with the prompt as given and as displayed,
    where the answer came from (checkpoint, sampling setting) and its gold and reward-model scores (null when the
    prompts are no task's with a judge, or no reward model was given). Best-of-N's rows carry `best_of` in
    `sampling`; its setting `bon_candidates` holds every sample it drew (sample_index // N: the pick it was one of
    the candidates for)."""
    sampling = {k: v for k, v in params.to_dict().items() if k != "num_samples"}
    if best_of:
        sampling["best_of"] = best_of
    return [
        {
            "prompt_index": i,
            "instruction": p["instruction"],
            "input": p.get("input", ""),
            "prompt": display_prompt(p["instruction"], p.get("input", "")),
            "task": task.name if task is not None else None,
            "checkpoint": name,
            "checkpoint_path": str(path),
            "setting": setting,
            "sampling": sampling,
            "sample_index": j,
            "response": c.text,
            "finished": c.finished,
            "num_tokens": c.num_tokens,
            "gold_score": run.gold[i][j] if run.gold is not None else None,
            "on_topic": run.on_topic[i][j] if run.on_topic is not None else None,
            "reward_score": run.rm[i][j] if run.rm is not None else None,
        }
        for i, (p, samples) in enumerate(zip(prompts, run.samples))
        for j, c in enumerate(samples)
    ]


def alpaca_eval_outputs(prompts: list[dict], run: Run, generator: str) -> list[dict]:
    """AlpacaEval's model_outputs.json rows: the whole user instruction (its input included, as AlpacaEval's
    instructions hold it) and the run's first answer to it."""
    return [
        {
            "instruction": display_prompt(p["instruction"], p.get("input", "")),
            "output": s[0].text,
            "generator": generator,
        }
        for p, s in zip(prompts, run.samples)
    ]


def kl_to_reference(pol: Policy, ref: Policy, prompts: list[dict], run: Run, temperature: float) -> float:
    """Monte-Carlo KL(policy || reference) in nats per response, on the policy's own samples."""
    texts, resps, fins = [], [], []
    for p, s in zip(prompts, run.samples):
        for c in s:
            texts.append(render_prompt(p, pol.template, pol.tokenizer))
            resps.append(c.text)
            fins.append(c.finished)
    lp = response_logprobs(
        pol.model, pol.tokenizer, texts, resps, temperature=temperature, finished=fins, template=pol.template
    )
    lr = response_logprobs(
        ref.model, ref.tokenizer, texts, resps, temperature=temperature, finished=fins, template=pol.template
    )
    return statistics.fmean(a - b for a, b in zip(lp, lr))


def part_rates(parts: list[list[dict[str, bool]]]) -> dict[str, float]:
    """Per part of the gold judgement (e.g. constraint type), in order of first appearance: the share of the
    responses to prompts that have this part which satisfy it."""
    counts: dict[str, list[int]] = {}
    for per_prompt in parts:
        for answer in per_prompt:
            for part, ok in answer.items():
                c = counts.setdefault(part, [0, 0])
                c[0] += bool(ok)
                c[1] += 1
    return {part: met / total for part, (met, total) in counts.items()}


def breakdown_metrics(task: Task, name: str, runs: dict[str, Run]) -> dict:
    """`<name>.<task.breakdown_metric>[_sampled].<part>`: per-part rates of a checkpoint's greedy and sampled runs."""
    m = {}
    for mode, suffix in (("greedy", ""), ("sampled", "_sampled")):
        if runs[mode].parts is not None:
            for part, rate in part_rates(runs[mode].parts).items():
                m[f"{name}.{task.breakdown_metric}{suffix}.{part}"] = rate
    return m


def summarise(name: str, run: Run, refs: list[str] | None, suffix: str = "") -> dict:
    m: dict = {}
    flat_text = [c.text for s in run.samples for c in s]
    if run.gold is not None:
        flat_gold = [g for gs in run.gold for g in gs]
        m[f"{name}.gold_accuracy{suffix}"] = sum(g > 0 for g in flat_gold) / len(flat_gold)
        m[f"{name}.gold_score{suffix}"] = statistics.fmean(flat_gold)
    if run.on_topic is not None:
        # Answers sharing a content word with their instruction, and those that also satisfy the judge: how much of
        # a gold gain is answers that no longer address the instruction (the judge does not check relevance).
        flat_topic = [t for ts in run.on_topic for t in ts]
        m[f"{name}.on_topic{suffix}"] = sum(flat_topic) / len(flat_topic)
        if run.gold is not None:
            met = sum(g > 0 and t for g, t in zip(flat_gold, flat_topic))
            m[f"{name}.gold_accuracy_on_topic{suffix}"] = met / len(flat_topic)
    if run.rm is not None:
        per_prompt = [statistics.fmean(r) for r in run.rm]
        m[f"{name}.rm_score_mean{suffix}"] = statistics.fmean(per_prompt)
        m[f"{name}.rm_score_mean{suffix}_ci_low"], m[f"{name}.rm_score_mean{suffix}_ci_high"] = bootstrap_ci(
            per_prompt
        )
    m[f"{name}.response_length{suffix}"] = statistics.fmean(len(t.split()) for t in flat_text)
    m[f"{name}.finished{suffix}"] = sum(c.finished for s in run.samples for c in s) / len(flat_text)
    m[f"{name}.distinct_1{suffix}"] = distinct_n(flat_text, 1)
    m[f"{name}.distinct_2{suffix}"] = distinct_n(flat_text, 2)
    if refs is not None:
        import evaluate

        rouge = evaluate.load(str(ROUGE_METRIC))
        preds = [s[0].text for s in run.samples]
        m[f"{name}.rougeL{suffix}"] = rouge.compute(predictions=preds, references=refs)["rougeL"]
    return m


def compare(
    paths: list[str],
    prompts_path: str,
    out: str | Path,
    *,
    reference: str | None = None,
    reward: str | None = None,
    names: list[str] | None = None,
    limit: int | None = None,
    temperature: float = 0.7,
    top_p: float = 1.0,
    top_k: int = 0,
    num_samples: int = 4,
    max_new_tokens: int = 32,
    seed: int = 0,
    sweep_temperatures: tuple[float, ...] = (0.3, 0.7, 1.0),
    sweep_top_ps: tuple[float, ...] = (0.9, 1.0),
    sweep_prompts: int = 100,
    overopt_prompts: int = 100,
    labels_db: str | None = None,
    export_pairs: str | None = None,
    batch_size: int = 64,
    export_alpaca_eval: str | Path | None = None,
    template: str | None = None,
) -> dict:
    """Compare `paths`' checkpoints on `prompts_path`'s prompts; writes the report to `out` and, when
    `export_alpaca_eval` is given, each checkpoint's greedy answers to `<export_alpaca_eval>/<name>/model_outputs.json`.
    Returns the metrics (also in `out`/metrics.json)."""
    started = time.time()
    prompts = load_prompt_rows(prompts_path)[:limit]
    refs = [p["output"] for p in prompts] if all(p.get("output") for p in prompts) else None
    if names and len(names) != len(paths):
        raise UserError(
            f"--names has {len(names)} names for {len(paths)} checkpoints", "command line", "--names"
        )
    specs = [best_of_n.parse_spec(str(p)) for p in paths]
    if any(n for _, n in specs) and not reward:
        raise UserError(
            "Best-of-N (<policy>+bon:N) needs --reward: its reward model picks the answers",
            "command line",
            "--reward",
        )
    # Every model is located (unfinished, wrong kind, missing, damaged: refused) before any loads.
    sources = [locate_model(p, role="policy") for p, _ in specs]
    reward_source = locate_model(reward, role="reward") if reward else None
    reference_source = locate_model(reference, role="policy") if reference else None
    task = tasks.detect(prompts)  # the gold judge, when the prompts are a known task's
    scorer = None
    if reward_source is not None:
        from rlhf.evaluation.scoring import RewardScorer

        scorer = RewardScorer.from_stage(reward_source, template=template)
    out = require_writable_dir(out)  # refused now, not after minutes of generation
    if export_alpaca_eval is not None:
        export_alpaca_eval = require_writable_dir(export_alpaca_eval)
        for n in names or []:  # given names now, names taken from dir names (e.g. "" for ".") once loaded
            _check_dir_name(n)
    policies = _load_policies(specs, sources, names, template)
    names = [p.name for p in policies]
    if export_alpaca_eval is not None:
        for n in names:
            _check_dir_name(n)
    ref_policy = None
    if reference:
        ref_policy = next(
            (p for p in policies if not p.best_of and p.path.resolve() == Path(reference).resolve()), None
        ) or load_policy(reference_source, "reference", template)
    ref_name = None
    if ref_policy is not None:
        ref_name = ref_policy.name if ref_policy.name != "reference" else Path(reference).name
    # What every method is measured against: the reference when it is compared too, else the first SFT policy.
    baseline = (
        ref_policy.name
        if any(ref_policy is p for p in policies)
        else next((p.name for p in policies if p.kind == "sft" and not p.best_of), names[0])
    )

    greedy = SamplingParams(0.0, 0, 1.0, max_new_tokens, 1, seed)
    sampled = SamplingParams(temperature, top_k, top_p, max_new_tokens, num_samples, seed)
    metrics: dict = {
        "num_prompts": len(prompts),
        "checkpoints": {p.name: p.spec for p in policies},
        "sampling": sampled.to_dict(),
        "baseline": baseline,
    }
    runs: dict[str, dict[str, Run]] = {}
    responses: list[dict] = []  # every answer generated below, for responses.jsonl
    # Best-of-N policies over one base policy share their samples: the largest N is drawn once (first in the
    # loop's order of need) and a smaller N takes the first N of each of its groups (nested Best-of-N).
    largest = {}
    for p in policies:
        if p.best_of:
            largest[p.path] = max(largest.get(p.path, 0), p.best_of)
    drawn: dict = {}  # base path -> (candidates in groups of largest N, seconds it took to draw and score them)
    for pol in policies:
        if pol.best_of:
            started_bon, memory = time.time(), PeakMemory()
            big = largest[pol.path]
            if big > pol.best_of and pol.path not in drawn:
                cands_big, *_ = run_best_of_n(
                    replace(pol, best_of=big), prompts, sampled, scorer, batch_size, task
                )
                drawn[pol.path] = (cands_big, time.time() - started_bon)
            shared = drawn.get(pol.path)
            cands, sampled_run, greedy_run = run_best_of_n(
                pol, prompts, sampled, scorer, batch_size, task, *((shared[0], big) if shared else ())
            )
            if shared is None:  # this is the largest N: the smaller ones nest in its samples
                drawn[pol.path] = (cands, time.time() - started_bon)
            # Best-of-N trains nothing: its cost is this sampling and scoring, measured here; a nested one's is
            # its share (N / largest N) of the shared draw's time.
            metrics[f"{pol.name}.stage_seconds"] = (
                shared[1] * pol.best_of / big if shared else time.time() - started_bon
            )
            peak = memory.read()
            metrics[f"{pol.name}.stage_peak_rss_mib"] = peak["rss_mib"]
            if peak["gpu_mib"] is not None:
                metrics[f"{pol.name}.stage_peak_gpu_mib"] = peak["gpu_mib"]
            runs[pol.name] = {"greedy": greedy_run, "sampled": sampled_run}
            if cands.gold is not None and cands.rm is not None:
                # Does the reward model find the gold judge's best candidates? Held against "the shorter answer
                # wins" and against a perfect pick (what reranking could reach with these samples).
                lengths = [[c.num_tokens for c in s] for s in cands.samples]
                agreement = best_of_n.candidate_agreement(cands.gold, cands.rm, lengths, pol.best_of)
                for key, value in agreement.items():
                    if value is not None:
                        metrics[f"{pol.name}.candidates_{key}"] = value
            tokens = generated_tokens(cands)
            rows_params = [("greedy", greedy_run, sampled), ("sampled", sampled_run, sampled),
                           ("bon_candidates", cands, sampled)]  # fmt: skip
        else:
            runs[pol.name] = {
                "greedy": run_policy(pol, prompts, greedy, scorer, batch_size, task),
                "sampled": run_policy(pol, prompts, sampled, scorer, batch_size, task),
            }
            metrics.update({f"{pol.name}.{k}": v for k, v in stage_cost(pol).items()})
            tokens = generated_tokens(runs[pol.name]["greedy"]) + generated_tokens(runs[pol.name]["sampled"])
            rows_params = [("greedy", runs[pol.name]["greedy"], greedy),
                           ("sampled", runs[pol.name]["sampled"], sampled)]  # fmt: skip
        for setting, run, params in rows_params:
            responses += response_rows(pol.name, pol.spec, prompts, run, setting, params, task, pol.best_of)
        metrics.update(summarise(pol.name, runs[pol.name]["greedy"], refs))
        metrics.update(summarise(pol.name, runs[pol.name]["sampled"], None, "_sampled"))
        if task is not None and task.breakdown_metric:
            metrics.update(breakdown_metrics(task, pol.name, runs[pol.name]))
        # Cost in generated tokens: all of them, and per answer at the sampling settings (N samples for Best-of-N).
        answers = len(prompts) * num_samples
        metrics[f"{pol.name}.generated_tokens"] = tokens
        metrics[f"{pol.name}.generated_tokens_per_answer"] = (
            (tokens if pol.best_of else generated_tokens(runs[pol.name]["sampled"])) / answers
            if answers
            else 0.0
        )
        if ref_policy is None or ref_policy is pol or temperature <= 0:
            continue
        if not pol.best_of:
            metrics[f"{pol.name}.kl_to_{ref_name}"] = kl_to_reference(
                pol, ref_policy, prompts, runs[pol.name]["sampled"], temperature
            )
        elif pol.path.resolve() == ref_policy.path.resolve():
            metrics[f"{pol.name}.kl_to_{ref_name}"] = best_of_n.kl_bound(pol.best_of)
            metrics.setdefault("kl_bounds", {})[pol.name] = "log N - (N-1)/N, an upper bound (Best-of-N)"

    matrices = {}
    for judge_name, attr in (("gold", "gold"), ("rm", "rm")):
        for mode in ("greedy", "sampled"):
            scores = {n: getattr(runs[n][mode], attr) for n in names}
            if any(v is None for v in scores.values()):
                continue
            mat = winrate_matrix(scores, seed)
            matrices[f"{judge_name}_{mode}"] = mat
            suffix = "" if mode == "greedy" else "_sampled"
            for i, a in enumerate(names):
                for j, b in enumerate(names):
                    if i != j:
                        key = f"{a}.{judge_name}_winrate_vs_{b}{suffix}"
                        metrics[key] = mat["winrate"][i][j]
                        metrics[key + "_ci_low"], metrics[key + "_ci_high"] = (
                            mat["ci_low"][i][j],
                            mat["ci_high"][i][j],
                        )
    metrics["winrate_matrices"] = matrices
    first = runs[names[0]]["greedy"].parts if names else None
    if task is not None and task.breakdown_metric and first is not None:
        # What the report's per-part table needs: the metric's name, what a part is, and how many prompts have each.
        per_prompt = {part: sum(part in s[0] for s in first) for part in part_rates(first)}
        metrics["breakdown"] = {
            "metric": task.breakdown_metric,
            "label": task.breakdown_label,
            "prompts": per_prompt,
        }

    # Sampling sweep: accuracy (or reward) vs diversity per checkpoint (Best-of-N is swept through its policy).
    sweep = []
    sub = prompts[:sweep_prompts]
    for pol in policies if sweep_prompts else []:
        if pol.best_of:
            continue
        for t in sweep_temperatures:
            for tp in sweep_top_ps:
                params = SamplingParams(t, top_k, tp, max_new_tokens, 1, seed)
                run = run_policy(pol, sub, params, scorer, batch_size, task)
                responses += response_rows(pol.name, pol.path, sub, run, "sweep", params, task)
                s = summarise(pol.name, run, None)
                point = {
                    "name": pol.name,
                    "temperature": t,
                    "top_p": tp,
                    "distinct_2": s[f"{pol.name}.distinct_2"],
                }
                if f"{pol.name}.gold_accuracy" in s:
                    point["gold_accuracy"] = s[f"{pol.name}.gold_accuracy"]
                if f"{pol.name}.rm_score_mean" in s:
                    point["rm_score_mean"] = s[f"{pol.name}.rm_score_mean"]
                sweep.append(point)
    metrics["sweep"] = sweep

    plots: dict[str, bytes] = {}
    # Trained stages (ppo, dpo, rloo, ...): training curves, and reward over-optimisation across saved checkpoints.
    # Without a reward model (a run rewarded by the judge itself, say) the checkpoints' gold scores alone still show
    # where training helped and where it stopped: `<name>.checkpoints` and its plot.
    base = next((p for p in policies if p.name == baseline), None)
    for pol in policies:
        if pol.best_of or pol.manifest is None or pol.kind == "sft":
            continue
        log = pol.path / LOG_FILE
        if log.is_file() and (png := plot_training_curves(log, pol.kind)):
            plots[f"{pol.kind}_curves_{pol.name}"] = png
        ckpts = complete_checkpoints(pol.path)
        if ckpts and (scorer is not None or task is not None) and overopt_prompts:
            sub = prompts[:overopt_prompts]
            points = []
            # The start and the final policy answered these prompts greedily above: their points reuse those
            # answers (the report's own numbers on this subset). Each saved checkpoint is loaded, run and let go
            # in turn, so a long run's checkpoints never sit in memory together.
            labelled = []
            if base is not None and base.kind == "sft":
                labelled.append(("sft", first_prompts(runs[base.name]["greedy"], len(sub))))
            for d in ckpts:
                ckpt = load_policy(d)
                r = run_policy(ckpt, sub, greedy, scorer, batch_size, task)
                responses += response_rows(f"{pol.name}/{d.name}", ckpt.path, sub, r, "greedy", greedy, task)
                labelled.append((d.name, r))
                del ckpt
            labelled.append(("final", first_prompts(runs[pol.name]["greedy"], len(sub))))
            for label, r in labelled:
                point = {"label": label}
                if r.rm is not None:
                    point["rm_score"] = statistics.fmean(x[0] for x in r.rm)
                if r.gold is not None:
                    point["gold_score"] = statistics.fmean(x[0] for x in r.gold)
                points.append(point)
            if scorer is not None:
                metrics[f"{pol.name}.overoptimisation"] = points
                if png := plot_overoptimisation(points, pol.kind):
                    plots[f"overoptimisation_{pol.name}"] = png
            else:
                metrics[f"{pol.name}.checkpoints"] = points
                if png := plot_gold_by_checkpoint(points, pol.kind):
                    plots[f"checkpoints_{pol.name}"] = png
    if png := plot_winrates(metrics, names, baseline):
        plots["winrates"] = png
    if png := plot_sweep(sweep):
        plots["sampling_sweep"] = png

    if labels_db:
        from rlhf.label import human_winrate

        metrics["human"] = human_winrate(labels_db)
    if export_pairs and len(policies) >= 2:
        a, b = names[:2]
        rows = [
            {
                "id": f"c{i:05d}",
                "instruction": p["instruction"],
                "input": p.get("input", ""),
                "prompt": display_prompt(p["instruction"], p.get("input", "")),
                **({"messages": p["messages"]} if p.get("messages") else {}),
                "responses": [runs[a]["sampled"].samples[i][0].text, runs[b]["sampled"].samples[i][0].text],
                "sources": [a, b],
            }
            for i, p in enumerate(prompts)
        ]
        atomic_write_jsonl(export_pairs, rows)

    if export_alpaca_eval is not None:
        # Before the report: an export that cannot be written leaves the old report (and its metrics.json) as is.
        atomic_write_files(
            export_alpaca_eval,
            {
                f"{n}/model_outputs.json": json.dumps(
                    alpaca_eval_outputs(prompts, runs[n]["greedy"], n), indent=2, ensure_ascii=False
                )
                + "\n"
                for n in names
            },
        )
    metrics["compare_seconds"] = time.time() - started
    # Per prompt, each method's greedy answer against the baseline's, by the gold judge (else the reward model).
    judge = "gold" if task is not None else "rm" if scorer is not None else None
    greedy_runs = {n: runs[n]["greedy"] for n in names}
    outcomes = prompt_outcomes(greedy_runs, baseline, judge)
    metrics["comparison"] = comparison_rows(metrics, names, baseline, outcomes, judge)
    metrics["headlines"] = headlines(metrics["comparison"], len(prompts))
    prompt_texts = [display_prompt(p["instruction"], p.get("input", "")) for p in prompts]
    explorer = explorer_rows(prompt_texts, greedy_runs, outcomes)
    # All files of the report are written before any replaces its old version, metrics.json (what marks a report
    # finished) last: a full disk or a kill never leaves new plots next to an old metrics.json.
    files = report_files(metrics, plots, explorer, names)
    atomic_write_files(
        out,
        {
            **files,
            "responses.jsonl": "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in responses),
            "metrics.json": json.dumps(metrics, indent=2, ensure_ascii=False) + "\n",
        },
    )
    return metrics


def _load_policies(
    specs: list[tuple[str, int | None]], sources, names: list[str] | None, template: str | None = None
) -> list[Policy]:
    """One Policy per command-line checkpoint, each model loaded once (Best-of-N shares its policy's). Best-of-N
    over the SFT policy is named bonN, over another one <its name>-bonN; names that repeat get their index."""
    loaded: dict[str, Policy] = {}
    policies = []
    for i, ((_, n), src) in enumerate(zip(specs, sources)):
        key = str(Path(src.path).resolve()) if Path(src.path).exists() else src.path
        pol = loaded.get(key) or load_policy(src, template=template)
        loaded[key] = pol
        given = names[i] if names else None
        if n is None:
            policies.append(replace(pol, name=given or pol.name))
        else:
            default = f"bon{n}" if pol.kind == "sft" else f"{pol.name}-bon{n}"
            policies.append(replace(pol, name=given or default, best_of=n))
    if len({p.name for p in policies}) < len(policies):
        policies = [replace(p, name=f"{p.name}{i}") for i, p in enumerate(policies)]
    return policies


def _check_dir_name(name: str) -> None:
    """A checkpoint name must be usable as one folder name of the AlpacaEval export."""
    if name in ("", ".", "..") or "/" in name or "\\" in name:
        raise UserError(
            f"checkpoint name {name!r} cannot name an export folder (no '/', '\\', '.' or '..'); "
            "pick names with --names",
            "command line",
            "--names",
        )


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise UserError(f"expected comma-separated numbers, got {text!r}", "command line") from None


@exit_on_user_error
def cli(argv=None, prog="rlhf compare") -> int:
    p = ArgumentParser(prog=prog, description="Compare policy checkpoints on the same prompts and samples.")
    p.add_argument(
        "checkpoints",
        nargs="+",
        help="finished sft/ppo stage dirs (or checkpoint-N, adapter or HF model dirs); POLICY+bon:N is Best-of-N "
        "over POLICY (N samples at --temperature/--top-p/--top-k, --reward keeps the best; e.g. runs/demo/sft+bon:16)",
    )
    p.add_argument(
        "--prompts",
        required=True,
        help="Alpaca rows, `prompt` strings or message lists, or `messages`; outputs (Alpaca `output`, "
        "`completion`, a final assistant reply), if present, are ROUGE references",
    )
    p.add_argument(
        "--template",
        choices=TEMPLATES,
        default=None,
        help="prompt template for models without a manifest (default alpaca; chat: the tokenizer's own)",
    )
    p.add_argument("--out", required=True, help="report dir")
    p.add_argument("--reference", help="checkpoint to measure KL against (e.g. the SFT dir)")
    p.add_argument(
        "--reward", help="reward stage (or reward model) dir for reward-model scores and win-rates"
    )
    p.add_argument("--names", help="comma-separated display names")
    p.add_argument("--limit", type=int_at_least(1))
    p.add_argument("--temperature", type=float_in(0), default=0.7, help="0 = greedy")
    p.add_argument("--top-p", type=float_in(0, 1, low_open=True), default=1.0)
    p.add_argument("--top-k", type=int_at_least(0), default=0)
    p.add_argument("--num-samples", type=int_at_least(1), default=4)
    p.add_argument("--max-new-tokens", type=int_at_least(1), default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sweep-temperatures", default="0.3,0.7,1.0")
    p.add_argument("--sweep-top-ps", default="0.9,1.0")
    p.add_argument(
        "--sweep-prompts",
        type=int_at_least(0),
        default=100,
        help="prompts per sweep point (0 disables the sweep)",
    )
    p.add_argument(
        "--overopt-prompts",
        type=int_at_least(0),
        default=100,
        help="prompts each saved checkpoint of a trained stage answers (greedy) for the over-optimisation plot: gold "
        "against reward-model score, or gold alone without --reward (0 disables it)",
    )
    p.add_argument("--labels-db", help="labeling app db: include the human win-rate")
    p.add_argument(
        "--export-pairs", help="write the first two checkpoints' responses for blind human comparison"
    )
    p.add_argument(
        "--export-alpaca-eval",
        metavar="DIR",
        help="also write each checkpoint's greedy answers as DIR/<name>/model_outputs.json for AlpacaEval "
        "(instruction, output, generator = the checkpoint name)",
    )
    a = p.parse_args(argv)
    refuse_overlap(
        {"CHECKPOINTS": [best_of_n.parse_spec(c)[0] for c in a.checkpoints], "--prompts": a.prompts,
         "--reference": a.reference, "--reward": a.reward, "--labels-db": a.labels_db},
        {"--out": a.out, "--export-pairs": a.export_pairs},
    )  # fmt: skip
    m = compare(
        a.checkpoints,
        a.prompts,
        a.out,
        reference=a.reference,
        reward=a.reward,
        names=a.names.split(",") if a.names else None,
        limit=a.limit,
        temperature=a.temperature,
        top_p=a.top_p,
        top_k=a.top_k,
        num_samples=a.num_samples,
        max_new_tokens=a.max_new_tokens,
        seed=a.seed,
        sweep_temperatures=_floats(a.sweep_temperatures),
        sweep_top_ps=_floats(a.sweep_top_ps),
        sweep_prompts=a.sweep_prompts,
        overopt_prompts=a.overopt_prompts,
        labels_db=a.labels_db,
        export_pairs=a.export_pairs,
        export_alpaca_eval=a.export_alpaca_eval,
        template=a.template,
    )
    print(f"compare: report at {Path(a.out) / 'report.html'}")
    for k, v in m.items():
        if "winrate_vs" in k and not k.endswith(("_ci_low", "_ci_high")):
            print(f"  {k}: {v:.3f} [{m[k + '_ci_low']:.3f}, {m[k + '_ci_high']:.3f}]")
    return 0
