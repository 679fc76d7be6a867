"""``export --since OLD``: which blobs the far side already holds, from an earlier bundle, its sidecar or a receipt.

Only tables of contents are read: a bundle's ``arcgap.yaml`` (never its blobs), a ``NAME.parts.yaml`` sidecar
(through the bundle it describes), or an import receipt. A base that was itself differential also counts the
blobs it relied on: the target held those too when it was imported.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from arcgap.bundle import limits
from arcgap.bundle.format import RELIABLE_KINDS, BaseBundle, BlobEntry
from arcgap.bundle.parts import SIDECAR_FORMAT, SIDECAR_SUFFIX, PartsIndex
from arcgap.bundle.reader import open_bundle
from arcgap.bundle.smallfile import Wording, read_small_file
from arcgap.errors import BundleFormatError, option
from arcgap.transfer.receipt import Receipt, bundle_label, is_receipt
from arcgap.util.safetext import safe

HINT = f"{option('since')} takes an earlier bundle (.tar.zst, a part, or NAME.parts.yaml) or an import receipt"
_WORDING = Wording(hint=HINT, kinds="a bundle, sidecar or receipt", option=option("since"))


def load_bases(paths: Sequence[Path]) -> tuple[BaseBundle, ...]:
    """One :class:`BaseBundle` per ``--since`` path, each listing every config and layer that side holds."""
    bases: list[BaseBundle] = []
    for path in paths:
        base = load_base(path)
        if all(b.identity != base.identity or b.via != base.via for b in bases):
            bases.append(base)
    return tuple(bases)


def load_base(path: Path) -> BaseBundle:
    small = read_small_file(path, _WORDING)
    if small is None:
        return base_from_bundle(path)
    text, doc = small.text, small.doc
    if is_receipt(doc):
        return base_from_receipt(Receipt.from_yaml(text, origin=str(path)), origin=str(path))
    if isinstance(doc, dict) and doc.get("format") == SIDECAR_FORMAT:
        return base_from_sidecar(path, PartsIndex.from_yaml(text, origin=str(path)))
    if path.name.endswith(SIDECAR_SUFFIX):
        PartsIndex.from_yaml(text, origin=str(path))  # names the line of a YAML error
    raise BundleFormatError(f"{option('since')} {path}: not a bundle, sidecar or receipt", hint=HINT)


def _held(blobs: Sequence[BlobEntry], relied: Sequence[BlobEntry] = ()) -> tuple[BlobEntry, ...]:
    kept = {b.digest: b for b in (*blobs, *relied) if b.kind in RELIABLE_KINDS}
    return tuple(kept.values())


def base_from_bundle(path: Path, *, name: str | None = None, via: str = "bundle") -> BaseBundle:
    """Read only the bundle's arcgap.yaml."""
    with open_bundle(path) as reader:
        toc = reader.toc
        identity = reader.identity
    return BaseBundle(name=name or bundle_label(path), identity=identity, via=via, created=toc.created,
                      blobs=_held(toc.blobs, toc.relied_on_blobs))


def base_from_sidecar(path: Path, index: PartsIndex) -> BaseBundle:
    """A sidecar names its bundle but lists no blobs: read the bundle's arcgap.yaml through it (from the first
    part or parts; :func:`open_bundle` checks the sidecar's identity against those bytes)."""
    return base_from_bundle(path, name=safe(index.bundle_name), via="sidecar")  # arcgap.yaml holds printable names


def base_from_receipt(receipt: Receipt, *, origin: str = "the receipt") -> BaseBundle:
    # These texts are copied into the new bundle's relies_on: a value its own reader would refuse is refused
    # here, so export never writes a bundle that its own verify refuses.
    for what, value in (("bundle.name", receipt.bundle_name), ("bundle.created", receipt.bundle_created)):
        if len(value) > limits.MAX_TEXT:
            raise BundleFormatError(f"{option('since')} {origin}: {what} is {len(value)} characters long (a bundle "
                                    f"holds at most {limits.MAX_TEXT})", hint=HINT)
    return BaseBundle(name=receipt.bundle_name, identity=receipt.bundle_identity, via="receipt",
                      created=receipt.bundle_created, blobs=_held(receipt.blobs))
