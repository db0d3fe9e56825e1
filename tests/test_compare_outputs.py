"""`rlhf compare` keeps every answer (responses.jsonl), exports AlpacaEval model outputs, and scores ROUGE-L right
on text that is not ASCII."""

from __future__ import annotations

import functools
import json
import statistics
from fractions import Fraction

import evaluate
import pytest
from rouge_score import rouge_scorer

from rlhf import tasks
from rlhf.errors import UserError
from rlhf.evaluation.compare import ROUGE_METRIC, compare
from rlhf.evaluation.metrics.rouge_l import UnicodeTokenizer
from rlhf.io import atomic_write_json
from tests.conftest import run_cli

ROW_FIELDS = {
    "prompt_index", "instruction", "input", "prompt", "task", "checkpoint", "checkpoint_path", "setting",
    "sampling", "sample_index", "response", "finished", "num_tokens", "gold_score", "reward_score", "on_topic",
}  # fmt: skip


# ----------------------------------------------------------------------------------------------- ROUGE-L


@functools.cache
def rouge_metric():
    return evaluate.load(str(ROUGE_METRIC))


def rouge_l(prediction: str, reference: str) -> float:
    return rouge_metric().compute(predictions=[prediction], references=[reference])["rougeL"]


def f1(lcs: int, n_pred: int, n_ref: int) -> float:
    p, r = Fraction(lcs, n_pred), Fraction(lcs, n_ref)
    return float(2 * p * r / (p + r))


@pytest.mark.parametrize(
    "text",
    [
        "나는 오늘 학교에 간다",
        "我今天去学校",
        "東京タワーへ行きます",
        "Él comió una manzana en la café crème",
        "Ça, c'est déjà très bien",
    ],
)
def test_identical_non_ascii_texts_score_one(text):
    assert rouge_l(text, text) == pytest.approx(1.0)


def test_rouge_scores_own_tokenizer_drops_korean_and_chinese():
    """Why rouge_l.py brings its own tokenizer: with rouge-score's, identical Korean or Chinese texts score 0."""
    default = rouge_scorer.RougeScorer(["rougeL"])
    for text in ("나는 오늘 학교에 간다", "我今天去学校"):
        assert default.score(text, text)["rougeL"].fmeasure == 0.0


@pytest.mark.parametrize(
    "prediction, reference",
    [("안녕하세요 여러분", "감사합니다 선생님"), ("猫很可爱", "狗跑得快"), ("über straße", "çà où")],
)
def test_disjoint_non_ascii_texts_score_zero(prediction, reference):
    assert rouge_l(prediction, reference) == 0.0


@pytest.mark.parametrize(
    "prediction, reference, expected",
    [
        # Korean words (spaces separate them): 나는 _ 간다 in common, LCS 2 of 3 and 3 tokens.
        ("나는 집에 간다", "나는 학교에 간다", f1(2, 3, 3)),
        # Chinese by character: 我很喜欢狗 vs 我喜欢猫 share 我喜欢, LCS 3 of 5 and 4 tokens.
        ("我很喜欢狗", "我喜欢猫", f1(3, 5, 4)),
        # Japanese kana and kanji by character: 私は + 好き, LCS 4 of 6 and 5 tokens.
        ("私は猫が好き", "私は犬好き", f1(4, 6, 5)),
        # Accented Latin, case-folded, decomposed accents normalised: él comió in common, LCS 2 of 4 and 5 words.
        ("ÉL COMIO\u0301 dos manzanas", "él comió una manzana roja", f1(2, 4, 5)),
    ],
)
def test_partial_overlap_is_the_lcs_f1(prediction, reference, expected):
    assert rouge_l(prediction, reference) == pytest.approx(expected)


@pytest.mark.parametrize(
    "prediction, reference",
    [
        ("The cat sat on the mat.", "the cat is on the mat"),
        ("It's 3:45 PM -- don't be late!", "Don't be late; it is 3:45pm."),
        ("snake_case and CamelCase words", "camelcase or snake case words"),
        ("The answer is 42", "42"),
        ("", "nothing here"),
    ],
)
def test_english_scores_are_rouge_scores_own(prediction, reference):
    default = rouge_scorer.RougeScorer(["rougeL"]).score(reference, prediction)["rougeL"].fmeasure
    assert rouge_l(prediction, reference) == pytest.approx(default)
    tokenize = rouge_scorer.tokenizers.DefaultTokenizer().tokenize
    assert UnicodeTokenizer().tokenize(prediction) == tokenize(prediction)


