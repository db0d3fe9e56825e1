"""The embedded demo task: seeded instruction problems in Alpaca format, and the gold judge that scores any response.

Why these tasks: a model of half a million parameters must be able to *answer* them after a minute of SFT on
2 cores, so that what RLHF has to improve is how it answers (concision, no filler) on top of answers it gets
right. A mix it cannot master leaves RLHF nothing to show. All ten kinds below are
available to researchers; the demo config picks the ones a tiny model masters.

Gold judge (fixed before any training): a wrong answer, or a response without EOS, scores 0; a correct one
scores max(0.2, 1 - 0.1 * words beyond the bare answer). Punctuation is free.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable
from dataclasses import dataclass

from rlhf.tasks.base import Task

WORDS = [
    "apple", "river", "stone", "cloud", "tiger", "candle", "garden", "silver",
    "pencil", "forest", "window", "rocket", "violin", "marble", "lemon",
]  # fmt: skip
CATEGORIES = {
    "fruits": ["apple", "banana", "cherry", "grape", "lemon", "mango", "peach", "pear"],
    "animals": ["tiger", "horse", "rabbit", "zebra", "otter", "eagle", "camel", "wolf"],
    "colors": ["red", "blue", "green", "yellow", "purple", "orange", "black", "white"],
    "apps": ["Twitter", "Instagram", "Telegram", "Snapchat", "TikTok", "WhatsApp", "Reddit", "Discord"],
}

INSTRUCTIONS: dict[str, list[str]] = {
    "largest": [
        "Which number is the largest?",
        "Find the largest number in the list.",
        "Pick the biggest number.",
    ],
    "smallest": [
        "Which number is the smallest?",
        "Find the smallest number in the list.",
        "Pick the lowest number.",
    ],
    "first_word": ["What is the first word in the list?", "Name the first word.", "Which word comes first?"],
    "last_word": ["What is the last word in the list?", "Name the last word.", "Which word comes last?"],
    "odd_one_out": [
        "Identify the odd one out.",
        "Which item does not belong?",
        "Find the item that is different.",
    ],
    "add": ["Add the two numbers.", "What is the sum of the numbers?", "Compute the sum."],
    "sort": ["Sort the numbers in ascending order.", "Arrange the numbers from smallest to largest."],
    "reverse_word": ["Reverse the word.", "Spell the word backwards."],
    "name_three": ["Name three {cat}.", "List three {cat}.", "Give me three {cat}."],
    "yes_no": [
        "Is {item} one of the {cat}? Answer yes or no.",
        "Answer yes or no: is {item} among the {cat}?",
    ],
}
ALL_KINDS = tuple(INSTRUCTIONS)
DEFAULT_KINDS = ("largest", "smallest", "first_word")

# Filler follows the answer, never precedes it: every demonstration, bare or padded, gives its answer as the first
# word of the response, so the answer is always produced in the one context SFT trains on every row, and PPO only has
# to learn where to stop. (Lead-ins such as "Sure, the answer is 7." let PPO jump to bare answers, a context SFT had
# trained on far less, and it lost correctness doing so.) Padded answers all continue with "." so that the SFT
# policy's most likely continuation is the filler, not the EOS of the bare demonstrations.
VERBOSE_FORM = "{a}."
VERBOSE_SUFFIXES = [" Hope this helps!", " Let me know if you need anything else.", " Happy to help.",
                    " I hope that answers your question.", " Thanks for asking!"]  # fmt: skip


@dataclass(frozen=True)
class Problem:
    """One demo problem: its kind, its prompt (instruction + input) and its gold answer."""

    kind: str
    instruction: str
    input: str
    answer: str  # the bare correct answer (for name_three: one valid answer)

    def key(self) -> str:
        """Identity of the underlying problem, independent of phrasing: what the train/eval split is keyed on."""
        return f"{self.kind}|{self.input}|{self.instruction if self.kind in ('name_three', 'yes_no') else ''}"

    def split(self, eval_percent: int = 10) -> str:
        h = int(hashlib.sha256(self.key().encode()).hexdigest()[:8], 16)
        return "eval" if h % 100 < eval_percent else "train"

    def to_row(self) -> dict:
        return {
            "instruction": self.instruction,
            "input": self.input,
            "output": self.answer,
            "kind": self.kind,
        }


def _digits(rng: random.Random, k: int = 3) -> list[int]:
    return rng.sample(range(1, 10), k)


def _make(kind: str, rng: random.Random) -> Problem:
    instr = rng.choice(INSTRUCTIONS[kind])
    if kind in ("largest", "smallest"):
        # The answer is drawn first, uniformly over the values it can take, then the other two digits: with three
        # random digits a largest of 3 (1, 2, 3 in some order) would be 1 draw in 84, too rare to be learned.
        a = rng.randint(3, 9) if kind == "largest" else rng.randint(1, 7)
        others = range(1, a) if kind == "largest" else range(a + 1, 10)
        xs = [a, *rng.sample(others, 2)]
        rng.shuffle(xs)
        inp = ", ".join(map(str, xs))
    elif kind in ("first_word", "last_word"):
        inp = ", ".join(rng.sample(WORDS, 3))
    elif kind == "odd_one_out":
        cat, other = rng.sample(sorted(CATEGORIES), 2)
        items = rng.sample(CATEGORIES[cat], 3) + [rng.choice(CATEGORIES[other])]
        rng.shuffle(items)
        inp = ", ".join(items)
    elif kind == "add":
        inp = f"{rng.randint(1, 20)}, {rng.randint(1, 20)}"
    elif kind == "sort":
        inp = ", ".join(map(str, _digits(rng, 4)))
    elif kind == "reverse_word":
        inp = rng.choice(WORDS)
    elif kind == "name_three":
        instr = instr.format(cat=rng.choice(sorted(CATEGORIES)))
        inp = ""
    elif kind == "yes_no":
        cat = rng.choice(sorted(CATEGORIES))
        pool = (
            CATEGORIES[cat]
            if rng.random() < 0.5
            else [w for c in CATEGORIES if c != cat for w in CATEGORIES[c]]
        )
        instr = instr.format(item=rng.choice(pool), cat=cat)
        inp = ""
    else:
        raise ValueError(f"unknown task kind {kind!r}; expected one of {ALL_KINDS}")
    task = parse_task(instr, inp)
    assert task is not None and task.kind == kind, (kind, instr, inp)
    return task


def _items(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


_SOLVERS: dict[str, Callable[[str, dict], str]] = {
    "largest": lambda inp, m: str(max(map(int, _items(inp)))),
    "smallest": lambda inp, m: str(min(map(int, _items(inp)))),
    "first_word": lambda inp, m: _items(inp)[0],
    "last_word": lambda inp, m: _items(inp)[-1],
    "odd_one_out": lambda inp, m: next(
        x
        for x in _items(inp)
        if sum(x in v for v in CATEGORIES.values() if sum(y in v for y in _items(inp)) >= 3) == 0
    ),
    "add": lambda inp, m: str(sum(map(int, _items(inp)))),
    "sort": lambda inp, m: ", ".join(map(str, sorted(map(int, _items(inp))))),
    "reverse_word": lambda inp, m: inp.strip()[::-1],
    "name_three": lambda inp, m: ", ".join(CATEGORIES[m["cat"]][:3]),
    "yes_no": lambda inp, m: "Yes" if m["item"] in CATEGORIES[m["cat"]] else "No",
}


def _template_regex(template: str) -> re.Pattern:
    pat = re.escape(template).replace(r"\{cat\}", r"(?P<cat>\w+)").replace(r"\{item\}", r"(?P<item>\w+)")
    return re.compile(f"^{pat}$")


_PARSERS = [(kind, _template_regex(t)) for kind, ts in INSTRUCTIONS.items() for t in ts]


def parse_task(instruction: str, input: str = "") -> Problem | None:
    """Recover the task (and its gold answer) from an instruction + input, or None if it is not a demo task."""
    for kind, rx in _PARSERS:
        m = rx.match(instruction.strip())
        if not m:
            continue
        groups = m.groupdict()
        if "cat" in groups and groups["cat"] not in CATEGORIES:
            return None
        try:
            return Problem(kind, instruction, input, _SOLVERS[kind](input, groups))
        except (ValueError, IndexError, StopIteration, KeyError):
            return None
    return None


def make_tasks(
    n: int,
    seed: int = 0,
    kinds=DEFAULT_KINDS,
    split: str | None = "train",
    eval_percent: int = 10,
    distinct: bool = False,
):
    """`n` tasks of the given kinds (round-robin), drawn with `seed`, restricted to one split (or any if None).

    `distinct` never repeats a prompt (instruction + input): an evaluation set with repeats would count one prompt
    several times and make its confidence intervals too narrow. Some kinds have few eval prompts (name_three
    has about one), so a distinct draw of many prompts of every kind can be refused as too small."""
    rng = random.Random(seed)
    kinds = list(kinds)
    out, seen, tries = [], set(), 0
    while len(out) < n:
        tries += 1
        if tries > 200 * n + 1000:
            what = "distinct " if distinct else ""
            raise ValueError(f"cannot draw {n} {what}{split} tasks of kinds {kinds}: prompt space too small")
        task = _make(kinds[len(out) % len(kinds)], rng)
        if split is not None and task.split(eval_percent) != split:
            continue
        if distinct:
            if (task.instruction, task.input) in seen:
                continue
            seen.add((task.instruction, task.input))
        out.append(task)
    return out


def _wrong_answer(task: Problem, rng: random.Random) -> str:
    if task.kind in ("largest", "smallest", "first_word", "last_word", "odd_one_out"):
        return rng.choice([x for x in _items(task.input) if x != task.answer])
    if task.kind == "add":
        return str(int(task.answer) + rng.choice([-2, -1, 1, 2]))
    if task.kind == "sort":
        xs = _items(task.answer)
        i = rng.randrange(len(xs) - 1)
        xs[i], xs[i + 1] = xs[i + 1], xs[i]
        return ", ".join(xs)
    if task.kind == "reverse_word":
        return task.input
    if task.kind == "name_three":
        return ", ".join(rng.sample([w for ws in CATEGORIES.values() for w in ws if w not in task.answer], 3))
    return "No" if task.answer == "Yes" else "Yes"


def demonstration(task: Problem, style: str, rng: random.Random, bare_share: float = 0.5) -> str:
    """One SFT target: `bare` (just the answer), `verbose` (filler around it) or `wrong` (a wrong answer, bare
    with probability `bare_share`, else with filler)."""
    if style == "bare":
        return task.answer
    if style == "verbose":
        answer = task.answer
    elif style == "wrong":
        answer = _wrong_answer(task, rng)
        if rng.random() < bare_share:
            return answer
    else:
        raise ValueError(f"unknown demonstration style {style!r}")
    return VERBOSE_FORM.format(a=answer) + rng.choice(VERBOSE_SUFFIXES)


def make_sft_rows(
    n: int,
    seed: int = 0,
    kinds=DEFAULT_KINDS,
    verbose_share: float = 0.6,
    wrong_share: float = 0.1,
    split: str = "train",
) -> list[dict]:
    """Imperfect Alpaca demonstrations: `verbose_share` padded with filler, `wrong_share` wrong, the rest bare.

    Wrong answers come in the same mix of styles as the right ones (bare as often as correct demonstrations are
    bare), so that no style is a tell for a wrong answer."""
    if not (0 <= verbose_share and 0 <= wrong_share and verbose_share + wrong_share <= 1):
        raise ValueError("verbose_share and wrong_share must be >= 0 and add up to at most 1")
    bare_share = (1 - verbose_share - wrong_share) / (1 - wrong_share) if wrong_share < 1 else 0.5
    rng = random.Random(seed + 1)
    rows = []
    for task in make_tasks(n, seed, kinds, split=split):
        u = rng.random()
        style = "wrong" if u < wrong_share else "verbose" if u < wrong_share + verbose_share else "bare"
        row = task.to_row()
        row["output"] = demonstration(task, style, rng, bare_share)
        row["style"] = style
        rows.append(row)
    return rows


_WORD = re.compile(r"[\w']+", re.UNICODE)


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def is_correct(task: Problem, response: str) -> bool:
    words = _words(response)
    if task.kind == "name_three":
        cat = next(c for c in CATEGORIES if c in task.instruction)
        named = [w for w in words if w in {x.lower() for x in CATEGORIES[cat]}]
        others = [
            w for w in words if any(w in {x.lower() for x in v} for c, v in CATEGORIES.items() if c != cat)
        ]
        return len(set(named)) >= 3 and not others
    if task.kind == "yes_no":
        said = [w for w in words if w in ("yes", "no")]
        return said == [task.answer.lower()]
    if task.kind == "reverse_word":
        return task.answer.lower() in words and task.input.lower() not in words
    if task.kind in ("largest", "smallest", "add", "sort"):
        return [w for w in words if w.isdigit()] == _words(task.answer)
    # word-choice kinds: the response names the answer and no other candidate from the input
    candidates = {w.lower() for w in _items(task.input)}
    return [w for w in words if w in candidates] == [task.answer.lower()]


def judge(task: Problem | dict, response: str, finished: bool = True) -> float:
    """Gold score in [0, 1]: 0 if wrong or unfinished (no EOS); else max(0.2, 1 - 0.1 * extra words)."""
    if isinstance(task, dict):
        parsed = parse_task(task.get("instruction", ""), task.get("input", ""))
        if parsed is None:
            raise ValueError("not a demo task: the demo's gold judge only scores demo problems")
        task = parsed
    if not finished or not is_correct(task, response):
        return 0.0
    extra = max(0, len(_words(response)) - len(_words(task.answer)))
    return round(max(0.2, 1.0 - 0.1 * extra), 4)


class DemoTask(Task):
    """The demo behind the task interface (`rlhf.tasks.get("demo")`); its kinds are the problem kinds above."""

    name = "demo"
    kinds = ALL_KINDS
    default_kinds = DEFAULT_KINDS

    def prompts(
        self, n: int, *, seed: int = 0, split: str | None = "train", kinds: tuple[str, ...] | None = None
    ) -> list[dict]:
        kinds = self.check_kinds(tuple(kinds)) if kinds else self.default_kinds
        return [p.to_row() for p in make_tasks(n, seed, kinds, split=split)]

    def parse(self, row: dict) -> Problem | None:
        instruction, input = row.get("instruction"), row.get("input", "")
        if not isinstance(instruction, str) or not isinstance(input, str):
            return None
        return parse_task(instruction, input)

    def judge(self, row: dict, response: str, finished: bool = True) -> float:
        problem = self.parse(row)
        if problem is None:
            raise ValueError("not a demo task: the demo's gold judge only scores demo problems")
        return judge(problem, response, finished)

    def reference(self, row: dict) -> str | None:
        problem = self.parse(row)
        return problem.answer if problem is not None else None
