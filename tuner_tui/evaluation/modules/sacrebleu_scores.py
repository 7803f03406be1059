"""Corpus BLEU and chrF (sacrebleu), scaled to 0..1, as an `evaluate` metric module (offline)."""

import datasets
import evaluate
import sacrebleu


class SacrebleuScores(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Corpus-level BLEU and chrF from sacrebleu, divided by 100.",
            citation="Post, 2018. A Call for Clarity in Reporting BLEU Scores.",
            inputs_description="predictions, references: lists of strings (one reference each)",
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references):
        refs = [list(references)]
        return {
            "bleu": sacrebleu.corpus_bleu(list(predictions), refs).score / 100.0,
            "chrf": sacrebleu.corpus_chrf(list(predictions), refs).score / 100.0,
        }
