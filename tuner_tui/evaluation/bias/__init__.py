"""Bias report: data audit, counterfactual probes and a paired-sentence benchmark (issue 6, part 5).

Models are reached only through the scorers of `tuner_tui.evaluation.scoring`; nothing here imports
torch or transformers.
"""

from tuner_tui.evaluation.bias.audit import audit_data
from tuner_tui.evaluation.bias.counterfactual import collect_pairs, run_counterfactual
from tuner_tui.evaluation.bias.lexicons import FAMILIES, LEXICON, Matcher
from tuner_tui.evaluation.bias.paired import load_pairs, run_paired
from tuner_tui.evaluation.bias.probes import builtin_probes, expand_templates, load_probes
from tuner_tui.evaluation.bias.report import bias_markdown, bias_report
from tuner_tui.evaluation.bias.swaps import Pair, counterfactual_pairs

__all__ = [
    "FAMILIES",
    "LEXICON",
    "Matcher",
    "Pair",
    "audit_data",
    "bias_markdown",
    "bias_report",
    "builtin_probes",
    "collect_pairs",
    "counterfactual_pairs",
    "expand_templates",
    "load_pairs",
    "load_probes",
    "run_counterfactual",
    "run_paired",
]
