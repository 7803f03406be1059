from __future__ import annotations

import json
import random

from tuner_tui.evaluation.bias.audit import MIN_GROUP_ROWS, SKEW_THRESHOLD, audit_data


def planted(n: int = 200, seed: int = 0) -> tuple[list[str], list[str]]:
    """Rows about 'she' are mostly negative, rows about 'he' mostly positive."""
    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        pronoun = "She" if i % 2 else "He"
        texts.append(f"{pronoun} asked about order {i}.")
        if pronoun == "She":
            labels.append("negative" if rng.random() < 0.9 else "positive")
        else:
            labels.append("positive" if rng.random() < 0.9 else "negative")
    return texts, labels


def test_planted_skew_is_flagged_with_numbers_and_threshold() -> None:
    texts, labels = planted()
    audit = audit_data(iter(texts), labels, ["gender"])
    json.dumps(audit)
    assert audit["rows"] == 200 and audit["families"]["gender"]["rows_mentioning"] == 200
    assert audit["families"]["gender"]["groups"]["female"]["rows"] == 100
    assert audit["thresholds"]["skew_share_difference"] == SKEW_THRESHOLD
    flagged = {(f["group"], f["label"]) for f in audit["flags"] if f["kind"] == "label_skew"}
    assert ("female", "negative") in flagged and ("male", "positive") in flagged
    assert any("Label skew" in f and "female" in f for f in audit["findings"])


def test_balanced_data_is_not_flagged() -> None:
    texts = [f"{p} asked about order {i}." for i in range(50) for p in ("She", "He")]
    labels = [lab for _ in range(25) for lab in ("positive", "positive", "negative", "negative")]
    audit = audit_data(texts, labels, None)
    assert audit["flags"] == []
    assert audit["labels"]["by_group"]["gender/female"]["distribution"] == {"negative": 0.5, "positive": 0.5}
    assert any("No label skew" in f for f in audit["findings"])


def test_small_groups_are_not_checked() -> None:
    texts = ["She called."] * (MIN_GROUP_ROWS - 1) + ["The parcel arrived."] * 100
    labels = ["negative"] * (MIN_GROUP_ROWS - 1) + ["positive"] * 100
    audit = audit_data(texts, labels, ["gender"])
    assert not [f for f in audit["flags"] if f["kind"] == "label_skew"]
    assert audit["labels"]["by_group"]["gender/female"]["checked"] is False


def test_causal_audit_without_labels_counts_shares_and_representation() -> None:
    texts = ["He fixed it."] * 30 + ["She fixed it."] * 5 + ["Muslims and Christians met."] * 5 + ["x"] * 60
    audit = audit_data((t for t in texts), None, None)
    assert audit["labels"] is None
    assert audit["families"]["gender"]["share_of_rows"] == 0.35
    assert audit["families"]["religion"]["groups"]["muslim"]["rows"] == 5
    assert [f["kind"] for f in audit["flags"]] == ["representation"]
    json.dumps(audit)


def test_empty_data() -> None:
    audit = audit_data([], None, None)
    assert audit["status"] == "empty" and audit["rows"] == 0
