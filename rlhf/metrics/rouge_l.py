"""ROUGE-L as a local `evaluate` metric module, loaded by path: `evaluate.load("rlhf/metrics/rouge_l.py")`.

`evaluate.load("rouge")` needs the hub to fetch its script; this module needs nothing but `rouge-score`, which
works offline. F-measure of the longest common subsequence, averaged over examples."""

import datasets
import evaluate
from rouge_score import rouge_scorer

_DESCRIPTION = "ROUGE-L F1 (longest common subsequence) between predictions and references, via rouge-score."
_KWARGS = "predictions: list of str; references: list of str. Returns {'rougeL': mean F1 in [0, 1]}."


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
        scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
        scores = [scorer.score(ref, pred)["rougeL"].fmeasure for pred, ref in zip(predictions, references)]
        return {"rougeL": sum(scores) / len(scores) if scores else 0.0}
