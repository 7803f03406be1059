"""Column-wise text helpers."""

from __future__ import annotations

import random

import pyarrow as pa
import pyarrow.compute as pc

from tuner_tui.data.text import word_counts


def _arrow_word_counts(texts: pa.Array) -> list[int]:
    trimmed = pc.utf8_trim_whitespace(texts)
    counts = pc.list_value_length(pc.utf8_split_whitespace(trimmed))
    return pc.if_else(pc.equal(pc.utf8_length(trimmed), 0), 0, counts).to_pylist()


def test_word_counts_match_arrow_whitespace_splitting() -> None:
    # every code point Arrow treats as whitespace, and look-alikes that it does not
    spaces = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    probe = pa.array(["a" + s + "b" for s in spaces])
    assert word_counts(probe).to_pylist() == _arrow_word_counts(probe)
    rng = random.Random(0)
    alphabet = [
        "a",
        "é",
        "日",
        "😀",
        " ",
        "\t",
        "\n",
        "\x1c",
        "\x08",
        "\x85",
        "\xa0",
        "\u2003",
        "\u3000",
        "\u2019",
    ]
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))) for _ in range(3000)]
    array = pa.array(texts)
    for sample in (array, array.slice(17, 1000), array.cast(pa.large_string())):
        assert word_counts(sample).to_pylist() == _arrow_word_counts(sample)
    assert word_counts(pa.array(["a b", None])).to_pylist() == [2, None]
