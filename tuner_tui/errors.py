"""User-facing errors: one clear paragraph, never a traceback.

Engine code raises a subclass of `TunerError` for anything the user can fix (a bad recipe, a missing
file, a run directory that is not one). The CLI prints `str(error)` and exits with `exit_code`.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_RUN_FAILED = 1
EXIT_INVALID_INPUT = 2
EXIT_OBJECTIVES_FAILED = 3


class TunerError(Exception):
    """An error the user can act on. The message names what, where, and the fix."""

    exit_code = EXIT_INVALID_INPUT


class RunFailedError(TunerError):
    """A run ended in the `failed` phase."""

    exit_code = EXIT_RUN_FAILED
