"""Personal data and secrets in text: find, count, mask and redact them.

Each detector is a regular expression that proposes candidates and a validator that rejects the
look-alikes (Luhn for card numbers, mod-97 for IBANs, octet ranges for IPv4, area rules for US SSNs,
digit counts and boundaries for phone numbers, character-class and entropy checks for secrets). The
detectors are tuned for precision: a redaction that eats order ids and version numbers ruins data.

Scanning a million rows in Python would be slow, so `candidate_mask` first runs one RE2 pattern over
a whole Arrow column (C++), and only the rows it flags go through the Python detectors; `scan` then
runs one RE2 pre-filter per kind over those rows, so each row meets only the detectors that can
match in it (every pre-filter is a superset of its detector's matches, so the hits are the same).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

# Kinds, in the order overlaps are resolved (an API key wins over an email it contains, a card
# number over the phone-shaped digits inside it).
PII_KINDS = ("api_key", "email", "iban", "credit_card", "us_ssn", "ip_address", "phone")
PLACEHOLDERS = {kind: f"<{kind.upper()}>" for kind in PII_KINDS}

# A row can hold PII only if this RE2 pattern matches somewhere in it (superset of all detectors).
_CANDIDATE_RE2 = (
    r"[\w.+-]@[\w-]+\.[A-Za-z]"
    r"|\d(?:[ ().-]{0,3}\d){6}"
    r"|\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}"
    r"|[A-Z]{2}\d{2} ?[A-Z0-9]{4}"
    r"|sk[-_]|AKIA|gh[pousr]_|xox[abprs]-|AIza"
    r"|[A-Za-z0-9+/_=-]{32}"
)

# Per kind, an RE2 pattern that matches wherever the kind's Python pattern below can match: a row
# it misses cannot hold that kind, so its detector is skipped. Python's \d also matches non-ASCII
# digits; any non-ASCII character stands in for those (cheaper for RE2 than \p{Nd}, still a superset).
_D = r"[0-9\x{80}-\x{10FFFF}]"
_KIND_RE2 = {
    "api_key": r"sk[-_]|AKIA|gh[pousr]_|xox[abprs]-|AIza|[A-Za-z0-9+/_=-]{32}",
    "email": r"@",
    "iban": rf"[A-Z]{{2}}{_D}{{2}} ?[A-Z0-9]{{4}}",
    "credit_card": rf"{_D}(?:[ -]?{_D}){{12}}",
    "us_ssn": rf"{_D}{{3}}-{_D}{{2}}-{_D}{{4}}",
    "ip_address": rf"(?:{_D}{{1,3}}\.){{3}}{_D}",
    "phone": rf"\+{_D}|{_D}{{3}}[.-]{_D}{{4}}|\)[ .-]?{_D}{{3}} {_D}{{4}}|0{_D}{{2,4}}[ -]{_D}{{3}}",
}

_EMAIL = re.compile(
    r"(?<![\w.+%-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"[A-Za-z]{2,24}(?![\w-])"
)
# North American numbers need a phone's shape: (555) 123-4567, or 555-123-4567 / 555.123.4567 with
# the same separator twice (a bare 10-digit run is more often an id than a phone, and "555 123 4567"
# is as often three counts); international numbers need the leading +; national numbers with a
# trunk 0 need spaces or dashes.
_PHONE = re.compile(
    r"(?<![\w+.-])(?:"
    r"\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]\d{2,6}){1,4}"
    r"|\+\d{8,14}"
    r"|(?:1[ .-])?(?:\(\d{3}\)[ .-]?\d{3}[ .-]\d{4}|\d{3}(?P<sep>[.-])\d{3}(?P=sep)\d{4})"
    r"|0\d{2,4}[ -]\d{3,4}[ -]\d{3,4}"
    r")(?![\w.-]?\d)"
)
_CARD = re.compile(r"(?<![\w.-])\d(?:[ -]?\d){12,18}(?![\w]|[.-]\d)")
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w]|\.\d)")
_IBAN = re.compile(r"(?<![\w])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?![\w])")
_SSN = re.compile(r"(?<![\w-])\d{3}-\d{2}-\d{4}(?![\w-])")
_API_KEY = re.compile(
    r"(?<![\w-])(?:"
    r"sk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}"
    r"|sk_(?:live|test)_[A-Za-z0-9]{16,}"
    r"|AKIA[0-9A-Z]{16}"
    r"|gh[pousr]_[A-Za-z0-9]{36,}"
    r"|xox[abprs]-[A-Za-z0-9-]{10,}"
    r"|AIza[0-9A-Za-z_-]{35}"
    r"|[A-Za-z0-9+/_=-]{32,}"
    r")(?![\w-])"
)
_VERSION_CONTEXT = re.compile(r"(?i)(?:version|ver\.?|release|v)\s*$")

# IBAN lengths for the countries whose IBANs users most often paste (others: 15..34 accepted).
_IBAN_LENGTHS = {
    "AT": 20, "BE": 16, "CH": 21, "CZ": 24, "DE": 22, "DK": 18, "ES": 24, "FI": 18, "FR": 27,
    "GB": 22, "GR": 27, "HR": 21, "HU": 28, "IE": 22, "IT": 27, "LU": 20, "NL": 18, "NO": 15,
    "PL": 28, "PT": 25, "RO": 24, "SE": 24, "SI": 19, "SK": 24,
}  # fmt: skip


def luhn_ok(digits: str) -> bool:
    """True when `digits` passes the Luhn checksum used by payment card numbers."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card_ok(text: str) -> bool:
    separators = {c for c in text if not c.isdigit()}
    if len(separators) > 1:
        return False
    digits = "".join(c for c in text if c.isdigit())
    if not 13 <= len(digits) <= 19 or len(set(digits)) < 2:
        return False
    # Issuer prefixes: Visa, Mastercard, Amex, Discover, JCB, Diners; anything else is an id.
    if not re.match(r"4|5[1-5]|2[2-7]|3[47]|6(?:011|5|4[4-9])|35|3[068]", digits):
        return False
    return luhn_ok(digits)


