"""Issue 20, point 4: a property test over every entry point, driven by generated input files.

Each case starts from a small valid input for the command (rows from the demo tasks, the tiny chain's pairs, a
labels database, a GGUF header, the tiny pipeline config) and applies one generated mutation: a value of any type
or a hostile string (lone surrogate, empty, huge) under a real key, a dropped key, deep nesting, a duplicated key,
NaN or a 400-digit number, cut or random bytes, or nothing (the valid file). The command runs as `rlhf` runs it
(rlhf.cli.main) and must:
- exit 0 or 2, never raise (an exception here is the traceback a user would see), and print no traceback;
- leave every input byte-identical (hashed before and after);
- after exit 2, leave no manifest and nothing under the output's final name (file outputs, reports, databases);
  after exit 0, leave the output complete.

Runs are cut at a time budget: a generated input that reaches real work is valid and counted once it runs past
validation. Default size: RLHF_PROPERTY_EXAMPLES=2 per entry point (about 40 s with the shared tiny chain built);
`-m slow` runs test_every_entry_point_at_length with 25 each. A failure prints the smallest input that breaks.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import shutil
import signal
import zlib
from pathlib import Path

import pytest
from conftest import REPO
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("RLHF_PROPERTY_EXAMPLES", "2"))
SLOW_EXAMPLES = 25
BUDGET_S = 20  # seconds one command may run before it counts as "got past validation"
PIPELINE_BUDGET_S = 6  # a valid pipeline config runs the whole chain: cut it once its first steps ran
CONFIGS = REPO / "configs" / "demo"

HOSTILE_TEXT = ["", " ", "x \ud800 y", "\udfff", "\x00", "\u202e", "A" * 5000, "\n\nHuman: hi\n\nAssistant:"]
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=8)
    | st.sampled_from(HOSTILE_TEXT)
)
values = st.recursive(scalars, lambda v: st.lists(v, max_size=2) | st.dictionaries(st.text(max_size=4), v, max_size=2),
                      max_leaves=4)  # fmt: skip

# A mutation: (kind, argument). Serialising happens after, so raw-text mutations see the real bytes.
mutations = st.one_of(
    st.tuples(st.just("value"), st.tuples(st.integers(0, 50), st.integers(0, 50), values)),
    st.tuples(st.just("drop"), st.tuples(st.integers(0, 50), st.integers(0, 50))),
    st.tuples(st.just("deep"), st.tuples(st.integers(0, 50), st.sampled_from([70, 3000]))),
    st.tuples(st.just("duplicate"), st.integers(0, 50)),
    st.tuples(st.just("number"), st.sampled_from(["NaN", "-Infinity", "1e999", "9" * 400])),
    st.tuples(st.just("cut"), st.floats(0, 1)),
    st.tuples(st.just("bytes"), st.binary(max_size=64)),
    st.tuples(st.just("format"), st.sampled_from(["json", "jsonl", "jsonl.gz"])),
    st.just(("none", None)),
)


def mutate_rows(rows: list[dict], mutation) -> tuple[bytes, str]:
    """(file bytes, suffix) of `rows` with one mutation applied."""
    kind, arg = mutation
    rows = json.loads(json.dumps(rows))
    suffix = "jsonl"
    if kind in ("value", "drop", "deep") and rows:
        row = rows[arg[0] % len(rows)]
        keys = sorted(row) or ["instruction"]
        key = keys[arg[1] % len(keys)] if kind != "deep" else keys[0]
        if kind == "value":
            row[key] = arg[2]
        elif kind == "drop":
            row.pop(key, None)
        else:  # nested in the text below: json.dumps itself would overflow the stack at 3000 levels
            row[key] = "@@DEEP@@"
    if kind == "format":
        suffix = arg
    if suffix == "json":
        text = json.dumps(rows)
    else:
        text = "".join(json.dumps(r) + "\n" for r in rows)
    if kind == "deep":
        text = text.replace('"@@DEEP@@"', "[" * arg[1] + '"x"' + "]" * arg[1], 1)
    if kind == "duplicate" and rows:
        first = json.dumps(rows[0])
        key = sorted(rows[0])[arg % len(rows[0])] if rows[0] else "x"
        text = text.replace(first, first[:-1] + f", {json.dumps(key)}: 1}}", 1)
    if kind == "number":
        text = text.replace("}", f', "n": {arg}}}', 1)
    raw = text.encode("utf-8", "surrogatepass")
    if kind == "cut":
        raw = raw[: int(len(raw) * arg)]
    if kind == "bytes":
        raw = raw[: len(raw) // 2] + arg + raw[len(raw) // 2 :]
    if suffix == "jsonl.gz":
        raw = gzip.compress(raw)
    return raw, suffix


def mutate_bytes(raw: bytes, mutation) -> bytes:
    """For binary inputs (a labels database, a GGUF file): cut, splice or overwrite with random bytes."""
    kind, arg = mutation
    if kind == "cut":
        return raw[: int(len(raw) * arg)]
    if kind == "bytes":
        return raw[: len(raw) // 2] + arg + raw[len(raw) // 2 + len(arg) :]
    if kind in ("value", "drop", "deep", "duplicate"):  # crc32, not hash(): str hashes change per process,
        # and a failing case must replay from the seed Hypothesis prints
        i = (zlib.crc32(str(arg).encode("utf-8", "surrogatepass")) % max(len(raw), 1)) if raw else 0
        return raw[:i] + bytes([raw[i] ^ 0xFF]) + raw[i + 1 :] if raw else raw
    return raw


class OverBudget(BaseException):
    """Raised by the alarm in the command's own thread: it passed validation and is doing real work."""


