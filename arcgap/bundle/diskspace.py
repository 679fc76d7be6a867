"""Free space before writing: an estimate of a bundle's size and a check of the output directory against it."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from arcgap.bundle import tarstream
from arcgap.bundle.format import TableOfContents
from arcgap.errors import LocalIOError, option
from arcgap.util.progress import human_bytes

# zstd never expands incompressible data by more than 3 bytes per 128 KiB block (RFC 8878 §3.1.1.2), plus
# frame headers; the margin also covers the sidecar and the layout members.
_MARGIN_BYTES = 64 * 1024
_YAML_BYTES_PER_BLOB = 256  # arcgap.yaml: one entry per blob and per image, each well under this
_YAML_BYTES_PER_IMAGE = 1024


def estimate_bundle_bytes(toc: TableOfContents) -> int:
    """An upper estimate of the compressed bundle: the tar it compresses (sum of the blob sizes plus headers).

    Layers are already compressed, so zstd barely shrinks them; uncompressed layers shrink, which only makes
    the estimate generous.
    """
    blobs = toc.blobs
    tar = sum(b.size + (-b.size % tarstream.BLOCK) for b in blobs)
    tar += _YAML_BYTES_PER_BLOB * len(blobs) + _YAML_BYTES_PER_IMAGE * len(toc.images)
    tar += (3 + len(blobs)) * 2 * tarstream.BLOCK + len(tarstream.END_OF_ARCHIVE)  # headers, padding of small members
    return tar + tar // 32768 + _MARGIN_BYTES


def free_bytes(directory: Path, *, usage: Callable[[Path], Any] | None = None) -> tuple[Path, int]:
    """Free bytes for an unprivileged writer in ``directory`` (or its nearest existing parent), as ``usage``
    (default ``shutil.disk_usage``, looked up at the call) reports them."""
    probe = directory.absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe, (usage or shutil.disk_usage)(probe).free


def check_free_space(
    directory: Path, needed_bytes: int, *, usage: Callable[[Path], Any] | None = None,
) -> None:
    """Raise LocalIOError when ``directory`` cannot hold ``needed_bytes``."""
    try:
        where, free = free_bytes(directory, usage=usage)
    except OSError:
        return  # cannot tell (odd filesystem): writing will report a full disk precisely
    if free < needed_bytes:
        raise LocalIOError(
            f"not enough free space in {where}: the bundle needs about {human_bytes(needed_bytes)} "
            f"({needed_bytes} bytes), {human_bytes(free)} ({free} bytes) available",
            hint=f"free space or choose another {option('output')} location; {option('no_space_check')} writes anyway",
        )