def _iban_ok(text: str) -> bool:
    compact = text.replace(" ", "")
    expected = _IBAN_LENGTHS.get(compact[:2])
    if expected is not None and len(compact) != expected:
        return False
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    number = "".join(str(int(c, 36)) for c in rearranged)
    return int(number) % 97 == 1


def _ipv4_ok(text: str, before: str) -> bool:
    octets = text.split(".")
    if any(len(o) > 1 and o.startswith("0") for o in octets) or any(int(o) > 255 for o in octets):
        return False
    return not _VERSION_CONTEXT.search(before)


def _ssn_ok(text: str) -> bool:
    area, group, serial = text.split("-")
    if area in ("000", "666") or area.startswith("9") or group == "00" or serial == "0000":
        return False
    return text not in ("078-05-1120", "219-09-9999", "123-45-6789")


def _phone_ok(text: str) -> bool:
    if len({c for c in text if c.isdigit()}) < 2:
        return False  # 000-000-0000 and the like fill a form, they reach no one
    digits = sum(c.isdigit() for c in text)
    if text.startswith("+"):
        return 8 <= digits <= 15
    if text.startswith("0"):
        return 10 <= digits <= 11
    national = re.sub(r"\D", "", text)
    national = national[1:] if len(national) == 11 and national.startswith("1") else national
    # The shape alone makes it a phone number: the fictional 555-01xx and placeholder numbers such as
    # (555) 123-4567 break the numbering plan's rules but are still what a redaction must catch.
    return len(national) == 10


def _entropy(text: str) -> float:
    counts: dict[str, int] = {}
    for ch in text:
        counts[ch] = counts.get(ch, 0) + 1
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def _api_key_ok(text: str) -> bool:
    if text.startswith(("sk-", "sk_", "AKIA", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "xox", "AIza")):
        return True
    # A generic long token is a secret only when it mixes cases and digits and looks random:
    # hex hashes, base64 of text, and identifiers_like_this fail these checks.
    has_classes = (
        any(c.islower() for c in text) and any(c.isupper() for c in text) and any(c.isdigit() for c in text)
    )
    return has_classes and "_" not in text.strip("_") and _entropy(text) >= 4.2


@dataclass(frozen=True)
class PiiHit:
    kind: str
    start: int
    end: int
    text: str


