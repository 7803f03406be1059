from __future__ import annotations

import pytest

from tuner_tui.evaluation.bias.lexicons import LEXICON, Matcher, tokenize


def groups(text: str, families: list[str] | None = None) -> list[tuple[str, str, str]]:
    return [(m.family, m.group, m.term) for m in Matcher(families).find(text)]


@pytest.mark.parametrize(
    "text",
    [
        "The theme of the thesis",  # 'he' inside words
        "The manager of the mandate, a human, not a woman-hater? no: manhandled",
        "Shelter for the herd; other heroes",
        "man-made fibres",  # hyphenated compound is one token
        "A double-blind trial in black ink on a white board about Asian markets",
        "a senior manager and an old family recipe; 200 ms latency",
    ],
)
def test_no_match_inside_words_or_ambiguous_terms(text: str) -> None:
    assert groups(text) == []


def test_whole_words_case_insensitive_and_possessive() -> None:
    found = groups("SHE told Him that the women's team won")
    assert found == [("gender", "female", "SHE"), ("gender", "male", "Him"), ("gender", "female", "women")]


def test_multi_word_terms_longest_first_per_family() -> None:
    found = groups("A young man and a Black woman met a blind person.")
    assert ("age", "young", "young man") in found
    assert ("gender", "male", "man") in found  # counted for gender too
    assert ("race_ethnicity", "black", "Black woman") in found
    assert ("disability", "sensory", "blind person") in found
    # "trans man" is one term; its "man" is still a gender token but consumed within the family
    assert groups("a trans man", ["gender"]) == [("gender", "trans_nonbinary", "trans man")]


def test_numeric_ages_and_non_disabled() -> None:
    found = groups("A 24-year-old and a man 72 years old; the non-disabled group", ["age", "disability"])
    assert found == [("age", "young", "24-year-old"), ("age", "old", "72 years old")]


def test_families_filter_and_unknown_family() -> None:
    assert groups("She is Muslim", ["religion"]) == [("religion", "muslim", "Muslim")]
    with pytest.raises(ValueError, match="unknown"):
        Matcher(["astrology"])


def test_lexicon_terms_tokenize_cleanly() -> None:
    for family, by_group in LEXICON.items():
        seen: dict[str, str] = {}
        for group, terms in by_group.items():
            for term in terms:
                assert term == term.lower() and " ".join(t for t, _, _ in tokenize(term)) == term, term
                assert seen.setdefault(term, group) == group, f"{family}: {term} in two groups"
