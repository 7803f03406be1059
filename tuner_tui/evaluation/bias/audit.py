"""Data audit: who the training data talks about, and (for classification) how it labels them.

One streaming pass with counters only, so memory stays bounded by the lexicon size times the number
of labels, whatever the number of rows.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from tuner_tui.evaluation.bias.lexicons import FAMILIES, LEXICON, LEXICON_VERSION, Matcher
from tuner_tui.evaluation.bias.stats import pct, r

# A group's share of a label must differ from the overall share by more than this (absolute)...
SKEW_THRESHOLD = 0.15
# ...by at least this many standard errors of a share estimated from the group's rows...
SKEW_MIN_Z = 2.0
# ...and the group must have at least this many labelled rows.
MIN_GROUP_ROWS = 20
# Gender representation: flag when one of female/male is mentioned in this many times the rows of
# the other (and the larger has at least MIN_GROUP_ROWS rows).
REPRESENTATION_RATIO = 2.0

FAMILY_TITLES = {
    "gender": "Gender",
    "race_ethnicity": "Race/ethnicity",
    "religion": "Religion",
    "age": "Age",
    "disability": "Disability",
    "nationality": "Nationality",
}


def audit_data(texts: Iterable[str], labels: Sequence[Any] | None, groups: list[str] | None) -> dict:
    """Count demographic mentions in `texts` and, with `labels`, the label mix per group.

    Args:
        texts: Training texts, streamed once (any iterable, e.g. a generator over 1M rows).
        labels: One label per text for classification (any hashable, reported as strings), or None.
        groups: Group families to audit (see `lexicons.FAMILIES`); empty or None = all.

    Returns:
        A JSON-serialisable dict: per family and group the rows mentioning it and their shares,
        per group the label distribution with skew flags, the thresholds used, and findings.
    """
    families = list(groups) if groups else list(FAMILIES)
    matcher = Matcher(families)
    rows = 0
    rows_any = 0
    family_rows: Counter[str] = Counter()
    group_rows: Counter[tuple[str, str]] = Counter()
    group_mentions: Counter[tuple[str, str]] = Counter()
    term_counts: Counter[tuple[str, str, str]] = Counter()
    label_totals: Counter[str] = Counter()
    group_labels: Counter[tuple[str, str, str]] = Counter()

    pairs = zip(texts, labels, strict=True) if labels is not None else ((t, None) for t in texts)
    for text, label in pairs:
        rows += 1
        mentions = matcher.find(text) if text else []
        label_key = None if label is None else str(label)
        if label_key is not None:
            label_totals[label_key] += 1
        if not mentions:
            continue
        rows_any += 1
        seen = set()
        for m in mentions:
            key = (m.family, m.group)
            group_mentions[key] += 1
            term_counts[(m.family, m.group, m.term.lower())] += 1
            seen.add(key)
        for family in {f for f, _ in seen}:
            family_rows[family] += 1
        for key in seen:
            group_rows[key] += 1
            if label_key is not None:
                group_labels[(*key, label_key)] += 1

    result: dict[str, Any] = {
        "status": "ok" if rows else "empty",
        "rows": rows,
        "rows_with_any_mention": rows_any,
        "share_with_any_mention": r(rows_any / rows) if rows else 0.0,
        "method": (
            f"Whole-word, case-insensitive matching of project lexicons (version {LEXICON_VERSION}) "
            "for people and faiths; ambiguous words (e.g. 'black', 'blind', 'senior') only count "
            "inside phrases such as 'black people'; first names are not counted. A row counts once "
            "per group however often the group is mentioned."
        ),
        "thresholds": {
            "skew_share_difference": SKEW_THRESHOLD,
            "skew_min_z": SKEW_MIN_Z,
            "min_group_rows": MIN_GROUP_ROWS,
            "representation_ratio": REPRESENTATION_RATIO,
        },
        "families": {},
        "labels": None,
        "flags": [],
        "findings": [],
    }
    for family in families:
        result["families"][family] = {
            "rows_mentioning": family_rows[family],
            "share_of_rows": r(family_rows[family] / rows) if rows else 0.0,
            "groups": {
                group: {
                    "rows": group_rows[(family, group)],
                    "share_of_rows": r(group_rows[(family, group)] / rows) if rows else 0.0,
                    "share_of_family_rows": (
                        r(group_rows[(family, group)] / family_rows[family]) if family_rows[family] else 0.0
                    ),
                    "mentions": group_mentions[(family, group)],
                    "top_terms": _top_terms(term_counts, family, group),
                }
                for group in LEXICON[family]
            },
        }
    if labels is not None and rows:
        result["labels"] = _label_section(families, rows, label_totals, group_rows, group_labels)
        result["flags"].extend(result["labels"]["skewed"])
    result["flags"].extend(_representation_flags(result["families"]))
    result["findings"] = _findings(result)
    result["headline"] = headline(result)
    return result


def _top_terms(term_counts: Counter, family: str, group: str, k: int = 5) -> list[list[Any]]:
    terms = [(term, n) for (f, g, term), n in term_counts.items() if f == family and g == group]
    return [[term, n] for term, n in sorted(terms, key=lambda t: (-t[1], t[0]))[:k]]


def _label_section(
    families: list[str],
    rows: int,
    label_totals: Counter[str],
    group_rows: Counter[tuple[str, str]],
    group_labels: Counter[tuple[str, str, str]],
) -> dict[str, Any]:
    overall = {label: r(n / rows) for label, n in sorted(label_totals.items())}
    by_group: dict[str, Any] = {}
    skewed: list[dict[str, Any]] = []
    for family in families:
        for group in LEXICON[family]:
            n = group_rows[(family, group)]
            if n == 0:
                continue
            distribution = {label: r(group_labels[(family, group, label)] / n) for label in overall}
            entry: dict[str, Any] = {"rows": n, "distribution": distribution, "checked": n >= MIN_GROUP_ROWS}
            by_group[f"{family}/{group}"] = entry
            if n < MIN_GROUP_ROWS:
                continue
            for label, p in overall.items():
                share = group_labels[(family, group, label)] / n
                difference = share - p
                standard_error = math.sqrt(max(p * (1 - p), 1e-12) / n)
                z = abs(difference) / standard_error
                if len(overall) == 2 and difference < 0:
                    continue  # with two labels the other label's excess says the same thing
                if abs(difference) > SKEW_THRESHOLD and z >= SKEW_MIN_Z:
                    skewed.append(
                        {
                            "kind": "label_skew",
                            "family": family,
                            "group": group,
                            "label": label,
                            "rows": n,
                            "group_share": r(share),
                            "overall_share": p,
                            "difference": r(difference),
                            "z": r(z, 2),
                        }
                    )
    return {
        "overall": overall,
        "counts": dict(sorted(label_totals.items())),
        "by_group": by_group,
        "skewed": skewed,
    }


def _representation_flags(families: dict[str, Any]) -> list[dict[str, Any]]:
    gender = families.get("gender")
    if not gender:
        return []
    female, male = gender["groups"]["female"]["rows"], gender["groups"]["male"]["rows"]
    larger, smaller = max(female, male), min(female, male)
    if larger < MIN_GROUP_ROWS or larger < REPRESENTATION_RATIO * max(smaller, 1):
        return []
    return [
        {
            "kind": "representation",
            "family": "gender",
            "group": "female" if female > male else "male",
            "other_group": "male" if female > male else "female",
            "rows": larger,
            "other_rows": smaller,
            "ratio": r(larger / smaller, 2) if smaller else None,
        }
    ]


def _findings(result: dict[str, Any]) -> list[str]:
    rows = result["rows"]
    if not rows:
        return ["The training data is empty: nothing to audit."]
    findings = []
    for family, entry in result["families"].items():
        title = FAMILY_TITLES.get(family, family)
        if not entry["rows_mentioning"]:
            findings.append(f"{title}: no terms found in {rows} rows.")
            continue
        present = sorted(
            ((g, e) for g, e in entry["groups"].items() if e["rows"]), key=lambda item: -item[1]["rows"]
        )
        parts = ", ".join(f"{g} {e['rows']} ({pct(e['share_of_rows'])})" for g, e in present[:6])
        findings.append(
            f"{title} terms appear in {entry['rows_mentioning']} of {rows} rows "
            f"({pct(entry['share_of_rows'])}): {parts}."
        )
    for flag in result["flags"]:
        if flag["kind"] == "label_skew":
            findings.append(
                f"Label skew: rows mentioning {flag['family']}/{flag['group']} ({flag['rows']} rows) are "
                f"labelled '{flag['label']}' {pct(flag['group_share'])} of the time against "
                f"{pct(flag['overall_share'])} overall (difference {100 * flag['difference']:+.1f} points; "
                f"flagged above {100 * SKEW_THRESHOLD:.0f} points and {SKEW_MIN_Z:g} standard errors). "
                "A model trained on this can learn the group term as a shortcut for the label."
            )
        else:
            findings.append(
                f"Representation: {flag['group']} terms appear in {flag['rows']} rows and "
                f"{flag['other_group']} terms in {flag['other_rows']} (flagged at a ratio of "
                f"{REPRESENTATION_RATIO:g} or more)."
            )
    if result["labels"] is not None and not result["labels"]["skewed"]:
        checked = sum(1 for e in result["labels"]["by_group"].values() if e["checked"])
        findings.append(
            f"No label skew above the thresholds in the {checked} group(s) with at least "
            f"{MIN_GROUP_ROWS} rows; groups with fewer rows were not checked. This says nothing about "
            "groups the lexicons do not cover."
        )
    return findings


def _flag_words(flag: dict[str, Any]) -> str:
    if flag.get("kind") == "label_skew":
        return (
            f"label skew for {flag.get('family')}/{flag.get('group')} ('{flag.get('label')}' in "
            f"{pct(flag.get('group_share'))} of its rows against {pct(flag.get('overall_share'))} overall)"
        )
    if flag.get("kind") == "representation":
        return (
            f"{flag.get('group')} terms in {flag.get('rows')} rows against {flag.get('other_rows')} for "
            f"{flag.get('other_group')} terms"
        )
    return str(flag.get("kind", "a flag")).replace("_", " ")


def headline(audit: dict[str, Any]) -> str:
    """One sentence from the audit's flags: what was flagged, or that nothing was."""
    flags = [f for f in audit.get("flags") or [] if isinstance(f, dict)]
    if flags:
        words = "; ".join(_flag_words(f) for f in flags[:3])
        more = f"; and {len(flags) - 3} more" if len(flags) > 3 else ""
        return f"{len(flags)} flag{'s' if len(flags) != 1 else ''}: {words}{more}."
    checks = "label skew or representation gap" if audit.get("labels") is not None else "representation gap"
    rows, mentioning = audit.get("rows"), audit.get("rows_with_any_mention")
    if isinstance(rows, int) and isinstance(mentioning, int) and rows:
        return (
            f"Nothing flagged: {mentioning} of {rows} training rows ({pct(mentioning / rows)}) mention a "
            f"group, with no {checks} above the thresholds."
        )
    return f"Nothing flagged: no {checks} above the thresholds."
