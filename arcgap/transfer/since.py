"""``export --since OLD``: which blobs the far side already holds, from an earlier bundle, its sidecar or a receipt.

Only tables of contents are read: a bundle's ``arcgap.yaml`` (never its blobs), a ``NAME.parts.yaml`` sidecar
(through the bundle it describes), or an import receipt. A base that was itself differential also counts the
blobs it relied on: the target held those too when it was imported.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import yaml

from arcgap.bundle import limits
from arcgap.bundle.format import RELIABLE_KINDS, BaseBundle, BlobEntry
from arcgap.bundle.parts import SIDECAR_FORMAT, SIDECAR_SUFFIX, PartsIndex, split_part_name
from arcgap.bundle.reader import ZSTD_MAGIC, open_bundle
from arcgap.errors import BundleFormatError, LocalIOError
from arcgap.transfer.receipt import MAX_RECEIPT_BYTES, Receipt, bundle_label, is_receipt
from arcgap.util import safeyaml

HINT = "--since takes an earlier bundle (.tar.zst, a part, or NAME.parts.yaml) or an import receipt"


def load_bases(paths: Sequence[Path]) -> tuple[BaseBundle, ...]:
    """One :class:`BaseBundle` per ``--since`` path, each listing every config and layer that side holds."""
    bases: list[BaseBundle] = []
    for path in paths:
        base = load_base(path)
        if all(b.identity != base.identity or b.via != base.via for b in bases):
            bases.append(base)
    return tuple(bases)


def load_base(path: Path) -> BaseBundle:
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
            if head == ZSTD_MAGIC or (split_part_name(path.name) and not path.name.endswith(SIDECAR_SUFFIX)):
                return base_from_bundle(path)
            text = head + fh.read(MAX_RECEIPT_BYTES)
    except FileNotFoundError:
        raise LocalIOError(f"--since {path}: no such file", hint=HINT) from None
    except IsADirectoryError:
        raise LocalIOError(f"--since {path} is a directory", hint=HINT) from None
    except OSError as exc:
        raise LocalIOError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(text) > MAX_RECEIPT_BYTES:
        raise BundleFormatError(f"--since {path}: not a bundle, sidecar or receipt (too large for YAML)", hint=HINT)
    try:
        doc = safeyaml.load(text, max_bytes=limits.MAX_RECEIPT_BYTES, max_nodes=limits.MAX_YAML_NODES,
                            max_depth=limits.MAX_YAML_DEPTH)
    except safeyaml.YamlRefused as exc:
        raise BundleFormatError(f"{path}: refused: {exc.why} (given to --since)", hint=HINT) from None
    except (yaml.YAMLError, RecursionError, ValueError) as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise BundleFormatError(f"{where}: not valid YAML (given to --since: a bundle, sidecar or receipt)",
                                hint=HINT) from None
    if is_receipt(doc):
        return base_from_receipt(Receipt.from_yaml(text, origin=str(path)))
    if isinstance(doc, dict) and doc.get("format") == SIDECAR_FORMAT:
        return base_from_sidecar(path, PartsIndex.from_yaml(text, origin=str(path)))
    if path.name.endswith(SIDECAR_SUFFIX):
        PartsIndex.from_yaml(text, origin=str(path))  # names the line of a YAML error
    raise BundleFormatError(f"--since {path}: not a bundle, sidecar or receipt", hint=HINT)


def _held(blobs: Sequence[BlobEntry], relied: Sequence[BlobEntry] = ()) -> tuple[BlobEntry, ...]:
    kept = {b.digest: b for b in (*blobs, *relied) if b.kind in RELIABLE_KINDS}
    return tuple(kept.values())


def base_from_bundle(path: Path, *, name: str | None = None, via: str = "bundle") -> BaseBundle:
    """Read only the bundle's arcgap.yaml."""
    with open_bundle(path) as reader:
        manifest = reader.manifest
        identity = reader.identity
    return BaseBundle(name=name or bundle_label(path), identity=identity, via=via, created=manifest.created,
                      blobs=_held(manifest.blobs, manifest.relied_on_blobs))


def base_from_sidecar(path: Path, index: PartsIndex) -> BaseBundle:
    """A sidecar names its bundle but lists no blobs: read the bundle's arcgap.yaml through it (from the first
    part or parts; :func:`open_bundle` checks the sidecar's identity against those bytes)."""
    return base_from_bundle(path, name=index.bundle_name, via="sidecar")


def base_from_receipt(receipt: Receipt) -> BaseBundle:
    return BaseBundle(name=receipt.bundle_name, identity=receipt.bundle_identity, via="receipt",
                      created=receipt.bundle_created, blobs=_held(receipt.blobs))
