"""The verifiable-instructions task (`constraints`): real instructions with appended, program-checkable constraints.

Prompts. A real instruction (Alpaca and Self-Instruct rows without an input) followed by a blank line and one
constraint per line, IFEval-style (types, phrasings and checkers in `constraints_checks`):

    Name three famous painters.

    Answer in at most 25 words.
    Do not use any commas in your response.

The instructions come from `source` (a data dir or an Alpaca / Self-Instruct json(l) file). Left unset it is the
env var RLHF_CONSTRAINTS_SOURCE, else the kit's shared data dir RLHF_SHARED_DATA; in a dir, every .json / .jsonl
file in it or one level below that holds instruction rows is read. Only `prompts` needs the source: the judge reads the constraints back from
the instruction text, so any file of such prompts is recognised and judged (`rlhf compare ... --prompts ANY.json`).

Splits, disjoint in instructions (a sha256 of the normalised instruction picks one, so a source file may grow or be
reordered without moving an instruction): "eval" (20%) held out for the comparison, "pairs" (30%) for sampling
the reward model's preference pairs, "train" (50%) for SFT and PPO prompts. The eval split alone also uses
- the held-out phrasing of every type (the last of its phrasings), and
- held-out combinations: every prompt of three constraints, and the pairs of types in EVAL_ONLY_PAIRS.
Train and pairs prompts have one or two constraints, in the other phrasings and pairs; eval draws each
instruction at most once (distinct prompts keep the confidence intervals honest).

Gold judge: 1.0 when the response satisfies every constraint (IFEval's prompt-level strict accuracy), else 0.0;
a degenerate response scores 0 whatever it satisfies:
- not finished: the caller passes `finished=False` when generation stopped at the length limit without EOS
  (`rlhf.generate.Completion.finished`; pairs rows carry it as their `finished` list). The response text never
  contains the EOS token, so only the caller can tell;
- empty, or nothing but punctuation;
- a copy of the prompt: once the phrases the constraints ask for (start/end phrase, keyword) are set aside,
  nothing is left, or 75% or more of its other word trigrams occur in the prompt;
- one n-gram repeated: 3+ back-to-back repeats of one n-gram (n <= 10) covering half or more of its words.
Binary, so `gold_accuracy` (share of responses scoring > 0) is the share satisfying all their constraints;
`ConstraintsTask.check` gives the per-type results (for per-constraint-type satisfaction rates).
Why not partial credit: the pipeline's gold_accuracy counts scores > 0, and a fraction would make "one of three
constraints met" count as accurate.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import random
from dataclasses import dataclass
from pathlib import Path

from rlhf.errors import UserError
from rlhf.tasks.base import Task
from rlhf.tasks.constraints_checks import (
    CONFLICTS,
    END_PHRASES,
    EXCLUDE_FALLBACK,
    HELD_OUT_PHRASING,
    INCLUDE_WORDS,
    NUMBERS,
    PHRASINGS,
    START_PHRASES,
    STOPWORDS,
    TYPES,
    Constraint,
    parse_line,
    words,
)

SOURCE_ENV = "RLHF_CONSTRAINTS_SOURCE"
SHARED_DATA_ENV = "RLHF_SHARED_DATA"
SPLITS = ("train", "pairs", "eval")
SPLIT_PERCENT = {"eval": 20, "pairs": 30, "train": 50}  # of the instructions, by hash
MAX_INSTRUCTION_CHARS = 200  # short prompts: the experiment runs on 2 CPU cores
COPY_SHARE = 0.75  # a response with this share of its word trigrams in the prompt is a copy of it


def _pair_is_eval_only(pair: frozenset[str]) -> bool:
    return int(hashlib.sha256("+".join(sorted(pair)).encode()).hexdigest()[:8], 16) % 4 == 0


# A quarter of the compatible type pairs, chosen by hash: only the eval split combines them.
EVAL_ONLY_PAIRS = frozenset(
    p
    for p in (frozenset(c) for c in itertools.combinations(TYPES, 2))
    if p not in CONFLICTS and _pair_is_eval_only(p)
)


@dataclass(frozen=True)
class Item:
    """One prompt of this task: the instruction without its constraints, and the constraints."""

    base: str
    constraints: tuple[Constraint, ...]

    def instruction(self) -> str:
        return self.base + "\n\n" + "\n".join(c.text() for c in self.constraints)

    def novel(self) -> bool:
        """Whether the item uses a held-out phrasing or combination (only the eval split does)."""
        types = frozenset(c.type for c in self.constraints)
        return (
            any(c.phrasing == HELD_OUT_PHRASING[c.type] for c in self.constraints)
            or len(types) > 2
            or types in EVAL_ONLY_PAIRS
        )


def normalise(instruction: str) -> str:
    return " ".join(instruction.lower().split())


def split_of(instruction: str) -> str:
    """The split an instruction belongs to, from a hash of its normalised text."""
    h = int(hashlib.sha256(normalise(instruction).encode()).hexdigest()[:8], 16) % 100
    return "eval" if h < SPLIT_PERCENT["eval"] else "pairs" if h < 100 - SPLIT_PERCENT["train"] else "train"


# --- instruction source --------------------------------------------------------------------------------------


def resolve_source(source: str | Path | None) -> Path:
    """`source`, else $RLHF_CONSTRAINTS_SOURCE, else $RLHF_SHARED_DATA; UserError when none is set."""
    value = source or os.environ.get(SOURCE_ENV) or os.environ.get(SHARED_DATA_ENV)
    if not value:
        raise UserError(
            f"no instruction source for the constraints task; set {SOURCE_ENV} or {SHARED_DATA_ENV} to a dir "
            "holding Alpaca / Self-Instruct json(l) files, or pass one",
            "environment",
            SOURCE_ENV,
        )
    return Path(value).expanduser()


def _source_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise UserError("no such file or directory; expected the constraints task's instruction source", path)
    files = sorted(
        p
        for pattern in ("*", "*/*")
        for p in path.glob(pattern)
        if p.is_file() and p.suffix in (".json", ".jsonl")
    )
    if not files:
        raise UserError("holds no .json or .jsonl file of instructions", path)
    return files


def load_sources(source: str | Path | None = None) -> dict[str, str]:
    """The usable instructions of the source (deduplicated, in file order), each with its reference answer ("" if
    none): Alpaca rows with an empty `input` and Self-Instruct seed tasks whose first instance has none;
    single-line, at most MAX_INSTRUCTION_CHARS."""
    from rlhf.data import read_records

    out: dict[str, str] = {}
    seen = set()
    root = resolve_source(source)
    for path in _source_files(root):
        rows = read_records(path)
        if root.is_dir() and not any("instruction" in row for row in rows):
            continue  # another dataset in the same data dir (e.g. preference pairs)
        for row in rows:
            instruction = row.get("instruction")
            if not isinstance(instruction, str):
                raise UserError("key 'instruction': expected a string", path, row.get("_row"))
            instances = row.get("instances")
            first = instances[0] if isinstance(instances, list) and instances else {}
            first = first if isinstance(first, dict) else {}
            has_input = row.get("input") or first.get("input")
            text = instruction.strip()
            if has_input or not text or "\n" in text or len(text) > MAX_INSTRUCTION_CHARS:
                continue
            if normalise(text) in seen:
                continue
            seen.add(normalise(text))
            output = row.get("output", first.get("output", ""))
            out[text] = output.strip() if isinstance(output, str) else ""
    if not out:
        raise UserError(
            "no usable instruction (an Alpaca/Self-Instruct row without input)", resolve_source(source)
        )
    return out


def load_instructions(source: str | Path | None = None) -> list[str]:
    """The usable instructions of the source, in file order (see `load_sources`)."""
    return list(load_sources(source))


# --- drawing prompts -----------------------------------------------------------------------------------------


def _params(type_: str, base: str, rng: random.Random) -> dict:
    if type_ in NUMBERS:
        return {"n": rng.choice(NUMBERS[type_])}
    if type_ == "include_keyword":
        return {"word": rng.choice([w for w in INCLUDE_WORDS if w not in words(base)])}
    if type_ == "exclude_keyword":
        # ASCII letters only: the phrasing's parser reads back [A-Za-z] words
        own = sorted(
            {w for w in words(base) if len(w) >= 5 and w.isascii() and w.isalpha() and w not in STOPWORDS}
        )
        return {"word": rng.choice(own or EXCLUDE_FALLBACK)}
    if type_ == "start_with":
        return {"phrase": rng.choice(START_PHRASES)}
    if type_ == "end_with":
        return {"phrase": rng.choice(END_PHRASES)}
    return {}


def _combination(types: tuple[str, ...], k: int, split: str, rng: random.Random) -> tuple[str, ...]:
    """`k` compatible types (fewer when `types` allows no such set); train and pairs never get an eval-only pair."""
    for size in range(k, 0, -1):
        options = [
            c
            for c in itertools.combinations(types, size)
            if not any(frozenset(p) in CONFLICTS for p in itertools.combinations(c, 2))
            and (split == "eval" or size < 2 or frozenset(c) not in EVAL_ONLY_PAIRS)
        ]
        if options:
            return rng.choice(options)
    raise ValueError(f"no usable constraint type among {types}")


def make_item(base: str, types: tuple[str, ...], split: str, rng: random.Random) -> Item:
    """`base` with constraints drawn from `types`: 1-2 of them (train, pairs) or 1-3 (eval, in all phrasings)."""
    k = rng.choices((1, 2, 3), weights=(2, 2, 1) if split == "eval" else (3, 2, 0))[0]
    constraints = []
    for type_ in _combination(types, k, split, rng):
        phrasings = len(PHRASINGS[type_]) if split == "eval" else HELD_OUT_PHRASING[type_]
        params = _params(type_, base, rng)
        constraints.append(Constraint(type_, rng.randrange(phrasings), tuple(sorted(params.items()))))
    return Item(base, tuple(constraints))


def make_items(
    n: int,
    instructions: list[str],
    *,
    seed: int = 0,
    split: str | None = "train",
    types: tuple[str, ...] = TYPES,
) -> list[Item]:
    """`n` items from the instructions of one split (or all, if None), drawn with `seed`.

    The eval split draws each instruction at most once; the others cycle through theirs, reshuffled each round,
    with fresh constraints each time."""
    if split is not None and split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    rng = random.Random(seed)
    pool = [b for b in instructions if split is None or split_of(b) == split]
    if not pool or (split == "eval" and n > len(pool)):
        raise ValueError(
            f"cannot draw {n} {split or 'any'} prompts: the source has {len(pool)} such instructions"
        )
    out: list[Item] = []
    while len(out) < n:
        order = rng.sample(pool, len(pool))
        for base in order[: n - len(out)]:
            out.append(make_item(base, types, split or split_of(base), rng))
    return out


# --- judging -------------------------------------------------------------------------------------------------


def parse_item(instruction: str) -> Item | None:
    """The item an instruction states: a base, a blank line, then one constraint per line (all recognised)."""
    lines = instruction.rstrip().split("\n")
    constraints: list[Constraint] = []
    while lines and (c := parse_line(lines[-1])) is not None:
        constraints.insert(0, c)
        lines.pop()
    if not constraints or len(lines) < 2 or lines[-1].strip():
        return None
    base = "\n".join(lines).strip()
    return Item(base, tuple(constraints)) if base else None


def copies_prompt(item: Item, prompt: str, response: str) -> bool:
    """Once the phrases its constraints ask for are set aside, nothing is left of the response, or COPY_SHARE of
    its remaining word trigrams are in the prompt. (A short answer reusing the question's words, "The capital
    of France is Paris.", stays well below that share.)"""
    ws = words(response)
    required = [False] * len(ws)
    for phrase in (p for c in item.constraints for p in c.required_phrases()):
        want = words(phrase)
        # The first occurrence of each required phrase is the response's own business, not a copy.
        for i in range(len(ws) - len(want) + 1):
            if ws[i : i + len(want)] == want:
                required[i : i + len(want)] = [True] * len(want)
                break
    if all(required):
        return True
    ours = [tuple(ws[i : i + 3]) for i in range(len(ws) - 2) if not any(required[i : i + 3])]
    pw = words(prompt)
    theirs = {tuple(pw[i : i + 3]) for i in range(len(pw) - 2)}
    return bool(ours) and sum(t in theirs for t in ours) >= COPY_SHARE * len(ours)


def repeats_ngram(response: str, max_n: int = 10) -> bool:
    """3+ back-to-back repeats of one n-gram (n <= max_n) covering half or more of the response's words."""
    ws = words(response)
    for n in range(1, max_n + 1):
        for start in range(len(ws) - 3 * n + 1):
            gram, reps = ws[start : start + n], 1
            while ws[start + reps * n : start + (reps + 1) * n] == gram:
                reps += 1
            if reps >= 3 and reps * n >= 0.5 * len(ws):
                return True
    return False


def degenerate(item: Item, prompt: str, response: str, finished: bool = True) -> str | None:
    """Why a response scores 0 regardless of its constraints, or None."""
    if not finished:
        return "no EOS"
    if not words(response):
        return "empty"
    if copies_prompt(item, prompt, response):
        return "copy of the prompt"
    if repeats_ngram(response):
        return "repeated n-gram"
    return None


def check_all(item: Item, prompt: str, response: str, finished: bool = True) -> dict[str, bool]:
    """Per constraint type of the item: whether the response satisfies it (all False when it is degenerate)."""
    bad = degenerate(item, prompt, response, finished) is not None
    return {c.type: not bad and c.check(response) for c in item.constraints}


class ConstraintsTask(Task):
    """Verifiable instructions behind the task interface (`rlhf.tasks.get("constraints")`); kinds are the
    constraint types, and `prompts(kinds=...)` draws constraints of those types only."""

    name = "constraints"
    kinds = TYPES
    default_kinds = TYPES
    splits = SPLITS
    # Per-constraint-type satisfaction rates in compare's report: `<checkpoint>.constraint_rate.<type>`.
    breakdown_metric = "constraint_rate"
    breakdown_label = "constraint type"

    def __init__(self, source: str | Path | None = None):
        self.source = source
        self._sources: dict[Path, dict[str, str]] = {}

    def sources(self) -> dict[str, str]:
        """Instruction -> reference answer, from the source (read once per path)."""
        path = resolve_source(self.source)
        if path not in self._sources:
            self._sources[path] = load_sources(path)
        return self._sources[path]

    def instructions(self) -> list[str]:
        return list(self.sources())

    def prompts(
        self, n: int, *, seed: int = 0, split: str | None = "train", kinds: tuple[str, ...] | None = None
    ) -> list[dict]:
        types = self.check_kinds(tuple(kinds)) if kinds else self.default_kinds
        items = make_items(n, self.instructions(), seed=seed, split=split, types=types)
        return [
            {"instruction": it.instruction(), "input": "", "kind": "+".join(c.type for c in it.constraints)}
            for it in items
        ]

    def parse(self, row: dict) -> Item | None:
        instruction, input = row.get("instruction"), row.get("input", "")
        if not isinstance(instruction, str) or not isinstance(input, str):
            return None
        return parse_item(instruction)

    def _item(self, row: dict) -> Item:
        item = self.parse(row)
        if item is None:
            raise ValueError("not a constraints task row: its instruction ends with no recognised constraint")
        return item

    def judge(self, row: dict, response: str, finished: bool = True) -> float:
        results = self.check(row, response, finished)
        return 1.0 if all(results.values()) else 0.0

    def check(self, row: dict, response: str, finished: bool = True) -> dict[str, bool]:
        """Per constraint type of the row: satisfied or not (for per-type satisfaction rates)."""
        item = self._item(row)
        prompt = row["instruction"] + ("\n" + row["input"] if row.get("input") else "")
        return check_all(item, prompt, response, finished)

    def breakdown(self, row: dict, response: str, finished: bool = True) -> dict[str, bool]:
        return self.check(row, response, finished)

    def topic(self, row: dict) -> str:
        """The instruction without its constraints (and its input): the judge checks the constraints, not whether
        the answer is about this, so compare measures that apart (`rlhf.evaluation.on_topic`)."""
        return "\n".join(filter(None, (self._item(row).base, row.get("input", ""))))


def write_rows(
    out: str | Path,
    n: int,
    *,
    seed: int = 0,
    split: str | None = "train",
    source: str | Path | None = None,
    kinds: str = "",
    demonstrations: bool = False,
) -> list[dict]:
    """Write `n` prompt rows of one split (Alpaca json) to `out`; with `demonstrations`, SFT rows from the train
    split whose `output` satisfies the constraints (see constraints_demos). `kinds`: comma-separated constraint
    types (empty: all)."""
    from rlhf.io import atomic_write_json
    from rlhf.tasks.constraints_demos import demonstration_rows

    task = ConstraintsTask(source)
    try:
        types = task.check_kinds(tuple(k.strip() for k in kinds.split(",") if k.strip())) or TYPES
        if demonstrations:
            rows = demonstration_rows(n, task.sources(), seed=seed, types=types)
        else:
            rows = task.prompts(n, seed=seed, split=split, kinds=types)
    except ValueError as e:  # an unknown kind, or too few instructions for `n`
        raise UserError(str(e), "pipeline config", "key 'data'") from None
    atomic_write_json(out, rows)
    return rows
