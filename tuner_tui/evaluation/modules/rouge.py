"""ROUGE-1/2/L F-measures (rouge_score, with stemming), as an `evaluate` metric module (offline)."""

import datasets
import evaluate
from rouge_score import rouge_scorer


class Rouge(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="ROUGE-1, ROUGE-2 and ROUGE-L F-measure, mean over examples.",
            citation="Lin, 2004. ROUGE: A Package for Automatic Evaluation of Summaries.",
            inputs_description="predictions, references: lists of strings",
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references, use_stemmer=True):
        scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=use_stemmer)
        totals = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
        for prediction, reference in zip(predictions, references, strict=True):
            scores = scorer.score(reference, prediction)
            for key in totals:
                totals[key] += scores[key].fmeasure
        n = max(len(predictions), 1)
        return {
            "rouge1": totals["rouge1"] / n,
            "rouge2": totals["rouge2"] / n,
            "rouge_l": totals["rougeL"] / n,
        }
