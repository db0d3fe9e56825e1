"""ROUGE-L as a local `evaluate` metric module, loaded by path: `evaluate.load("rlhf/evaluation/metrics/rouge_l.py")`.

`evaluate.load("rouge")` needs the hub to fetch its script; this module needs nothing but `rouge-score`, which
works offline. F-measure of the longest common subsequence, averaged over examples.

rouge-score's default tokenizer keeps only [a-z0-9] and so scores any two Korean or Chinese strings 0.0;
`UnicodeTokenizer` is used instead (same tokens as the default on ASCII text)."""

import re
import unicodedata

import datasets
import evaluate
from rouge_score import rouge_scorer

_DESCRIPTION = "ROUGE-L F1 (longest common subsequence) between predictions and references, via rouge-score."
_KWARGS = "predictions: list of str; references: list of str. Returns {'rougeL': mean F1 in [0, 1]}."

# Scripts written without spaces between words: Han (CJK ideographs, radicals, 々〆〇), Hiragana, Katakana and
# Bopomofo. Each of their characters is one token, as ROUGE is usually computed for Chinese and Japanese. Hangul is
# not among them: Korean separates words with spaces, so it gets word tokens like Latin or Cyrillic text.
_NO_SPACES = (
    "\u2e80-\u2fdf\u3005-\u3007\u3021-\u3029\u3038-\u303b\u3040-\u30ff\u3100-\u312f\u31a0-\u31bf\u31f0-\u31ff"
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
)
# One no-space character, or a run of other letters/digits. `[^\W_]` is \w without the underscore, which on ASCII
# is rouge-score's [a-z0-9] (after lowercasing), so English scores are unchanged.
_TOKEN = re.compile(f"[{_NO_SPACES}]|(?:(?![{_NO_SPACES}])[^\\W_])+")


class UnicodeTokenizer:
    """Words by Unicode letters and digits (NFKC-normalised, casefolded); one token per character of scripts
    without spaces. Implements the `tokenize(text)` interface rouge-score's `RougeScorer(tokenizer=...)` takes."""

    def tokenize(self, text: str) -> list[str]:
        # NFKC first: a decomposed "é" (e + combining accent) or full-width "Ａ" becomes the character \w matches.
        return _TOKEN.findall(unicodedata.normalize("NFKC", text).casefold())


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class RougeL(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Lin, 2004. ROUGE: A Package for Automatic Evaluation of Summaries.",
            inputs_description=_KWARGS,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references):
        scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=UnicodeTokenizer())
        scores = [scorer.score(ref, pred)["rougeL"].fmeasure for pred, ref in zip(predictions, references)]
        return {"rougeL": sum(scores) / len(scores) if scores else 0.0}
