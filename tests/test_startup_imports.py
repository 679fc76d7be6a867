"""What every arcgap run pays for before its first request: modules it never uses are not imported.

Each check runs a fresh interpreter (the test process has imported everything already)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def _imported_after(code: str) -> set[str]:
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(m for m, v in sys.modules.items() if v is not None)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_httpx_command_line_client_is_not_imported() -> None:
    """httpx imports its own CLI (click, rich, pygments: ~40 ms) whenever they are installed, as typer makes
    them; arcgap never runs it."""
    pytest.importorskip("rich")  # only then would httpx import it
    loaded = _imported_after("import arcgap.cli, arcgap.registry.client, httpx")
    assert "httpx" in loaded
    assert "httpx._main" not in loaded



def test_the_command_line_alone_imports_no_http_client() -> None:
    """``arcgap --help``, ``--version``, ``verify`` and ``inspect`` talk to no registry: loading the command line
    must not import httpx (the transport defaults its help shows live in arcgap.registry.defaults)."""
    loaded = _imported_after("import arcgap.cli")
    assert "arcgap.cli.common" in loaded
    assert "httpx" not in loaded
