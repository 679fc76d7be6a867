"""arcgap: carry container images across an air gap, digest for digest."""

import sys

__version__ = "0.1.0"

# httpx imports its own command-line client (``httpx._main``: click, rich, pygments) whenever those packages are
# installed, as typer installs them: about 40 ms of every arcgap start, for a CLI arcgap never runs. A None entry
# makes that import fail, and httpx then defines a stub ``httpx.main`` instead (its own fallback).
sys.modules.setdefault("httpx._main", None)  # type: ignore[assignment]
