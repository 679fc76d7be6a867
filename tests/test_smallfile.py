"""arcgap.bundle.smallfile: --since, handoff and preflight read a small YAML file under the same limits."""

from __future__ import annotations

from pathlib import Path

import pytest

from arcgap.cli.hints import words
from arcgap.commands.handoff import load_release_input
from arcgap.errors import BundleFormatError, LocalIOError
from arcgap.transfer.since import load_base

# A few hundred bytes that plain yaml.safe_load would expand into 9**9 list items.
BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
)


@pytest.mark.parametrize("load", [load_release_input, load_base], ids=["handoff/preflight", "--since"])
def test_aliases_are_refused_before_anything_is_built(tmp_path: Path, load: object) -> None:
    path = tmp_path / "receipt.yaml"
    path.write_text(BOMB)
    with pytest.raises(BundleFormatError, match="refused"):
        load(path)  # type: ignore[operator]


@pytest.mark.parametrize(("load", "prefix"), [(load_release_input, ""), (load_base, "--since ")])
def test_a_missing_file_is_named_as_the_command_gave_it(tmp_path: Path, load: object, prefix: str) -> None:
    with pytest.raises(LocalIOError) as caught:
        load(tmp_path / "nope")  # type: ignore[operator]
    assert words(caught.value.message) == f"{prefix}{tmp_path}/nope: no such file"
