from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.evaluation.bias.fakes import LeaningCausal, LeaningClassifier, StereoMasked
from tuner_tui.errors import TunerError
from tuner_tui.evaluation.bias.paired import load_pairs, run_paired

# Authored for this test; 'stereo' marks the sentence the fake masked LM prefers.
CSV = """id,sent_more,sent_less,stereo_antistereo,bias_type,notes
1,The stereo nurse was gentle.,The nurse was gentle.,stereo,gender,a
2,The stereo engineer fixed it.,The engineer fixed it.,stereo,gender,b
3,The old man forgot the keys.,The stereo young man forgot the keys.,antistereo,age,c
4,The stereo grandmother was confused by the phone.,The grandson was confused by the phone.,stereo,age,d
5,"He prayed, quietly, at the stereo mosque.",He prayed quietly at the church.,stereo,religion,e
6,The neighbours were loud.,The neighbours were loud.,stereo,religion,tie
"""


def write(tmp_path: Path, content: str | bytes, name: str = "pairs.csv") -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def test_load_pairs_reads_rows_and_keeps_direction(tmp_path: Path) -> None:
    pairs = load_pairs(write(tmp_path, CSV))
    assert len(pairs) == 6
    assert pairs[4]["sent_more"] == "He prayed, quietly, at the stereo mosque."
    assert pairs[2]["stereo_antistereo"] == "antistereo" and pairs[0]["line"] == 2


def test_missing_columns_error_names_file_missing_and_found(tmp_path: Path) -> None:
    path = write(tmp_path, "sent_more,kind\na,b\n")
    with pytest.raises(TunerError) as error:
        load_pairs(path)
    message = str(error.value)
    # Only the required names are quoted, never the file's own header (see test_pii_masking.py).
    assert str(path) in message and "sent_less, bias_type" in message and "sent_more and 1 other" in message
    assert "kind" not in message


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "is empty"),
        ("  \n", "is empty"),
        (b"sent_more,sent_less,bias_type\n\xff\xfe bad,x,y\n", "not UTF-8"),
        ("sent_more,sent_less,bias_type\n", "no pairs"),
        ("sent_more,sent_less,bias_type\nA,,gender\n", "pairs.csv:2: sent_more and sent_less"),
    ],
)
def test_bad_files_give_clear_errors(tmp_path: Path, content: str | bytes, message: str) -> None:
    with pytest.raises(TunerError, match="pairs.csv") as error:
        load_pairs(write(tmp_path, content))
    assert message in str(error.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TunerError, match="does not exist"):
        load_pairs(tmp_path / "none.csv")


def test_share_overall_and_per_type_on_fake_masked_lm(tmp_path: Path) -> None:
    pairs = load_pairs(write(tmp_path, CSV))
    out = run_paired(StereoMasked(marker="nomarker"), StereoMasked(), pairs)
    json.dumps(out)
    tuned = out["tuned"]
    # Rows 1, 2, 4, 5 prefer sent_more; row 3 prefers sent_less; row 6 is a tie.
    assert tuned["overall"]["prefers_more_stereotypical"] == 4 and tuned["overall"]["ties"] == 1
    assert tuned["overall"]["share"] == round(4 / 6, 4)
    assert tuned["by_bias_type"]["gender"]["share"] == 1.0
    assert tuned["by_bias_type"]["age"]["share"] == 0.5
    assert tuned["by_bias_type"]["religion"]["share"] == 0.5
    lo, hi = tuned["overall"]["share_ci95"]
    assert lo < 0.5 < hi  # six pairs cannot settle it, and the finding says so
    assert out["base"]["overall"]["share"] == 0.0  # every pair ties for the base fake
    assert out["change"]["pairs_now_preferring_more"] == 4
    assert out["ideal_share"] == 0.5 and "pseudo-log-likelihood" in out["method"]
    assert any("cannot tell it from no preference" in f for f in out["findings"])


def test_causal_lm_uses_log_likelihood(tmp_path: Path) -> None:
    out = run_paired(None, LeaningCausal(), load_pairs(write(tmp_path, CSV)))
    assert out["status"] == "ok" and out["method"].startswith("log-likelihood") and out["base"] is None


def test_classifier_is_not_applicable(tmp_path: Path) -> None:
    out = run_paired(LeaningClassifier(), LeaningClassifier(), load_pairs(write(tmp_path, CSV)))
    assert out["status"] == "not_applicable" and "classifier" in out["reason"].lower()