@contextlib.contextmanager
def budget(seconds: int):
    def alarm(signum, frame):
        raise OverBudget

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def digest(path: Path) -> dict[str, str]:
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def run_checked(
    argv: list, inputs: list[Path], outputs: list[Path], capsys, seconds: int = BUDGET_S
) -> int | None:
    """Run `rlhf ARGV` and check the contract; returns the exit code (None: cut by the budget)."""
    from rlhf.cli import main

    before = {str(p): digest(p) for p in inputs}
    capsys.readouterr()
    rc = None
    with contextlib.suppress(OverBudget), budget(seconds):
        rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert rc in (0, 2, None), (rc, err[-2000:])
    assert "Traceback" not in err, err[-3000:]
    if rc == 2:
        assert err.strip().splitlines()[-1].startswith("error: "), err[-1000:]
        for out in outputs:
            assert not (out / "rlhf_stage.json").exists(), f"a manifest after a failure: {out}"
            if out.suffix in (".jsonl", ".json", ".sqlite") or out.name in ("report", "converted"):
                assert not out.exists(), f"output left under its final name after a failure: {out}"
    assert {str(p): digest(p) for p in inputs} == before, "an input changed"
    return rc


@pytest.fixture(scope="module")
def world(tiny_chain, demo_base, tmp_path_factory) -> dict:
    """Valid starting points for every entry point's input, built once."""
    from _faults import write_prefs

    from rlhf.tasks.demo import make_sft_rows, make_tasks

    root = tmp_path_factory.mktemp("property")
    pairs = [json.loads(x) for x in tiny_chain["pairs"].read_text().splitlines()[:4]]
    db = root / "labels.sqlite"
    pairs_file = root / "pairs.jsonl"
    pairs_file.write_text("".join(json.dumps(r) + "\n" for r in pairs))
    from rlhf.cli import main

    assert main(["label", "serve", str(pairs_file), "--db", str(db), "--no-serve", "--quiet"]) == 0
    label_studio = root / "label_studio.json"
    assert main(["label", "export", "--db", str(db), "--out", str(root / "prefs_export.jsonl"),
                 "--label-studio", str(label_studio)]) == 0  # fmt: skip
    return World(
        {
            "base": demo_base,
            "sft": tiny_chain["sft"],
            "reward": tiny_chain["reward"],
            "sft_rows": make_sft_rows(8, seed=3, kinds=("largest", "smallest")),
            "prompts": [t.to_row() for t in make_tasks(6, 4, ("largest", "smallest"))],
            "pairs": pairs,
            "prefs": [json.loads(x) for x in write_prefs(root / "prefs.jsonl", n=8).read_text().splitlines()],
            "db": db.read_bytes(),
            "label_studio": json.loads(label_studio.read_text()),
            "gguf": b"GGUF" + (3).to_bytes(4, "little") + bytes(64),
            "pipeline": (REPO / "tests" / "data" / "pipeline_tiny.yaml").read_text(),
        }
    )


class World(dict):
    def __repr__(
        self,
    ) -> str:  # hypothesis prints the arguments of a failing case: the mutation is what matters
        return "<valid inputs>"


TINY_STAGE = ["--quiet", "true", "--save_strategy", "no", "--seed", "0"]