_Detector = tuple[str, re.Pattern[str], Callable[[str, str], bool]]
_DETECTORS: tuple[_Detector, ...] = (
    ("api_key", _API_KEY, lambda s, _: _api_key_ok(s)),
    ("email", _EMAIL, lambda s, _: True),
    ("iban", _IBAN, lambda s, _: _iban_ok(s)),
    ("credit_card", _CARD, lambda s, _: _card_ok(s)),
    ("us_ssn", _SSN, lambda s, _: _ssn_ok(s)),
    ("ip_address", _IPV4, _ipv4_ok),
    ("phone", _PHONE, lambda s, _: _phone_ok(s)),
)


def find_pii(text: str, kinds: Iterable[str] = PII_KINDS) -> list[PiiHit]:
    """Validated, non-overlapping PII hits in `text`, ordered by position.

    Args:
        text: The text to scan.
        kinds: Which kinds to look for (see `PII_KINDS`).

    Returns:
        The hits; where two overlap, the kind earlier in `PII_KINDS` wins.
    """
    wanted = set(kinds)
    hits: list[PiiHit] = []
    if not wanted:
        return hits
    taken: list[tuple[int, int]] = []
    for kind, pattern, valid in _DETECTORS:
        if kind not in wanted:
            continue
        for match in pattern.finditer(text):
            start, end = match.span()
            if any(start < e and s < end for s, e in taken):
                continue
            if valid(match.group(), text[max(0, start - 12) : start]):
                hits.append(PiiHit(kind, start, end, match.group()))
                taken.append((start, end))
    return sorted(hits, key=lambda h: h.start)


def redact(text: str, kinds: Iterable[str] = PII_KINDS) -> tuple[str, list[PiiHit]]:
    """`text` with each hit replaced by its typed placeholder (<EMAIL>, <PHONE>, ...)."""
    hits = find_pii(text, kinds)
    return replace_hits(text, hits), hits


def replace_hits(text: str, hits: list[PiiHit]) -> str:
    """`text` with each of `hits` (from `find_pii` on it) replaced by its typed placeholder."""
    if not hits:
        return text
    parts, last = [], 0
    for hit in hits:
        parts.append(text[last : hit.start])
        parts.append(PLACEHOLDERS[hit.kind])
        last = hit.end
    parts.append(text[last:])
    return "".join(parts)


def mask_value(value: str) -> str:
    """A hit shown in a report: first two and last two characters kept, the rest starred."""
    if len(value) <= 6:
        return "*" * len(value)
    middle = re.sub(r"[A-Za-z0-9]", "*", value[2:-2])
    return value[:2] + middle + value[-2:]


def mask_text(text: str) -> str:
    """`text` with every PII hit masked, for examples shown in reports."""
    hits = find_pii(text)
    for hit in reversed(hits):
        text = text[: hit.start] + mask_value(hit.text) + text[hit.end :]
    return text


def candidate_mask(texts: pa.Array) -> pa.Array:
    """Boolean Arrow array: which texts could hold PII (a cheap C++ pre-filter)."""
    import pyarrow.compute as pc

    return pc.fill_null(pc.match_substring_regex(texts, _CANDIDATE_RE2), False)


def scan(texts: pa.Array, kinds: Iterable[str] = PII_KINDS) -> Iterator[tuple[int, str, list[PiiHit]]]:
    """(index, text, hits) for each text of an Arrow string array that holds PII, in order.

    The same hits as `find_pii` on every text, found without running Python on most of them.
    """
    import numpy as np
    import pyarrow.compute as pc

    wanted = [k for k in PII_KINDS if k in set(kinds)]
    candidates = candidate_mask(texts)
    rows = np.flatnonzero(candidates.to_numpy(zero_copy_only=False))
    if not len(rows) or not wanted:
        return
    flagged = texts.filter(candidates)
    possible = np.stack(
        [
            pc.fill_null(pc.match_substring_regex(flagged, _KIND_RE2[k]), False).to_numpy(
                zero_copy_only=False
            )
            for k in wanted
        ],
        axis=1,
    )
    for row, text, flags in zip(rows.tolist(), flagged.to_pylist(), possible.tolist(), strict=True):
        hits = find_pii(text, [k for k, f in zip(wanted, flags, strict=True) if f])
        if hits:
            yield row, text, hits