def test_scripts_without_spaces_are_one_token_per_character_and_korean_keeps_words():
    assert UnicodeTokenizer().tokenize("日本語のテキスト、한국어 문장 Ｗörld_x 12") == [
        "日", "本", "語", "の", "テ", "キ", "ス", "ト", "한국어", "문장", "wörld", "x", "12",
    ]  # fmt: skip


# ----------------------------------------------------------------------------------------------- compare outputs


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def compared(tiny_chain, demo_base, tmp_path_factory):
    """The SFT and the untrained base model on 5 demo prompts, with reward scores, a one-point sweep and an
    AlpacaEval export."""
    root = tmp_path_factory.mktemp("compare")
    metrics = compare(
        [str(tiny_chain["sft"]), str(demo_base)],
        str(tiny_chain["prompts"]),
        root / "report",
        reward=str(tiny_chain["reward"]),
        limit=5,
        num_samples=2,
        max_new_tokens=8,
        sweep_temperatures=(1.0,),
        sweep_top_ps=(0.9,),
        sweep_prompts=3,
        overopt_prompts=0,
        export_alpaca_eval=root / "alpaca_eval",
    )
    return root, metrics


def test_responses_jsonl_has_every_answer_with_its_scores(compared, tiny_chain, demo_base):
    root, metrics = compared
    rows = read_jsonl(root / "report" / "responses.jsonl")
    names = ["sft", demo_base.name]
    # per checkpoint: 5 greedy + 5 x 2 sampled + 3 sweep answers
    assert len(rows) == 2 * (5 + 10 + 3)
    assert all(set(r) == ROW_FIELDS for r in rows)
    assert {r["on_topic"] for r in rows} == {None}  # the demo task names no topic (tests/test_on_topic.py)
    keys = {(r["prompt_index"], r["checkpoint"], r["setting"], json.dumps(r["sampling"]), r["sample_index"])
            for r in rows}  # fmt: skip
    assert len(keys) == len(rows)
    prompts = json.loads(tiny_chain["prompts"].read_text())[:5]
    demo = tasks.get("demo")
    for name, path in zip(names, (tiny_chain["sft"], demo_base)):
        mine = [r for r in rows if r["checkpoint"] == name]
        assert {r["checkpoint_path"] for r in mine} == {str(path)}
        by_setting = {s: [r for r in mine if r["setting"] == s] for s in ("greedy", "sampled", "sweep")}
        assert [len(v) for v in by_setting.values()] == [5, 10, 3]
        assert {r["sample_index"] for r in by_setting["sampled"]} == {0, 1}
        assert by_setting["greedy"][0]["sampling"]["temperature"] == 0.0
        assert {(r["sampling"]["temperature"], r["sampling"]["top_p"]) for r in by_setting["sampled"]} == {
            (0.7, 1.0)
        }
        assert {(r["sampling"]["temperature"], r["sampling"]["top_p"]) for r in by_setting["sweep"]} == {
            (1.0, 0.9)
        }
        for r in mine:
            p = prompts[r["prompt_index"]]
            assert (r["instruction"], r["input"]) == (p["instruction"], p["input"])
            assert r["prompt"] == f"{p['instruction']}\n\n{p['input']}"
            assert r["task"] == "demo"
            assert r["gold_score"] == demo.judge(p, r["response"], r["finished"])
            assert isinstance(r["reward_score"], float)
        # the report's numbers are these rows' numbers
        greedy = by_setting["greedy"]
        assert metrics[f"{name}.gold_score"] == pytest.approx(
            statistics.fmean(r["gold_score"] for r in greedy)
        )
        assert metrics[f"{name}.rm_score_mean"] == pytest.approx(
            statistics.fmean(r["reward_score"] for r in greedy)
        )