def case(name: str, w: dict, d: Path, mutation):
    """(argv, inputs, outputs) for entry point `name`, its generated input written under `d`."""
    out = d / "out"

    def rows_file(rows, stem):
        raw, suffix = mutate_rows(rows, mutation)
        path = d / f"{stem}.{suffix}"
        path.write_bytes(raw)
        return path

    if name == "sft":
        f = rows_file(w["sft_rows"], "sft")
        return (
            [
                "sft",
                "--config",
                CONFIGS / "sft.yaml",
                "--model_name_or_path",
                w["base"],
                "--data_path",
                f,
                "--output_dir",
                out,
                "--max_steps",
                "1",
                "--eval_fraction",
                "0",
                *TINY_STAGE,
            ],
            [f, w["base"]],
            [out],
        )
    if name == "reward":
        f = rows_file(w["prefs"], "prefs")
        return (
            [
                "reward",
                "--config",
                CONFIGS / "reward.yaml",
                "--sft_path",
                w["sft"],
                "--pairs_path",
                f,
                "--output_dir",
                out,
                "--max_steps",
                "1",
                "--eval_fraction",
                "0.25",
                *TINY_STAGE,
            ],
            [f, w["sft"]],
            [out],
        )
    if name == "ppo":
        f = rows_file(w["prompts"], "prompts")
        return (
            [
                "ppo",
                "--config",
                CONFIGS / "ppo.yaml",
                "--sft_path",
                w["sft"],
                "--reward_path",
                w["reward"],
                "--prompts_path",
                f,
                "--output_dir",
                out,
                "--total_episodes",
                "4",
                "--per_device_train_batch_size",
                "4",
                "--local_rollout_forward_batch_size",
                "4",
                "--num_ppo_epochs",
                "1",
                "--response_length",
                "4",
                "--num_sample_generations",
                "0",
                "--num_eval_prompts",
                "0",
                *TINY_STAGE,
            ],
            [f, w["sft"], w["reward"]],
            [out],
        )
    if name == "pairs":
        f = rows_file(w["prompts"], "prompts")
        out = d / "pairs_out.jsonl"
        return (
            [
                "pairs",
                "--policy",
                w["sft"],
                "--prompts",
                f,
                "--out",
                out,
                "--max-new-tokens",
                "4",
                "--limit",
                "3",
                "--quiet",
            ],
            [f, w["sft"]],
            [out],
        )
    if name == "annotate":
        f = rows_file(w["pairs"], "pairs")
        out = d / "prefs_out.jsonl"
        return ["annotate", f, "--annotator", "noisy", "--out", out], [f], [out]
    if name == "score":
        f = rows_file(w["prefs"], "prefs")
        return ["score", w["reward"], "--pairs", f], [f, w["reward"]], []
    if name == "compare":
        f = rows_file(w["prompts"], "prompts")
        out = d / "report"
        return (
            [
                "compare",
                w["sft"],
                "--prompts",
                f,
                "--out",
                out,
                "--limit",
                "2",
                "--num-samples",
                "1",
                "--max-new-tokens",
                "4",
                "--sweep-prompts",
                "0",
                "--overopt-prompts",
                "0",
            ],
            [f, w["sft"]],
            [out],
        )
    if (
        name == "generate"
    ):  # the instruction is the input: generated text, or a lone surrogate as argv can hold
        kind, arg = mutation
        text = arg[2] if kind == "value" and isinstance(arg[2], str) else "Pick the largest number."
        text = text.encode("utf-8", "replace").decode()  # lone surrogates: test_known_failures below
        return (
            ["generate", w["sft"], "--instruction", text, "--max-new-tokens", "4", "--json"],
            [w["sft"]],
            [],
        )
    if name == "label serve":
        f = rows_file(w["pairs"], "pairs")
        out = d / "labels.sqlite"
        return ["label", "serve", f, "--db", out, "--no-serve", "--quiet"], [f], [out]
    if name == "label import":
        f = rows_file(w["label_studio"], "label_studio")
        out = d / "imported.sqlite"
        return ["label", "import", f, "--db", out], [f], [out]
    if name == "label export":
        f = d / "labels.sqlite"
        f.write_bytes(mutate_bytes(w["db"], mutation))
        out = d / "prefs_export.jsonl"
        return ["label", "export", "--db", f, "--out", out], [f], [out]
    if name == "convert":
        f = d / "model.gguf"
        f.write_bytes(mutate_bytes(w["gguf"], mutation))
        return ["convert", f, d / "converted", "--quiet"], [f], [d / "converted"]
    if name == "pipeline":
        import yaml

        cfg = yaml.safe_load(w["pipeline"])
        kind, arg = mutation
        if kind == "value":  # a top-level section or a stage override set to a generated value
            sections = sorted(cfg)
            sec = sections[arg[0] % len(sections)]
            if isinstance(cfg[sec], dict) and cfg[sec]:
                keys = sorted(cfg[sec])
                cfg[sec][keys[arg[1] % len(keys)]] = arg[2]
            else:
                cfg[sec] = arg[2]
        f = d / "pipeline.yaml"
        text = json.dumps(cfg)
        if kind in ("cut", "bytes"):
            f.write_bytes(mutate_bytes(text.encode(), mutation))
        else:
            f.write_text(text.replace("sft_rows", "sft_rows" if kind != "drop" else "sft_rowz"))
        return ["pipeline", "--config", f, "--out", d / "run", "--quiet"], [f], [d / "run"]
    raise ValueError(name)


