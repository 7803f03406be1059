"""The `tuner` subcommands of this stage, registered on the app by `tuner_tui.cli`.

Import-light like cli.py: typer and rich at module scope, the engine inside each command.
"""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this stage's commands to `app`."""
