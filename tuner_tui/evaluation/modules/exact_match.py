"""Exact match after whitespace normalisation, as an `evaluate` metric module (loads offline)."""

import datasets
import evaluate


def _normalise(text, ignore_case):
    text = " ".join(str(text).split())
    return text.lower() if ignore_case else text


class ExactMatch(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Share of predictions identical to the reference (whitespace collapsed).",
            citation="",
            inputs_description="predictions, references: lists of strings",
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references, ignore_case=False):
        hits = [
            _normalise(p, ignore_case) == _normalise(r, ignore_case)
            for p, r in zip(predictions, references, strict=True)
        ]
        return {"exact_match": sum(hits) / len(hits) if hits else 0.0}