ENTRY_POINTS = ["sft", "reward", "ppo", "pairs", "annotate", "score", "compare", "generate", "label serve",
                "label import", "label export", "convert", "pipeline"]  # fmt: skip


def _check(name, mutation, world, tmp_path_factory, capsys):
    d = tmp_path_factory.mktemp("case")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(REPO)  # the pipeline config names stage configs relative to the repo
        for var in list(os.environ):  # a config's `env:` mapping is undone after each case
            mp.setenv(var, os.environ[var])
        argv, inputs, outputs = case(name, world, d, mutation)
        try:
            run_checked(argv, inputs, outputs, capsys, PIPELINE_BUDGET_S if name == "pipeline" else BUDGET_S)
        finally:
            shutil.rmtree(d, ignore_errors=True)


def _property(examples: int):
    return settings(max_examples=examples, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=list(HealthCheck))  # fmt: skip


@pytest.mark.parametrize("name", ENTRY_POINTS)
@_property(EXAMPLES)
@given(mutation=mutations)
def test_every_entry_point_on_generated_input(name, mutation, world, tmp_path_factory, capsys):
    _check(name, mutation, world, tmp_path_factory, capsys)


@pytest.mark.slow
@pytest.mark.parametrize("name", ENTRY_POINTS)
@_property(SLOW_EXAMPLES)
@given(mutation=mutations)
def test_every_entry_point_at_length(name, mutation, world, tmp_path_factory, capsys):
    _check(name, mutation, world, tmp_path_factory, capsys)


# --- inputs this test found that once ended in a traceback: each must now be one clear error (exit 2) ------------

ONCE_CRASHED = {
    # argv holding an invalid UTF-8 byte reaches Python as a lone surrogate (surrogateescape); the tokenizer raises
    # TypeError; every small command's argparse now checks its text arguments as rlhf.data checks files
    "generate_surrogate_instruction": ["generate", "{sft}", "--instruction", "Pick the largest number. \udcff",
                                       "--max-new-tokens", "4"],
    # sampling flags out of range (ValueError / ZeroDivisionError tracebacks before the range-checked flag types)
    "pairs_batch_size_0": ["pairs", "--policy", "{sft}", "--prompts", "{prompts}", "--out", "{out}", "--limit", "2",
                           "--batch-size", "0", "--quiet"],
    "pairs_max_new_tokens_0": ["pairs", "--policy", "{sft}", "--prompts", "{prompts}", "--out", "{out}", "--limit",
                               "2", "--max-new-tokens", "0", "--quiet"],
    "pairs_negative_temperature": ["pairs", "--policy", "{sft}", "--prompts", "{prompts}", "--out", "{out}",
                                   "--limit", "2", "--temperature=-1", "--quiet"],
    # rlhf/compare.py: the same flags, and an empty prompt set
    "compare_num_samples_0": ["compare", "{sft}", "--prompts", "{prompts}", "--out", "{out}", "--limit", "2",
                              "--sweep-prompts", "0", "--overopt-prompts", "0", "--num-samples", "0"],
    "compare_max_new_tokens_0": ["compare", "{sft}", "--prompts", "{prompts}", "--out", "{out}", "--limit", "2",
                                 "--sweep-prompts", "0", "--overopt-prompts", "0", "--max-new-tokens", "0"],
    "compare_negative_temperature": ["compare", "{sft}", "--prompts", "{prompts}", "--out", "{out}", "--limit", "2",
                                     "--sweep-prompts", "0", "--overopt-prompts", "0", "--temperature=-1"],
    "generate_nan_top_p": ["generate", "{sft}", "--instruction", "Pick the largest number.", "--top-p", "nan"],
    "compare_limit_0": ["compare", "{sft}", "--prompts", "{prompts}", "--out", "{out}", "--limit", "0",
                        "--sweep-prompts", "0", "--overopt-prompts", "0"],
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(ONCE_CRASHED))
def test_inputs_that_once_crashed_are_refused_cleanly(name, tiny_chain, tmp_path, capsys):
    fill = {"{sft}": tiny_chain["sft"], "{prompts}": tiny_chain["prompts"], "{out}": tmp_path / "out"}
    argv = [fill.get(a, a) for a in ONCE_CRASHED[name]]
    rc = run_checked(argv, [tiny_chain["sft"], tiny_chain["prompts"]], [tmp_path / "out"], capsys)
    assert rc == 2
