"""Import transformers once, from whichever worker thread needs it first.

While one thread runs transformers' `__init__` (which ends by installing a lazy module), a second
thread importing from it gets "cannot import name 'AutoConfig' from 'transformers'". Every wizard
worker that needs transformers (the Model step's describe and estimate, the Data step's tokenizer)
calls `ensure_ml_imported` first, so one imports it while the others wait, and the UI thread never
does. Nothing here is imported at module scope.
"""

from __future__ import annotations

import importlib
import threading

ML_NAMES = (
    "AutoConfig",
    "AutoModel",
    "AutoModelForCausalLM",
    "AutoModelForSequenceClassification",
    "AutoTokenizer",
)
"""What the workers take from transformers: resolved (transformers imports them lazily) while
`ensure_ml_imported` holds its lock."""

_ml_lock = threading.Lock()
_ml_imported = False


def _import_ml() -> None:
    transformers = importlib.import_module("transformers")
    for name in ML_NAMES:
        getattr(transformers, name)


def ensure_ml_imported() -> None:
    """Import transformers in this (worker) thread unless another did; callers meanwhile wait.

    Raises:
        ImportError: transformers cannot be imported (the next call tries again).
    """
    global _ml_imported
    if _ml_imported:
        return
    with _ml_lock:
        if not _ml_imported:
            _import_ml()
            _ml_imported = True