def test_alpaca_eval_export_holds_each_checkpoints_greedy_answers(compared, tiny_chain, demo_base):
    root, _ = compared
    rows = read_jsonl(root / "report" / "responses.jsonl")
    for name in ("sft", demo_base.name):
        outputs = json.loads((root / "alpaca_eval" / name / "model_outputs.json").read_text(encoding="utf-8"))
        assert isinstance(outputs, list) and len(outputs) == 5
        greedy = [r for r in rows if r["checkpoint"] == name and r["setting"] == "greedy"]
        assert outputs == [
            {"instruction": r["prompt"], "output": r["response"], "generator": name} for r in greedy
        ]
        assert all("\n\n" in o["instruction"] for o in outputs)  # the demo prompts' input is part of it
    assert sorted(p.name for p in (root / "alpaca_eval").iterdir()) == sorted(["sft", demo_base.name])


def test_a_failed_report_write_leaves_no_responses_file(tiny_chain, tmp_path, monkeypatch):
    """responses.jsonl is one of the report's files: if writing the report fails, none of them appears. Prompts of
    no known task get no gold score."""
    import rlhf.io

    prompts = tmp_path / "prompts.json"
    atomic_write_json(
        prompts, [{"instruction": "Say hi.", "input": ""}, {"instruction": "Count.", "input": "1 2"}]
    )
    real = rlhf.io._write_temp

    def fail_metrics(path, data):
        if path.name == "metrics.json":
            raise UserError("cannot write (No space left on device); earlier output left as it was", path)
        return real(path, data)

    kw = dict(num_samples=1, max_new_tokens=4, sweep_prompts=0, overopt_prompts=0)
    monkeypatch.setattr(rlhf.io, "_write_temp", fail_metrics)
    with pytest.raises(UserError):
        compare([str(tiny_chain["sft"])], str(prompts), tmp_path / "out", **kw)
    assert list((tmp_path / "out").iterdir()) == []
    monkeypatch.setattr(rlhf.io, "_write_temp", real)
    compare([str(tiny_chain["sft"])], str(prompts), tmp_path / "out", **kw)
    rows = read_jsonl(tmp_path / "out" / "responses.jsonl")
    assert len(rows) == 4 and {(r["task"], r["gold_score"], r["reward_score"]) for r in rows} == {
        (None, None, None)
    }


def test_export_alpaca_eval_into_a_file_is_one_line_error(tiny_chain, tmp_path):
    blocker = tmp_path / "taken"
    blocker.write_text("a file, not a folder\n")
    res = run_cli("compare", tiny_chain["sft"], "--prompts", tiny_chain["prompts"], "--out", tmp_path / "report",
                  "--export-alpaca-eval", blocker / "ae", "--limit", "2", check=False)  # fmt: skip
    assert res.returncode == 2, res.stderr
    assert res.stderr.splitlines() == [
        f"error: {blocker / 'ae'}: output dir is not writable ({blocker} is a file, not a folder)"
    ]
    assert not (tmp_path / "report" / "metrics.json").exists()


def test_a_checkpoint_name_that_is_no_folder_name_is_refused_for_the_export(tiny_chain, tmp_path):
    res = run_cli("compare", tiny_chain["sft"], "--prompts", tiny_chain["prompts"], "--out", tmp_path / "report",
                  "--export-alpaca-eval", tmp_path / "ae", "--names", "a/b", "--limit", "2", check=False)  # fmt: skip
    assert res.returncode == 2, res.stderr
    assert res.stderr.splitlines() == [
        "error: command line:--names: checkpoint name 'a/b' cannot name an export folder (no '/', '\\', '.' or '..'); "
        "pick names with --names"
    ]


def test_a_name_taken_from_the_dir_name_is_checked_too(demo_base, tiny_chain, tmp_path, monkeypatch):
    monkeypatch.chdir(demo_base)  # a plain model dir named ".": its name would be ""
    with pytest.raises(UserError, match="checkpoint name '' cannot name an export folder"):
        compare(["."], str(tiny_chain["prompts"]), tmp_path / "report", export_alpaca_eval=tmp_path / "ae")
    assert list((tmp_path / "ae").iterdir()) == [] and not (tmp_path / "report" / "metrics.json").exists()


def test_help_says_the_export_holds_greedy_answers():
    res = run_cli("compare", "--help")
    assert "--export-alpaca-eval DIR" in res.stdout and "greedy" in res.stdout
