"""``--help`` of every command is byte for byte what tests/help/ holds: the options refactor keeps the surface.

A deliberate change to a command's options or texts regenerates the files:
``ARCGAP_UPDATE_HELP=1 .venv/bin/python -m pytest -q tests/test_help_snapshot.py`` (then review the diff).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from arcgap.cli import run

SNAPSHOTS = Path(__file__).resolve().parent / "help"
# The commands whose help is pinned (a new command adds its own file when its author wants it pinned).
PINNED = (
    "export", "import", "mirror", "verify", "inspect", "keygen", "cache info", "cache clear",
    "releases", "manifests new", "wheelhouse", "login", "logout", "handoff", "preflight",
)  # fmt: skip


@pytest.mark.parametrize("command", PINNED)
def test_help_is_unchanged(command: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")  # help wraps to the terminal: pin the width
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert run([*command.split(), "--help"]) == 0
    out = capsys.readouterr().out
    snapshot = SNAPSHOTS / f"{command.replace(' ', '_')}.txt"
    if os.environ.get("ARCGAP_UPDATE_HELP"):
        snapshot.write_text(out)
    assert out == snapshot.read_text()


def _commands(group: object, prefix: str = "") -> list[str]:
    """Every leaf command of the click group, as ``PINNED`` spells it (``cache info``)."""
    names: list[str] = []
    for name, sub in getattr(group, "commands", {}).items():
        names.extend(_commands(sub, f"{prefix}{name} ") if hasattr(sub, "commands") else [f"{prefix}{name}"])
    return names


def test_every_command_is_pinned() -> None:
    """A command without a snapshot is a surface nobody pins: each one the app registers is in ``PINNED``."""
    import typer.main

    from arcgap.cli import app

    assert sorted(_commands(typer.main.get_command(app))) == sorted(PINNED)
