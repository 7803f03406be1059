"""First names used only in counterfactual probes, never in the data audit.

Written for this project. A name is a weak, culture-bound signal of gender and ethnicity: these
lists exist so that probes can ask "does the model treat 'Imani asked for a refund' differently
from 'Claire asked for a refund'?", which is how name-based bias shows up in practice. They do not
claim that anyone with a name belongs to a group.

Lists are aligned by position: the i-th female and i-th male name of every group form one row, so a
swap keeps everything else (gender when the ethnicity changes, ethnicity when the gender changes).
"""

from __future__ import annotations

# ethnicity group (the race_ethnicity family's group names) -> gender -> names, aligned by index.
NAMES: dict[str, dict[str, tuple[str, ...]]] = {
    "white": {"female": ("Claire", "Hannah", "Molly"), "male": ("Connor", "Luke", "Brett")},
    "black": {"female": ("Imani", "Aaliyah", "Ebony"), "male": ("DeShawn", "Jamal", "Tyrone")},
    "hispanic_latino": {
        "female": ("Lucia", "Ximena", "Guadalupe"),
        "male": ("Alejandro", "Santiago", "Joaquin"),
    },
    "asian": {"female": ("Mei", "Yuna", "Thao"), "male": ("Hiroshi", "Jun", "Minh")},
    "arab_middle_eastern": {"female": ("Fatima", "Layla", "Nour"), "male": ("Omar", "Khalid", "Youssef")},
}

# lower-cased name -> (ethnicity group, gender, index)
NAME_INDEX: dict[str, tuple[str, str, int]] = {
    name.lower(): (ethnicity, gender, i)
    for ethnicity, by_gender in NAMES.items()
    for gender, names in by_gender.items()
    for i, name in enumerate(names)
}
