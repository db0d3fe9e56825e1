"""Verifiable constraints (IFEval-style): their types, the phrasings a prompt states them in, and their checkers.

A constraint is appended to an instruction as one line of text written from one phrasing of its type. The text
alone carries everything the checker needs (the parameters are part of the sentence), so a prompts file of any
origin is judged from its instruction: `parse_line` recovers the constraint from the line, `Constraint.check`
decides whether a response satisfies it.

The last phrasing of every type is held out: only the evaluation split uses it (see `HELD_OUT_PHRASING`).

Case: keywords and the start/end phrases are matched case-insensitively, so they combine with "all lowercase"
and "all capitals". Words are runs of letters, digits and apostrophes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

# The words drawn for "include the keyword" (common enough to fit an answer to almost any instruction).
INCLUDE_WORDS = (
    "important", "example", "simple", "future", "people", "world", "idea", "change",
    "value", "result", "quality", "history", "nature", "science", "problem", "reason",
)  # fmt: skip
START_PHRASES = ("My answer is", "Here is my response", "Sure thing", "In short", "To begin with")
END_PHRASES = (
    "Is there anything else I can help with?",
    "Hope this helps.",
    "That is all.",
    "Let me know if you have other questions.",
)
# The word drawn for "do not use the word" comes from the instruction itself (so avoiding it takes effort); these
# are the words never drawn, and the fallback when the instruction has no other word of 5+ letters.
STOPWORDS = frozenset(
    "about above after again against below between could describe explain following given their there these "
    "those which while would write should other where being under until using provide create generate "
    "please sentence sentences words answer response".split()
)
EXCLUDE_FALLBACK = ("really", "very", "just", "also", "actually")

# Per type: its phrasings ({n} a number, {s} "s" when n != 1, {word} a word, {phrase} a phrase) and the parameter
# values drawn. Each phrasing is one line; the last one is held out for evaluation.
PHRASINGS: dict[str, tuple[str, ...]] = {
    "lowercase": (
        "Your entire response should be in lowercase letters; no capital letters are allowed.",
        "Write your whole answer in lowercase only.",
        "Do not use any capital letters in your response.",
        "Use only lowercase letters throughout your reply.",
    ),
    "capitals": (
        "Your entire response should be in English, capital letters only.",
        "Write your whole answer in capital letters.",
        "Respond using only uppercase letters.",
        "Every letter of your reply must be a capital letter.",
    ),
    "max_words": (
        "Answer in at most {n} words.",
        "Your response must contain no more than {n} words.",
        "Use {n} words or fewer.",
        "Limit your reply to a maximum of {n} words.",
    ),
    "min_words": (
        "Your response should contain at least {n} words.",
        "Write no fewer than {n} words.",
        "Answer with {n} words or more.",
        "Make your reply at least {n} words long.",
    ),
    "max_sentences": (
        "Answer in at most {n} sentence{s}.",
        "Your response should be no longer than {n} sentence{s}.",
        "Use {n} sentence{s} or fewer.",
        "Do not write more than {n} sentence{s}.",
    ),
    "include_keyword": (
        'Include the keyword "{word}" in your response.',
        'Make sure to use the word "{word}".',
        'Your answer must mention the word "{word}".',
        'Somewhere in your reply, use the word "{word}".',
    ),
    "exclude_keyword": (
        'Do not use the word "{word}" in your response.',
        'Avoid the word "{word}" entirely.',
        'Your answer must not contain the word "{word}".',
        'Never write the word "{word}" in your reply.',
    ),
    "start_with": (
        'Start your response with the exact phrase "{phrase}".',
        'Begin your answer with "{phrase}".',
        'The first words of your reply must be "{phrase}".',
        'Open your response with the words "{phrase}".',
    ),
    "end_with": (
        'End your response with the exact phrase "{phrase}". No other words should follow it.',
        'Finish your answer with "{phrase}".',
        'The last words of your reply must be "{phrase}".',
        'Conclude your response with the phrase "{phrase}".',
    ),
    "no_commas": (
        "Do not use any commas in your response.",
        "Your entire answer must be free of commas.",
        "Write your reply without a single comma.",
        "Refrain from using commas anywhere in your answer.",
    ),
    "bullets": (
        'Your answer must contain exactly {n} bullet points, each on its own line starting with "* ".',
        "Format your reply as exactly {n} markdown bullet points.",
        'Give exactly {n} bullet points (lines that start with "* " or "- ").',
        "Use exactly {n} markdown bullet points in your answer.",
    ),
    "quotes": (
        "Wrap your entire response with double quotation marks.",
        "Put your whole answer inside double quotes.",
        "Enclose your reply in double quotation marks.",
        "Your response must begin and end with a double quote character.",
    ),
    "json": (
        "Your entire output should be a single JSON object.",
        "Respond only with a valid JSON object.",
        "Format your whole answer as a JSON object; you may wrap it in markdown ticks (```).",
        "Return your answer as one well-formed JSON object and nothing else.",
    ),
    "paragraphs": (
        "There should be exactly {n} paragraphs, separated from each other by a blank line.",
        "Write exactly {n} paragraphs; separate paragraphs with an empty line.",
        "Your response must have {n} paragraphs separated by blank lines.",
        "Split your answer into exactly {n} paragraphs, with one blank line between them.",
    ),
}
TYPES = tuple(PHRASINGS)
HELD_OUT_PHRASING = {t: len(p) - 1 for t, p in PHRASINGS.items()}  # index of the phrasing only eval uses
NUMBERS = {
    "max_words": (15, 25, 40, 60),
    "min_words": (25, 40, 60),
    "max_sentences": (1, 2, 3),
    "bullets": (2, 3, 4, 5),
    "paragraphs": (2, 3, 4),
}
# Pairs of types one prompt never combines: contradictory, or one makes the other ill-defined.
CONFLICTS = frozenset(
    frozenset(p)
    for p in [
        ("lowercase", "capitals"),
        ("max_words", "min_words"),
        ("min_words", "max_sentences"),
        ("max_words", "paragraphs"),
        ("max_sentences", "paragraphs"),
        ("max_sentences", "bullets"),
        ("bullets", "paragraphs"),
        ("include_keyword", "exclude_keyword"),
        *[("quotes", t) for t in ("start_with", "end_with", "bullets", "paragraphs", "json")],
        *[("json", t) for t in TYPES if t not in ("json", "include_keyword", "exclude_keyword", "max_words")],
    ]
)

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")


def words(text: str) -> list[str]:
    """The lowercased words of `text`."""
    return [w.lower() for w in _WORD.findall(text)]


def _norm_phrase(text: str) -> str:
    return " ".join(words(text))


def sentences(text: str) -> list[str]:
    """Sentences: text split after ., ! or ? (and at line breaks), keeping only pieces with a word."""
    return [s for s in re.split(r"(?<=[.!?])\s+|\n+", text.strip()) if words(s)]


def paragraphs(text: str) -> list[str]:
    return [p for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]


def bullet_lines(text: str) -> list[str]:
    """Markdown bullet lines ("* item" or "- item"; a "**bold**" line is not a bullet)."""
    return [ln for ln in text.splitlines() if re.match(r"^\s*(?:\*(?!\*)|-)\s+\S", ln)]


def _strip_fences(text: str) -> str:
    text = text.strip()
    m = re.fullmatch(r"```[a-zA-Z]*\s*\n?(.*?)\n?\s*```", text, flags=re.S)
    return m.group(1).strip() if m else text


def _json_object(text: str) -> bool:
    try:
        value = json.loads(_strip_fences(text))
    except (ValueError, RecursionError):
        return False
    return isinstance(value, dict) and bool(value)


def _quoted(text: str) -> bool:
    text = text.strip()
    return len(text) >= 3 and text[0] in '"“' and text[-1] in '"”' and bool(words(text[1:-1]))


def _starts_with(text: str, phrase: str) -> bool:
    got, want = words(text), words(phrase)
    return got[: len(want)] == want


def _ends_with(text: str, phrase: str) -> bool:
    """The words end with the phrase's words, and nothing but punctuation, quotes or spaces follows it."""
    got, want = words(text), words(phrase)
    return len(got) >= len(want) and got[len(got) - len(want) :] == want


