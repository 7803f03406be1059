"""Macro and per-class precision, recall and F1, as an `evaluate` metric module (loads offline)."""

import datasets
import evaluate
from sklearn.metrics import precision_recall_fscore_support


class ClassificationScores(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Precision, recall and F1: macro averages and per class.",
            citation="",
            inputs_description="predictions, references: lists of integer class ids; labels: all class ids",
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, labels=None):
        labels = sorted(set(references) | set(predictions)) if labels is None else list(labels)
        p, r, f, support = precision_recall_fscore_support(
            references, predictions, labels=labels, average=None, zero_division=0
        )
        macro = precision_recall_fscore_support(
            references, predictions, labels=labels, average="macro", zero_division=0
        )
        return {
            "precision_macro": float(macro[0]),
            "recall_macro": float(macro[1]),
            "f1_macro": float(macro[2]),
            "per_class": {
                str(label): {
                    "precision": float(p[i]),
                    "recall": float(r[i]),
                    "f1": float(f[i]),
                    "support": int(support[i]),
                }
                for i, label in enumerate(labels)
            },
        }
