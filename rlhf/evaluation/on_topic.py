"""Whether an answer is about its instruction, by a lexical proxy: it shares at least one content word with it.

The constraints task's gold judge checks the appended constraints and rejects degenerate answers, but not whether
an answer addresses the instruction: "In short, I'm ready to help." satisfies "Devise a plan for a victory parade.
Open your response with the words 'In short'". A policy rewarded by that judge can learn such replies, so the report
measures them beside the judge (the judge itself is left as it is). A content word has 3 or more letters and is no
stopword (function words, instruction verbs such as "write" or "list", and the words of a generic assistant reply
such as "help" or "question"); two words match on their first 5 letters once a plural "s" is dropped ("parade"
and "parades", "cat" and "cats"). A proxy, not a judge: a relevant answer can share no word ("1. Buy in bulk." for
"tips to save money", a poem for "write a poem of five lines") and an irrelevant one can echo a word, so compare
reports it as a rate over many answers, not as a verdict on one."""

from __future__ import annotations

import re

STOPWORDS = frozenset(
    """
    a an and or but nor if then than so as of to in on at for with by from about into onto over under after before
    is are was were be been being am do does did done have has had having not no yes very too also just only
    this that these those it its he she they them their there here his her him we our us you your yours i me my
    what which who whom whose how why when where while all any each every both either some such more most other
    can could would should will shall may might must
    write give make create devise describe explain generate provide list tell name find come compose design develop
    suggest use using used based following given new way ways one two three four five please identify
    answer question request response reply help assist assistant sure ready glad sorry thanks thank hope
    """.split()
)
STEM = 5  # letters two words are compared on


def stem(word: str) -> str:
    """`word` (lowercase) without a plural "s" (not "ss": "business"), cut to its first `STEM` letters."""
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        word = word[:-1]
    return word[:STEM]


def content_words(text: str) -> set[str]:
    """The stems of `text`'s content words."""
    words = re.findall(r"[a-z]+", text.lower())  # "what's" -> what, s
    return {stem(w) for w in words if len(w) >= 3 and w not in STOPWORDS}


def on_topic(topic: str | None, response: str) -> bool:
    """Whether `response` shares a content word with `topic` (what it should be about); True when there is no
    topic or the topic has no content word, since then nothing can be told."""
    if topic is None:
        return True
    words = content_words(topic)
    return not words or bool(words & content_words(response))