_CHECKS: dict[str, Callable[[str, dict], bool]] = {
    "lowercase": lambda r, p: any(c.isalpha() for c in r) and r == r.lower(),
    "capitals": lambda r, p: any(c.isalpha() for c in r) and r == r.upper(),
    "max_words": lambda r, p: len(words(r)) <= p["n"],
    "min_words": lambda r, p: len(words(r)) >= p["n"],
    "max_sentences": lambda r, p: len(sentences(r)) <= p["n"],
    "include_keyword": lambda r, p: p["word"].lower() in words(r),
    "exclude_keyword": lambda r, p: p["word"].lower() not in words(r),
    "start_with": lambda r, p: _starts_with(r, p["phrase"]),
    "end_with": lambda r, p: _ends_with(r, p["phrase"]),
    "no_commas": lambda r, p: "," not in r and "，" not in r,
    "bullets": lambda r, p: len(bullet_lines(r)) == p["n"],
    "quotes": lambda r, p: _quoted(r),
    "json": lambda r, p: _json_object(r),
    "paragraphs": lambda r, p: len(paragraphs(r)) == p["n"],
}
assert set(_CHECKS) == set(TYPES)


@dataclass(frozen=True)
class Constraint:
    """One constraint: its type, the phrasing it is written in (index into PHRASINGS[type]) and its parameters."""

    type: str
    phrasing: int
    params: tuple[tuple[str, int | str], ...] = ()

    @property
    def values(self) -> dict:
        return dict(self.params)

    def text(self) -> str:
        v = self.values
        s = "" if v.get("n") == 1 else "s"
        return PHRASINGS[self.type][self.phrasing].format(s=s, **v)

    def check(self, response: str) -> bool:
        """Whether `response` (already judged non-degenerate by the caller) satisfies this constraint."""
        return _CHECKS[self.type](response, self.values)

    def required_phrases(self) -> list[str]:
        """Text the constraint asks the response to copy from the prompt (not evidence of copying the prompt)."""
        v = self.values
        return [v["phrase"]] if "phrase" in v else [v["word"]] if self.type == "include_keyword" else []


def _line_regex(template: str) -> re.Pattern:
    pat = re.escape(template)
    for name, sub in (
        ("n", r"(?P<n>[1-9][0-9]{0,3})"),
        ("s", r"s?"),
        ("word", r"(?P<word>[A-Za-z][A-Za-z'-]*)"),
        ("phrase", r"(?P<phrase>[^\"\n]+)"),
    ):
        pat = pat.replace(re.escape("{" + name + "}"), sub)
    return re.compile(f"^{pat}$")


_PARSERS = [(t, i, _line_regex(p)) for t, ps in PHRASINGS.items() for i, p in enumerate(ps)]


def parse_line(line: str) -> Constraint | None:
    """The constraint `line` states (exactly, as `Constraint.text` writes it), or None."""
    line = line.strip()
    for type_, i, rx in _PARSERS:
        m = rx.match(line)
        if m is None:
            continue
        params = {k: (int(v) if k == "n" else v) for k, v in m.groupdict().items()}
        c = Constraint(type_, i, tuple(sorted(params.items())))
        if c.text() == line:  # also rejects "1 sentences" / "2 sentence"
            return c
    return None
