"""A path given on the command line that may be a bundle or a small YAML file (receipt, sidecar, image list):
which one it is, and the small file's bytes and YAML read under the bundle limits. ``--since`` and
``handoff``/``preflight`` share it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from arcgap.bundle import limits
from arcgap.bundle.parts import SIDECAR_SUFFIX, split_part_name
from arcgap.bundle.reader import ZSTD_MAGIC
from arcgap.errors import BundleFormatError, LocalIOError
from arcgap.util import safeyaml
from arcgap.util.regularfile import open_regular


@dataclass(frozen=True)
class Wording:
    """How the errors name the path: ``--since PATH`` or plain ``PATH``, and what it may be."""

    hint: str
    kinds: str  # "a bundle, sidecar or receipt"
    option: str = ""  # "--since": prefixes the path, and the YAML errors say the file was given to it


@dataclass(frozen=True)
class SmallFile:
    text: bytes
    doc: Any


def read_small_file(path: Path, wording: Wording) -> SmallFile | None:
    """None when ``path`` starts a bundle (zstd, or a numbered part): open it with ``open_bundle``. Otherwise
    its bytes and its YAML document, refused beyond the receipt limits (size, nodes, depth, aliases)."""
    named = f"{wording.option} {path}" if wording.option else str(path)
    try:
        with open_regular(path) as fh:  # a FIFO would block forever
            head = fh.read(4)
            if head == ZSTD_MAGIC or (split_part_name(path.name) and not path.name.endswith(SIDECAR_SUFFIX)):
                return None
            text = head + fh.read(limits.MAX_RECEIPT_BYTES)
    except FileNotFoundError:
        raise LocalIOError(f"{named}: no such file", hint=wording.hint) from None
    except IsADirectoryError:
        raise LocalIOError(f"{named} is a directory", hint=wording.hint) from None
    except OSError as exc:
        raise LocalIOError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(text) > limits.MAX_RECEIPT_BYTES:
        raise BundleFormatError(f"{named}: not {wording.kinds} (too large for YAML)", hint=wording.hint)
    given = f" (given to {wording.option})" if wording.option else ""
    try:
        doc = safeyaml.load(text, max_bytes=limits.MAX_RECEIPT_BYTES, max_nodes=limits.MAX_YAML_NODES,
                            max_depth=limits.MAX_YAML_DEPTH)
    except safeyaml.YamlRefused as exc:
        raise BundleFormatError(f"{path}: refused: {exc.why}{given}", hint=wording.hint) from None
    except (yaml.YAMLError, RecursionError, ValueError) as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        what = f" (given to {wording.option}: {wording.kinds})" if wording.option else ""
        raise BundleFormatError(f"{where}: not valid YAML{what}", hint=wording.hint) from None
    return SmallFile(text, doc)
