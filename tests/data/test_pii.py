"""PII detectors: precision and recall on a labelled set with hard negatives."""

from __future__ import annotations

import pytest

from tuner_tui.data.pii import find_pii, luhn_ok, mask_text, redact

POSITIVES = {
    "email": [
        "jane.doe@example.com",
        "j.smith+news@mail.co.uk",
        "ops-team@my-company.io",
        "x_y@sub.domain.org",
        "Anna.Berg@firma.de",
        "support@shop.example",
        "a1@b2.info",
        "first.last@university.edu",
        "hello@startup.ai",
        "no-reply@service.net",
    ],
    "phone": [
        "+1 415-555-2671",
        "(212) 555-0188",
        "415.555.2671",
        "+44 20 7946 0958",
        "+49 30 901820",
        "020 7946 0958",
        "+33 1 42 68 53 00",
        "650-253-0000",
        "+14155552671",
        "1-800-555-0199",
    ],
    "credit_card": [
        "4111 1111 1111 1111",
        "5500-0000-0000-0004",
        "340000000000009",
        "6011000000000004",
        "4012888888881881",
        "378282246310005",
        "5105 1051 0510 5100",
        "4242424242424242",
        "3530111333300000",
        "2223003122003222",
    ],
    "ip_address": [
        "192.168.1.20",
        "10.0.0.1",
        "8.8.8.8",
        "172.16.254.3",
        "203.0.113.7",
        "255.255.255.0",
        "127.0.0.1",
        "100.64.12.9",
        "198.51.100.42",
        "1.1.1.1",
    ],
}
# Hard negatives: look like PII to a naive regex.
NEGATIVES = [
    "version 1.2.3.4.5 was released",
    "see v1.2.3.4 notes",
    "order 1234567890123456 shipped",
    "order id 4111111111111112",
    "on 2023-01-15 we met",
    "at 12:30:45 sharp",
    "ISBN 978-3-16-148410-0",
    "user@localhost is not routable",
    "the npm package left-pad@1.3.0",
    "score 999.999.999.999",
    "ticket #5551234",
    "ratio 3.14159",
    "invoice 2024-000123",
    "room 101, floor 3",
    "pi=3.1415926535",
    "serial 00000000000000000",
    "tracking 1Z999AA10123456784",
    "dates 01/02/2024 and 2024/02/01",
    "call extension 4455",
    "@handle mentioned",
    "ip 300.1.2.3 is invalid",
    "file_name_with_underscores_and_more_words_here.txt",
    "sha 3f786850e387550fdab836ed7e6dc881de23001b",
    "build 20240115.1",
    "PO 4000-1234-5678",
    "1234 5678 9012 3456 is not a real card",
]
TEMPLATES = ["Contact: {} today.", "{}", "Here it is ({}), thanks", "Value={}; end"]


@pytest.mark.parametrize("kind", sorted(POSITIVES))
def test_precision_and_recall_at_least_95_percent(kind: str) -> None:
    true_pos = false_neg = false_pos = 0
    for value in POSITIVES[kind]:
        for template in TEMPLATES:
            text = template.format(value)
            found = [h for h in find_pii(text) if h.kind == kind]
            if any(h.text == value for h in found):
                true_pos += 1
            else:
                false_neg += 1
            false_pos += sum(1 for h in found if h.text != value)
    for text in NEGATIVES:
        false_pos += sum(1 for h in find_pii(text) if h.kind == kind)
    # other kinds' positives are negatives for this kind
    for other, values in POSITIVES.items():
        if other != kind:
            false_pos += sum(1 for v in values for h in find_pii(f"x {v} y") if h.kind == kind)
    precision = true_pos / max(true_pos + false_pos, 1)
    recall = true_pos / (true_pos + false_neg)
    assert precision >= 0.95, (kind, precision)
    assert recall >= 0.95, (kind, recall)


def test_other_detectors_and_validation() -> None:
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    kinds = {h.kind for h in find_pii("IBAN GB82 WEST 1234 5698 7654 32, SSN 536-22-1234")}
    assert kinds == {"iban", "us_ssn"}
    assert not find_pii("IBAN GB82 WEST 1234 5698 7654 33 and SSN 666-12-3456")  # bad checksum, bad area
    keys = "sk-proj-abcdefghijklmnopqrstuvwxyz123456 AKIAIOSFODNN7EXAMPLE ghp_" + "a1B2" * 9
    assert [h.kind for h in find_pii(keys)] == ["api_key"] * 3
    assert not find_pii("commit 3f786850e387550fdab836ed7e6dc881de23001b")


def test_redact_uses_typed_placeholders_and_mask_hides_values() -> None:
    text, hits = redact("Mail jane@example.com or call (212) 555-0188 from 10.0.0.1")
    assert text == "Mail <EMAIL> or call <PHONE> from <IP_ADDRESS>"
    assert len(hits) == 3
    masked = mask_text("card 4111 1111 1111 1111")
    assert "4111 1111" not in masked and masked.endswith("11")


def test_scan_finds_exactly_what_find_pii_finds() -> None:
    import pyarrow as pa

    from tuner_tui.data.pii import scan

    texts = [template.format(v) for values in POSITIVES.values() for v in values for template in TEMPLATES]
    texts += NEGATIVES + ["", "plain words only", "tel ٤١٥-٥٥٥-٢٦٧١ and mail a@b.co", "x" * 40 + "@y.io"]
    texts += [" ".join(texts[i : i + 3]) for i in range(0, len(texts) - 3, 5)]  # several kinds per row
    expected = [(i, t, find_pii(t)) for i, t in enumerate(texts) if find_pii(t)]
    assert list(scan(pa.array(texts))) == expected
    only = [(i, t, find_pii(t, ["phone", "email"])) for i, t in enumerate(texts)]
    assert list(scan(pa.array(texts), ["phone", "email"])) == [x for x in only if x[2]]


# US numbers as people write them, placeholder-style ones included: (555) 123-4567 breaks the
# numbering plan's exchange rule (it starts with 1) but is exactly what a redaction must catch.
US_PHONES = [
    "(555) 123-4567",
    "(555) 123 4567",
    "(555)123-4567",
    "555-123-4567",
    "555.123.4567",
    "+1 555 123 4567",
    "+1 (555) 123-4567",
    "1-555-123-4567",
    "(123) 456-7890",
]
# What a US phone detector must leave alone: years, prices, dates, ids with other groupings.
US_PHONE_NEGATIVES = [
    "in 1999 and 2000",
    "from 2019-2020 to 2021",
    "costs $1,234.56 or $555.12",
    "price 1,555.1234",
    "on 2024-01-15 at 10:30",
    "dated 2024.01.15",
    "ISBN 978-316-1484-10",
    "555-123.4567 mixes separators",
    "counts 555 123 4567",
    "000-000-0000",
    "version 1.555.123.4567.8",
]


@pytest.mark.parametrize("value", US_PHONES)
def test_us_phone_formats_are_flagged(value: str) -> None:
    for template in TEMPLATES:
        assert [(h.kind, h.text) for h in find_pii(template.format(value))] == [("phone", value)]


@pytest.mark.parametrize("text", US_PHONE_NEGATIVES)
def test_years_prices_and_dates_are_not_phones(text: str) -> None:
    assert not find_pii(text)


def test_scan_prefilter_keeps_us_phones() -> None:
    import pyarrow as pa

    from tuner_tui.data.pii import scan

    texts = [f"call {v} now" for v in US_PHONES] + US_PHONE_NEGATIVES
    assert [row for row, _, _ in scan(pa.array(texts))] == list(range(len(US_PHONES)))
