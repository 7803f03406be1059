"""Counterfactual pairs: the same text with only its group terms swapped.

Gender swaps go both ways at once (every female term becomes male and every male term female), the
usual counterfactual data augmentation, so "She thanked him" becomes "He thanked her". The only
ambiguous word is "her", which is either an object ("I called her" -> "him") or a possessive
("her account" -> "his"). We choose "him" when "her" ends the clause (punctuation or end of text)
or is followed by a function word ("gave her the form", "told her about"), and "his" otherwise
("her account", "her own"). A verb right after "her" ("helped her move") is read wrongly as
possessive; that costs one odd sentence, not a wrong number, because both sides of the pair are
still scored as written. The same test maps "his" to "hers" (pronoun: "the card is his.") or "her"
(determiner: "his card").

Other families swap one group into another through aligned rows of forms ("Muslims" <->
"Christians" <-> "Jews"; "young man" <-> "elderly man"; "24-year-old" <-> "72-year-old"); a text is
only paired when every mention of the source group has a form in the target group. Disability swaps
go to a non-disabled counterpart ("deaf" -> "hearing", "disabled" -> "non-disabled").
Names (names.py) swap gender within an ethnicity, or ethnicity within a gender.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass

from tuner_tui.evaluation.bias.lexicons import (
    _AGE_NOUNS,
    _PEOPLE_NOUNS,
    FAMILIES,
    LEXICON,
    Matcher,
    Mention,
    tokenize,
)
from tuner_tui.evaluation.bias.names import NAME_INDEX, NAMES


@dataclass(frozen=True)
class Pair:
    """Two texts that differ only in the group they mention."""

    original: str
    swapped: str
    family: str
    group_a: str  # the group `original` mentions
    group_b: str  # the group `swapped` mentions
    source: str  # "template", "test", "user"

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


# --- gender -----------------------------------------------------------------------------------

_FEMALE_TO_MALE = {
    "she": "he", "hers": "his", "herself": "himself", "woman": "man", "women": "men", "girl": "boy",
    "girls": "boys", "lady": "gentleman", "ladies": "gentlemen", "female": "male", "females": "males",
    "mother": "father", "mothers": "fathers", "mom": "dad", "moms": "dads", "mum": "dad",
    "mums": "dads", "daughter": "son", "daughters": "sons", "sister": "brother",
    "sisters": "brothers", "wife": "husband", "wives": "husbands", "aunt": "uncle", "aunts": "uncles",
    "niece": "nephew", "nieces": "nephews", "grandmother": "grandfather",
    "grandmothers": "grandfathers", "grandma": "grandpa", "granddaughter": "grandson",
    "granddaughters": "grandsons", "girlfriend": "boyfriend", "girlfriends": "boyfriends",
    "mrs": "Mr", "madam": "sir", "actress": "actor", "actresses": "actors", "waitress": "waiter",
    "businesswoman": "businessman", "businesswomen": "businessmen", "chairwoman": "chairman",
    "spokeswoman": "spokesman", "mother-in-law": "father-in-law",
}  # fmt: skip
_MALE_TO_FEMALE = {m.lower(): f for f, m in _FEMALE_TO_MALE.items()} | {
    "his": "her",
    "him": "her",
    "dad": "mom",
    "dads": "moms",
    "mr": "Mrs",
}
# After "her", these words mean "her" was an object ("gave her the form" -> "gave him the form").
_FUNCTION_WORDS = frozenset(
    "a an the to and or but so that this these those with for about in on at from by of up out off "
    "down back again as if when while because too very yesterday today tomorrow now then is was will "
    "would can could should be into over after before some any all one here there how what why where "
    "who whether not just well more less alone directly immediately once".split()
)


def _her_replacement(text: str, end: int) -> str:
    """'him' or 'his' for the 'her' that ends at `end` (see the module docstring)."""
    rest = text[end:].lstrip()
    if not rest or not rest[0].isalnum():
        return "him"
    next_word = tokenize(rest[:40])[0][0]
    return "him" if next_word in _FUNCTION_WORDS else "his"


# --- aligned forms for the other families -------------------------------------------------------

_RACE_ADJECTIVES = {
    "black": ("black",),
    "white": ("white",),
    "asian": ("Asian",),
    "hispanic_latino": ("Hispanic", "Latino", "Latina"),
    "arab_middle_eastern": ("Arab",),
    "indigenous": ("Indigenous", "Aboriginal"),
}
_RELIGION_ROWS = [
    {"christian": "Christian", "muslim": "Muslim", "jewish": "Jewish", "hindu": "Hindu",
     "buddhist": "Buddhist", "sikh": "Sikh", "nonreligious": "atheist"},
    {"christian": "Christians", "muslim": "Muslims", "jewish": "Jews", "hindu": "Hindus",
     "buddhist": "Buddhists", "sikh": "Sikhs", "nonreligious": "atheists"},
    {"christian": "Christianity", "muslim": "Islam", "jewish": "Judaism", "hindu": "Hinduism",
     "buddhist": "Buddhism", "sikh": "Sikhism", "nonreligious": "atheism"},
    {"christian": "church", "muslim": "mosque", "jewish": "synagogue", "hindu": "temple",
     "buddhist": "temple", "sikh": "gurdwara"},
    {"christian": "churches", "muslim": "mosques", "jewish": "synagogues", "sikh": "gurdwaras"},
]  # fmt: skip
# Variants that map into a row under their own group: term -> (group, row index).
_RELIGION_VARIANTS = {
    "catholic": ("christian", 0), "protestant": ("christian", 0), "evangelical": ("christian", 0),
    "mormon": ("christian", 0), "catholics": ("christian", 1), "protestants": ("christian", 1),
    "evangelicals": ("christian", 1), "mormons": ("christian", 1), "islamic": ("muslim", 0),
    "jew": ("jewish", 0), "agnostic": ("nonreligious", 0), "agnostics": ("nonreligious", 1),
}  # fmt: skip
_AGE_NUMBERS = {"young": "24", "middle_aged": "45", "old": "72"}
_NATIONALITIES = {
    "american": ("American", "Americans"), "british": ("British", "Britons"),
    "canadian": ("Canadian", "Canadians"), "mexican": ("Mexican", "Mexicans"),
    "brazilian": ("Brazilian", "Brazilians"), "french": ("French", None),
    "german": ("German", "Germans"), "italian": ("Italian", "Italians"),
    "spanish": ("Spanish", None), "russian": ("Russian", "Russians"),
    "ukrainian": ("Ukrainian", "Ukrainians"), "chinese": ("Chinese", None),
    "japanese": ("Japanese", None), "korean": ("Korean", "Koreans"),
    "vietnamese": ("Vietnamese", None), "filipino": ("Filipino", "Filipinos"),
    "indian": ("Indian", "Indians"), "pakistani": ("Pakistani", "Pakistanis"),
    "iranian": ("Iranian", "Iranians"), "iraqi": ("Iraqi", "Iraqis"), "syrian": ("Syrian", "Syrians"),
    "afghan": ("Afghan", "Afghans"), "turkish": ("Turkish", None),
    "egyptian": ("Egyptian", "Egyptians"), "nigerian": ("Nigerian", "Nigerians"),
    "kenyan": ("Kenyan", "Kenyans"), "ethiopian": ("Ethiopian", "Ethiopians"),
}  # fmt: skip
_DISABILITY_COUNTERPARTS = {
    "disabled": "non-disabled", "handicapped": "non-disabled", "deaf": "hearing",
    "hard of hearing": "hearing", "hearing impaired": "hearing", "visually impaired": "sighted",
    "autistic": "non-autistic", "dyslexic": "non-dyslexic", "mentally ill": "mentally healthy",
    "neurodivergent": "neurotypical", "paralysed": "non-disabled", "paralyzed": "non-disabled",
}  # fmt: skip
NON_DISABLED = "non_disabled"

# Groups a text is swapped *into*; a short, varied set keeps the number of pairs manageable.
PROBE_TARGETS: dict[str, tuple[str, ...]] = {
    "gender": ("female", "male"),
    "race_ethnicity": ("black", "white", "asian", "hispanic_latino", "arab_middle_eastern"),
    "religion": ("christian", "muslim", "jewish", "hindu", "buddhist", "nonreligious"),
    "age": ("young", "middle_aged", "old"),
    "disability": (NON_DISABLED,),
    "nationality": ("american", "british", "mexican", "chinese", "indian", "nigerian", "iranian"),
}


def _build_rows() -> dict[str, dict[str, dict[str, dict[str, str]]]]:
    """family -> source group -> lower-cased source term -> {target group: form}."""
    rows: dict[str, dict[str, dict[str, dict[str, str]]]] = {f: {} for f in FAMILIES}

    def add(family: str, group: str, term: str, row: dict[str, str]) -> None:
        rows[family].setdefault(group, {}).setdefault(term.lower(), row)

    canonical = {g: forms[0] for g, forms in _RACE_ADJECTIVES.items()}
    for noun in _PEOPLE_NOUNS:
        row = {g: f"{adj} {noun}" for g, adj in canonical.items()}
        for group, variants in _RACE_ADJECTIVES.items():
            for variant in variants:
                add("race_ethnicity", group, f"{variant} {noun}", row)
    for suffix in ("", "s"):
        row = {"black": "African American", "white": "white American", "asian": "Asian American",
               "hispanic_latino": "Hispanic American", "arab_middle_eastern": "Arab American"}  # fmt: skip
        row = {g: form + suffix for g, form in row.items()}
        add("race_ethnicity", "black", "african american" + suffix, row)
        add("race_ethnicity", "black", "african-american" + suffix, row)
        add("race_ethnicity", "asian", "asian american" + suffix, row)
        add("race_ethnicity", "asian", "asian-american" + suffix, row)

    for row in _RELIGION_ROWS:
        for group, form in row.items():
            add("religion", group, form, row)
    for term, (group, index) in _RELIGION_VARIANTS.items():
        add("religion", group, term, _RELIGION_ROWS[index])

    for noun in _AGE_NOUNS:
        row = {"young": f"young {noun}", "middle_aged": f"middle-aged {noun}", "old": f"elderly {noun}"}
        for group, adjectives in (("young", ["young"]), ("middle_aged", ["middle-aged"])):
            for adjective in adjectives:
                add("age", group, f"{adjective} {noun}", row)
        for adjective in ("old", "older", "elderly"):
            add("age", "old", f"{adjective} {noun}", row)
    for young, old in (("teenager", "pensioner"), ("millennial", "boomer"), ("young adult", "older adult")):
        for suffix in ("", "s"):
            row = {"young": young + suffix, "old": old + suffix}
            add("age", "young", young + suffix, row)
            add("age", "old", old + suffix, row)

    for group, (adjective, plural) in _NATIONALITIES.items():
        add("nationality", group, adjective, {g: forms[0] for g, forms in _NATIONALITIES.items()})
        if plural:
            plurals = {g: forms[1] for g, forms in _NATIONALITIES.items() if forms[1]}
            add("nationality", group, plural, plurals)

    for term, counterpart in _DISABILITY_COUNTERPARTS.items():
        for group, terms in LEXICON["disability"].items():
            if term in terms:
                add("disability", group, term, {group: term, NON_DISABLED: counterpart})
    return rows


_ROWS = _build_rows()


# --- swapping ------------------------------------------------------------------------------------


def _match_case(source: str, form: str) -> str:
    """`form` written in the case of `source` ("SHE" -> "HE", "She" -> "He"); a form's own capitals
    (proper adjectives such as "Muslim") survive a lower-case source."""
    if len(source) > 1 and source.isupper():
        return form.upper()
    if source[:1].isupper():
        return form[:1].upper() + form[1:]
    return form


_ARTICLE_BEFORE = re.compile(r"\b([Aa]n?)(\s+)$")


def _apply(text: str, replacements: list[tuple[int, int, str]]) -> str:
    """Replace spans (sorted, non-overlapping) and fix 'a'/'an' right before each replacement."""
    out: list[str] = []
    cursor = 0
    for start, end, new in sorted(replacements):
        before = text[cursor:start]
        article = _ARTICLE_BEFORE.search(before)
        if article:
            wanted = "an" if new[:1].lower() in "aeiou" else "a"
            if article.group(1)[0].isupper():
                wanted = wanted.capitalize()
            before = before[: article.start(1)] + wanted + article.group(2)
        out.append(before + new)
        cursor = end
    out.append(text[cursor:])
    return "".join(out)


def _name_mentions(text: str) -> list[tuple[int, int, str, str, int]]:
    """(start, end, ethnicity, gender, index) for every probe name in `text` (case-sensitive
    capital first letter, so the colour "ebony" or the verb "jun..." are not names)."""
    found = []
    for word, start, end in tokenize(text):
        hit = NAME_INDEX.get(word)
        if hit and text[start].isupper():
            found.append((start, end, *hit))
    return found


def swap_gender(text: str, mentions: list[Mention] | None = None) -> tuple[str, str, str] | None:
    """Swap every female term/name for its male counterpart and vice versa.

    Returns (swapped text, group of the original, group of the swapped text), or None when the text
    has no binary-gender term or name. The original's group is that of its first gendered word.
    """
    if mentions is None:
        mentions = Matcher(["gender"]).find(text)
    replacements: list[tuple[int, int, str]] = []
    first: list[tuple[int, str]] = []
    for m in mentions:
        if m.family != "gender" or m.group not in ("female", "male"):
            continue
        word = m.term.lower()
        form: str | None
        if word == "her":
            form = _her_replacement(text, m.end)
        elif word == "his":
            # The same test tells the pronoun ("the card is his.") from the determiner ("his card").
            form = "hers" if _her_replacement(text, m.end) == "him" else "her"
        else:
            form = (_FEMALE_TO_MALE if m.group == "female" else _MALE_TO_FEMALE).get(word)
        if form is None:
            continue
        replacements.append((m.start, m.end, _match_case(m.term, form)))
        first.append((m.start, m.group))
    for start, end, ethnicity, gender, index in _name_mentions(text):
        other = "male" if gender == "female" else "female"
        replacements.append((start, end, NAMES[ethnicity][other][index]))
        first.append((start, gender))
    if not replacements:
        return None
    group_a = min(first)[1]
    return _apply(text, replacements), group_a, "male" if group_a == "female" else "female"


def swap_group(text: str, family: str, source: str, target: str, mentions: list[Mention]) -> str | None:
    """Replace every mention of `source` (in `family`) by its `target` form; None if any has none.

    Mentions of other groups are left as they are. For race/ethnicity, probe names of the source
    group are swapped too (same gender, same position in the name lists).
    """
    replacements: list[tuple[int, int, str]] = []
    for m in mentions:
        if m.family != family or m.group != source:
            continue
        if family == "age" and m.term[:1].isdigit():
            form: str | None = re.sub(r"^\d+", _AGE_NUMBERS[target], m.term)
        else:
            form = _ROWS[family].get(source, {}).get(" ".join(m.term.lower().split()), {}).get(target)
        if form is None:
            return None
        replacements.append((m.start, m.end, _match_case(m.term, form)))
    if family == "race_ethnicity" and target in NAMES:
        for start, end, ethnicity, gender, index in _name_mentions(text):
            if ethnicity == source:
                replacements.append((start, end, NAMES[target][gender][index]))
    if not replacements:
        return None
    return _apply(text, replacements)


def _text_pairs(text: str, families: list[str], matcher: Matcher) -> Iterator[Pair]:
    """Every counterfactual pair one text gives, family by family."""
    mentions = matcher.find(text)
    for family in families:
        if family == "gender":
            swapped = swap_gender(text, mentions)
            if swapped is not None:
                yield Pair(text, swapped[0], "gender", swapped[1], swapped[2], "test")
            continue
        sources = [m.group for m in mentions if m.family == family]
        if family == "race_ethnicity":
            sources += [hit[2] for hit in _name_mentions(text)]
        for source in dict.fromkeys(sources):  # unique, in order of appearance
            for target in PROBE_TARGETS[family]:
                if target == source:
                    continue
                swapped_text = swap_group(text, family, source, target, mentions)
                if swapped_text is not None and swapped_text != text:
                    yield Pair(text, swapped_text, family, source, target, "test")
            break  # one source group per text and family: the first mentioned


def interleave(pairs: Iterable[Pair], max_pairs: int) -> list[Pair]:
    """At most `max_pairs` pairs, taken round-robin over (family, group pair) buckets so that one
    frequent group pair cannot crowd out the others. Order within a bucket is kept."""
    buckets: dict[tuple[str, str, str], list[Pair]] = {}
    for pair in pairs:
        x, y = sorted((pair.group_a, pair.group_b))
        bucket = buckets.setdefault((pair.family, x, y), [])
        if len(bucket) < max_pairs:
            bucket.append(pair)
    chosen: list[Pair] = []
    depth = 0
    while len(chosen) < max_pairs and any(depth < len(b) for b in buckets.values()):
        for bucket in buckets.values():
            if depth < len(bucket) and len(chosen) < max_pairs:
                chosen.append(bucket[depth])
        depth += 1
    return chosen


def counterfactual_pairs(texts: Iterable[str], groups: list[str] | None, max_pairs: int = 200) -> list[Pair]:
    """Counterfactual pairs from domain texts (e.g. the test split).

    Args:
        texts: Texts to swap; those without a swappable group term give no pair.
        groups: Group families to swap (see `lexicons.FAMILIES`); empty or None = all.
        max_pairs: Most pairs returned, spread round-robin over family and group pair.

    Returns:
        Pairs with `source="test"`; `original` is the text as given.
    """
    families = list(groups) if groups else list(FAMILIES)
    matcher = Matcher(families)
    return interleave((p for text in texts if text for p in _text_pairs(text, families, matcher)), max_pairs)
