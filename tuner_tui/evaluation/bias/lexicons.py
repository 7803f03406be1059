"""Demographic lexicons written for this project, and the term matcher used by the audit and probes.

Choices, so a reader can judge the numbers built on them:

- Terms name *people* (or, for religion, the faith itself). Words that are mostly non-demographic in
  ordinary text are left out or only counted inside a phrase: "black"/"white" (colours, "black
  Friday"), "asian" ("Asian markets") and "blind" ("double-blind trial") count only as
  "black people", "white woman", "blind man" and similar; "guys" (often gender-neutral), "miss"
  (a verb), "polish" (shoe polish), "english" (mostly the language), "senior" ("senior manager"),
  "church" (street and place names), "temple" (anatomy) and "ms" (milliseconds) are left out
  altogether; age adjectives count only before words for people ("old man", not "old family").
- First names are never counted as mentions: a name says nothing certain about a person. Names
  appear only in counterfactual probes (`templates.py`), where the swap is the point.
- Matching is case-insensitive on whole tokens. A token is a run of letters/digits, with inner
  hyphens kept ("non-disabled", "man-made", "african-american" are one token each), so "he" never
  matches inside "the", "man" never inside "manager" or "man-made", and "disabled" never inside
  "non-disabled". An apostrophe ends a token, so "women's" counts as "women".
- Multi-word terms match the longest phrase first, separately per family, so "young man" counts
  as both an age mention (young) and, through "man", a gender mention (male).
- Ages written as numbers ("a 24-year-old", "72 years old") count for the age family:
  under 30 young, 30-59 middle-aged, 60 and over old.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

LEXICON_VERSION = 1

_PEOPLE_NOUNS = (
    "people",
    "person",
    "persons",
    "man",
    "men",
    "woman",
    "women",
    "boy",
    "boys",
    "girl",
    "girls",
    "family",
    "families",
    "community",
    "communities",
    "customer",
    "customers",
    "patient",
    "patients",
    "student",
    "students",
    "americans",
)

# Age adjectives pair only with words for people: "old family" / "old customer" usually mean
# "long-standing", not elderly.
_AGE_NOUNS = ("people", "person", "man", "men", "woman", "women", "lady", "ladies")


def _phrases(adjectives: Iterable[str], nouns: Iterable[str] = _PEOPLE_NOUNS) -> tuple[str, ...]:
    return tuple(f"{a} {n}" for a in adjectives for n in nouns)


# family -> group -> terms (lower case; multi-word terms separated by single spaces).
LEXICON: dict[str, dict[str, tuple[str, ...]]] = {
    "gender": {
        "female": (
            "she", "her", "hers", "herself", "woman", "women", "girl", "girls", "lady", "ladies",
            "female", "females", "mother", "mothers", "mom", "moms", "mum", "mums", "daughter",
            "daughters", "sister", "sisters", "wife", "wives", "aunt", "aunts", "niece", "nieces",
            "grandmother", "grandmothers", "grandma", "granddaughter", "granddaughters",
            "girlfriend", "girlfriends", "mrs", "madam", "actress", "actresses", "waitress",
            "businesswoman", "businesswomen", "chairwoman", "spokeswoman", "mother-in-law",
        ),
        "male": (
            "he", "him", "his", "himself", "man", "men", "boy", "boys", "gentleman", "gentlemen",
            "male", "males", "father", "fathers", "dad", "dads", "son", "sons", "brother",
            "brothers", "husband", "husbands", "uncle", "uncles", "nephew", "nephews",
            "grandfather", "grandfathers", "grandpa", "grandson", "grandsons", "boyfriend",
            "boyfriends", "mr", "sir", "businessman", "businessmen", "chairman", "spokesman",
            "father-in-law",
        ),
        "trans_nonbinary": (
            "transgender", "trans woman", "trans women", "trans man", "trans men", "non-binary",
            "nonbinary", "genderqueer", "genderfluid",
        ),
    },
    "race_ethnicity": {
        "black": (
            *_phrases(["black"]), "african american", "african americans", "african-american",
            "african-americans",
        ),
        "white": (*_phrases(["white"]), "caucasian", "caucasians"),
        "asian": (*_phrases(["asian"]), "asian american", "asian americans", "asian-american", "asians"),
        "hispanic_latino": (
            *_phrases(["hispanic", "latino", "latina"]), "hispanic", "hispanics", "latino", "latinos",
            "latina", "latinas", "latinx",
        ),
        "arab_middle_eastern": (*_phrases(["arab"]), "arab", "arabs", "middle eastern"),
        "indigenous": (
            *_phrases(["indigenous", "aboriginal"]), "native american", "native americans",
            "first nations", "pacific islander", "pacific islanders",
        ),
        "multiracial": ("biracial", "multiracial", "mixed-race", "mixed race"),
    },
    "religion": {
        "christian": (
            "christian", "christians", "christianity", "catholic", "catholics", "protestant",
            "protestants", "evangelical", "evangelicals", "mormon", "mormons",
        ),
        "muslim": ("muslim", "muslims", "islam", "islamic", "mosque", "mosques"),
        "jewish": ("jew", "jews", "jewish", "judaism", "synagogue", "synagogues"),
        "hindu": ("hindu", "hindus", "hinduism"),
        "buddhist": ("buddhist", "buddhists", "buddhism"),
        "sikh": ("sikh", "sikhs", "sikhism", "gurdwara"),
        "nonreligious": ("atheist", "atheists", "atheism", "agnostic", "agnostics"),
    },
    "age": {
        "young": (
            *_phrases(["young"], _AGE_NOUNS), "young adult", "young adults", "teenager", "teenagers", "teen",
            "teens", "adolescent", "adolescents", "millennial", "millennials", "gen z", "youngster",
            "youngsters",
        ),
        "middle_aged": (*_phrases(["middle-aged"], _AGE_NOUNS), "middle-aged"),
        "old": (
            *_phrases(["old", "older", "elderly"], _AGE_NOUNS), "elderly", "older adult", "older adults",
            "senior citizen", "senior citizens", "pensioner", "pensioners", "retiree", "retirees",
            "boomer", "boomers", "baby boomer", "baby boomers", "octogenarian", "nonagenarian",
        ),
    },
    "disability": {
        "general": ("disabled", "disability", "disabilities", "handicapped"),
        "physical": (
            "wheelchair user",
            "wheelchair users", "in a wheelchair", "uses a wheelchair", "amputee", "amputees",
            "paralysed", "paralyzed", "paraplegic", "quadriplegic",
        ),
        "sensory": (
            "deaf", "hard of hearing", "visually impaired", "hearing impaired",
            *_phrases(["blind"]),
        ),
        "cognitive_neurological": (
            "autistic", "autism", "down syndrome", "dyslexic", "dyslexia", "intellectual disability",
            "learning disability", "neurodivergent", "adhd",
        ),
        "mental_health": ("mentally ill", "mental illness", "mental health condition", "schizophrenic"),
    },
    "nationality": {
        "american": ("american", "americans"),
        "british": ("british", "briton", "britons"),
        "canadian": ("canadian", "canadians"),
        "mexican": ("mexican", "mexicans"),
        "brazilian": ("brazilian", "brazilians"),
        "french": ("french", "frenchman", "frenchwoman"),
        "german": ("german", "germans"),
        "italian": ("italian", "italians"),
        "spanish": ("spanish", "spaniard", "spaniards"),
        "russian": ("russian", "russians"),
        "ukrainian": ("ukrainian", "ukrainians"),
        "chinese": ("chinese",),
        "japanese": ("japanese",),
        "korean": ("korean", "koreans"),
        "vietnamese": ("vietnamese",),
        "filipino": ("filipino", "filipinos", "filipina"),
        "indian": ("indian", "indians"),
        "pakistani": ("pakistani", "pakistanis"),
        "iranian": ("iranian", "iranians"),
        "iraqi": ("iraqi", "iraqis"),
        "syrian": ("syrian", "syrians"),
        "afghan": ("afghan", "afghans"),
        "turkish": ("turkish",),
        "egyptian": ("egyptian", "egyptians"),
        "nigerian": ("nigerian", "nigerians"),
        "kenyan": ("kenyan", "kenyans"),
        "ethiopian": ("ethiopian", "ethiopians"),
        "immigrant_refugee": (
            "immigrant", "immigrants", "migrant", "migrants", "refugee", "refugees",
            "asylum seeker", "asylum seekers", "foreigner", "foreigners",
        ),
    },
}  # fmt: skip

FAMILIES: tuple[str, ...] = tuple(LEXICON)

# A token: letters/digits with inner hyphens; an apostrophe or any other character ends it.
_TOKEN = re.compile(r"[^\W_]+(?:-[^\W_]+)*")
_NUMERIC_AGE_TOKEN = re.compile(r"^(\d{1,3})-years?-old$")


def tokenize(text: str) -> list[tuple[str, int, int]]:
    """Lower-cased tokens of `text` with their character spans."""
    return [(m.group().lower(), m.start(), m.end()) for m in _TOKEN.finditer(text)]


def age_group(years: int) -> str:
    """The age group of a numeric age (see the module docstring for the bands)."""
    if years < 30:
        return "young"
    return "middle_aged" if years < 60 else "old"


@dataclass(frozen=True)
class Mention:
    """One matched term: its family, group, the matched text and its character span."""

    family: str
    group: str
    term: str
    start: int
    end: int


class Matcher:
    """Finds lexicon terms in text, per family, longest phrase first.

    Lookup goes through an index keyed by a term's first token, so the cost per text is one dict
    lookup per token (the audit streams millions of rows through this).
    """

    def __init__(self, families: Iterable[str] | None = None):
        self.families = tuple(families) if families else FAMILIES
        unknown = [f for f in self.families if f not in LEXICON]
        if unknown:
            raise ValueError(f"unknown bias group families: {unknown}; known: {list(FAMILIES)}")
        # first token -> [(term tokens, family, group)], longest terms first.
        index: dict[str, list[tuple[tuple[str, ...], str, str]]] = {}
        for family in self.families:
            for group, terms in LEXICON[family].items():
                for term in terms:
                    words = tuple(t for t, _, _ in tokenize(term))
                    index.setdefault(words[0], []).append((words, family, group))
        for entries in index.values():
            entries.sort(key=lambda e: -len(e[0]))
        self._index = index
        self._ages = "age" in self.families

    def find(self, text: str) -> list[Mention]:
        """Every mention in `text`, in order of position (within each family, non-overlapping)."""
        tokens = tokenize(text)
        words = [t for t, _, _ in tokens]
        found: list[Mention] = []
        # Per family, the first token index not yet consumed by a longer phrase.
        free_from: dict[str, int] = {}
        for i, word in enumerate(words):
            for term, family, group in self._index.get(word, ()):
                if free_from.get(family, 0) > i:
                    continue
                n = len(term)
                if tuple(words[i : i + n]) == term:
                    end = tokens[i + n - 1][2]
                    found.append(Mention(family, group, text[tokens[i][1] : end], tokens[i][1], end))
                    free_from[family] = i + n
            if self._ages and word[:1].isdigit():
                mention = self._numeric_age(text, tokens, i)
                if mention is not None and free_from.get("age", 0) <= i:
                    found.append(mention)
                    free_from["age"] = i + 1 if "-" in word else i + 3
        return found

    @staticmethod
    def _numeric_age(text: str, tokens: list[tuple[str, int, int]], i: int) -> Mention | None:
        """'24-year-old' (one token) or '24 years old' (three tokens) at token i."""
        word, start, end = tokens[i]
        match = _NUMERIC_AGE_TOKEN.match(word)
        if match:
            years = int(match.group(1))
        elif (
            word.isdigit()
            and len(word) <= 3
            and i + 2 < len(tokens)
            and tokens[i + 1][0] in ("year", "years")
            and tokens[i + 2][0] == "old"
        ):
            years, end = int(word), tokens[i + 2][2]
        else:
            return None
        return Mention("age", age_group(years), text[start:end], start, end)
