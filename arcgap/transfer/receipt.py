"""The import receipt: what a target holds after ``arcgap import`` (YAML), usable as ``export --since``.

It names the bundle (sha256 of its arcgap.yaml), the target, each target reference with its digest, media
type, platforms and what import did for it (with the referrers placed for it, an optional list that older
readers skip), and every blob the target now holds for those images.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from arcgap import __version__
from arcgap.bundle import limits
from arcgap.bundle.format import BLOB_KINDS, BlobEntry
from arcgap.bundle.yamldoc import YamlDoc
from arcgap.errors import BundleFormatError, LocalIOError, option
from arcgap.oci.digest import Digest
from arcgap.util import safeyaml
from arcgap.util.safetext import safe

if TYPE_CHECKING:
    from arcgap.bundle.format import TableOfContents
    from arcgap.transfer.tally import ImportResult

RECEIPT_FORMAT = "arcgap-receipt"
RECEIPT_VERSION = 1
MAX_RECEIPT_BYTES = limits.MAX_RECEIPT_BYTES
ACTIONS = ("pushed", "mounted", "skipped")
# pushed: the tag was set, and at least one of the image's blobs was uploaded from the bundle;
# mounted: the tag was set, and none had to be uploaded: each was mounted from another repository of the
#          target or was already in the image's own repository;
# skipped: the tag already pointed at the digest, so it was not written again.


MAX_RECEIPT_REFERRERS = 10_000  # per image, like discovery's limit per run


@dataclass(frozen=True)
class ReceiptReferrer:
    """A referrer import placed for an image: by digest, findable from ``subject`` (or under ``tag``)."""

    subject: Digest
    digest: Digest
    media_type: str
    artifact_type: str
    tag: str | None = None  # legacy cosign: the tag it sits under (``sha256-<hex>.sig``)

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"subject": str(self.subject), "digest": str(self.digest),
                               "media_type": self.media_type, "artifact_type": self.artifact_type}
        if self.tag is not None:
            doc["tag"] = self.tag
        return doc


@dataclass(frozen=True)
class ReceiptImage:
    target: str  # registry/repository:tag
    source: str
    digest: Digest
    media_type: str
    platforms: tuple[tuple[str, Digest], ...]  # (os/arch[/variant], manifest digest)
    action: str  # one of ACTIONS
    uploaded_blobs: int
    mounted_blobs: int
    present_blobs: int
    referrers: tuple[ReceiptReferrer, ...] = ()  # placed after the image (subjects first); () in older receipts


@dataclass(frozen=True)
class Receipt:
    bundle_name: str
    bundle_identity: Digest  # sha256 of the bundle's arcgap.yaml bytes
    bundle_created: str
    bundle_format_version: int
    signed_by: Digest | None  # the fingerprint the bundle's signature names
    signature_checked: bool  # True when import checked that signature with --verify-key
    relied_on: tuple[str, ...]  # names of the bundles a differential bundle relied on
    target_registry: str
    target_repository: str
    images: tuple[ReceiptImage, ...]
    blobs: tuple[BlobEntry, ...]  # every blob the target holds for these images, manifests included
    imported: str  # RFC 3339 UTC, when the import finished
    arcgap_version: str = __version__
    referrers: dict[str, Any] | None = None  # how referrers were placed (arcgap.transfer.referrerplace.Placed)

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "format": RECEIPT_FORMAT,
            "format_version": RECEIPT_VERSION,
            "arcgap_version": self.arcgap_version,
            "imported": self.imported,
            "bundle": {
                "name": self.bundle_name,
                "identity": str(self.bundle_identity),
                "created": self.bundle_created,
                "format_version": self.bundle_format_version,
                "signed_by": str(self.signed_by) if self.signed_by else None,
                "signature_checked": self.signature_checked,
                "relied_on": list(self.relied_on),
            },
            "target": {"registry": self.target_registry, "repository": self.target_repository},
            "images": [
                {
                    "target": i.target,
                    "source": i.source,
                    "digest": str(i.digest),
                    "media_type": i.media_type,
                    "platforms": [{"platform": p, "digest": str(d)} for p, d in i.platforms],
                    "action": i.action,
                    "blobs": {"uploaded": i.uploaded_blobs, "mounted": i.mounted_blobs,
                              "present": i.present_blobs},
                    **({"referrers": [r.to_dict() for r in i.referrers]} if i.referrers else {}),
                }
                for i in self.images
            ],
            "blobs": [
                {"digest": str(b.digest), "size": b.size, "media_type": b.media_type, "kind": b.kind}
                for b in self.blobs
            ],
        }
        if self.referrers is not None:
            doc["referrers"] = self.referrers  # informative: written for the operator, not read back
        return doc

    def to_yaml(self) -> bytes:
        header = safeyaml.comment(f"arcgap import receipt: {len(self.images)} images of {self.bundle_name} into "
                                  f"{self.target_registry}/{self.target_repository}; "
                                  "'arcgap export --since THIS-FILE' leaves out the blobs listed here")
        body = safeyaml.dump(self.to_dict())
        return (header + body).encode()

    @classmethod
    def from_yaml(cls, data: bytes, *, origin: str) -> Receipt:
        doc = _DOC.load(data, origin)
        return _parse(doc, origin)


def build_receipt(
    *, bundle_name: str, identity: Digest, toc: TableOfContents, signed_by: Digest | None,
    signature_checked: bool, registry: str, repository: str, result: ImportResult, moment: datetime,
) -> Receipt:
    placed = result.referrers is not None and result.referrers.get("target_api") is not None
    refs: dict[str, list[ReceiptReferrer]] = {}
    for r in toc.referrers if placed else ():
        refs.setdefault(r.image, []).append(ReceiptReferrer(r.subject, r.digest, r.media_type, r.artifact_type,
                                                            r.tag))
    images = tuple(
        ReceiptImage(
            target=o.target.reference,
            source=o.target.entry.source,
            digest=o.target.entry.digest,
            media_type=o.target.entry.media_type,
            platforms=tuple((p.platform, p.digest) for p in o.target.entry.platforms),
            action=o.action,
            uploaded_blobs=o.uploaded_blobs,
            mounted_blobs=o.mounted_blobs,
            present_blobs=o.present_blobs,
            referrers=tuple(refs.get(o.target.entry.ref_name, ())),
        )
        for o in result.outcomes
    )
    return Receipt(
        bundle_name=bundle_name, bundle_identity=identity, bundle_created=toc.created,
        bundle_format_version=toc.format_version, signed_by=signed_by, signature_checked=signature_checked,
        relied_on=tuple(base.name for base in toc.relies_on), target_registry=registry,
        target_repository=repository, images=images, blobs=tuple(result.held_blobs), imported=rfc3339(moment),
        referrers=result.referrers,
    )


def is_receipt(doc: Any) -> bool:
    return isinstance(doc, dict) and doc.get("format") == RECEIPT_FORMAT


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


_BUNDLE_SUFFIXES = re.compile(r"(\.parts\.yaml|\.\d{3,})$")


def bundle_label(path: Path) -> str:
    """The bundle's name for receipts and messages: the file name, without a part number or sidecar suffix, with
    control and format characters escaped (a receipt holding them would be refused by its own reader)."""
    return safe(_BUNDLE_SUFFIXES.sub("", path.name) or path.name)


_MAX_STEM_BYTES = 160  # room for the prefix, the time, -N.yaml and mkstemp's temporary name within 255


def default_receipt_path(bundle: Path, moment: datetime) -> Path:
    """``./arcgap-receipt-<bundle name>-<UTC time>.yaml`` in the current directory (the bundle's medium may
    be read-only)."""
    stem = bundle_label(bundle)
    for suffix in (".tar.zst", ".zst", ".tar"):
        if stem.endswith(suffix) and len(stem) > len(suffix):
            stem = stem[: -len(suffix)]
            break
    if len(stem.encode("utf-8", "surrogateescape")) > _MAX_STEM_BYTES:  # a long bundle name still gets a receipt
        tail = hashlib.sha256(stem.encode("utf-8", "surrogateescape")).hexdigest()[:8]
        cut = stem.encode("utf-8", "surrogateescape")[:_MAX_STEM_BYTES - 9].decode("utf-8", "ignore")
        stem = f"{cut}-{tail}"
    base = f"arcgap-receipt-{stem}-{moment.strftime('%Y%m%dT%H%M%SZ')}"
    path, n = Path(f"{base}.yaml"), 1
    while path.exists():  # two imports in the same second keep both receipts
        n += 1
        path = Path(f"{base}-{n}.yaml")
    return path


def check_receipt_path(path: Path) -> None:
    """Refuse before importing, not after: an existing file or a directory arcgap cannot write to."""
    if path.exists():
        raise LocalIOError(f"receipt {path} already exists",
                           hint=f"choose another {option('receipt')} path or remove it")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise LocalIOError(f"cannot write the receipt {path}: no such directory", hint=f"check {option('receipt')}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise LocalIOError(f"cannot write the receipt {path}: permission denied",
                           hint=f"pass {option('receipt')} PATH in a directory you can write to")


def _numbered(path: Path) -> Iterator[Path]:
    """``path``, then ``stem-2.yaml``, ``stem-3.yaml``, …: the names a default receipt may take."""
    yield path
    for n in range(2, 10_000):
        yield path.with_name(f"{path.stem}-{n}{path.suffix}")


def write_receipt(path: Path, receipt: Receipt, *, renumber: bool = False) -> Path:
    """Write atomically and exclusively: a receipt is either complete or absent, and never replaces another
    file (two imports finishing in the same second keep both). With ``renumber`` (a default name), a taken
    name moves to the next number; otherwise it is an error. Returns the path written."""
    parent = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(receipt.to_yaml())
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o644)
            for candidate in _numbered(path) if renumber else (path,):
                try:
                    os.link(tmp, candidate)  # link(2) fails when the name exists: no receipt is overwritten
                except FileExistsError:
                    continue
                return candidate
            raise LocalIOError(f"the import finished, but the receipt {path} already exists",
                               hint=f"run the same import again with {option('receipt')} PATH (nothing is sent "
                                    "twice)")
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    except OSError as exc:
        raise LocalIOError(
            f"the import finished, but the receipt {path} could not be written: {exc.strerror or exc}",
            hint=f"run the same import again with {option('receipt')} PATH in a writable directory "
                 "(nothing is sent twice)",
        ) from None


# -- parsing (for --since) ------------------------------------------------------------------------------


def _referrers(image: dict[str, Any], origin: str, where: str) -> tuple[ReceiptReferrer, ...]:
    """An image's optional ``referrers`` (absent in receipts of older arcgap versions), each entry checked."""
    items = image.get("referrers")
    if items is None:
        return ()
    if not isinstance(items, list) or len(items) > MAX_RECEIPT_REFERRERS:
        raise _bad(origin, f"{where}.referrers: not a list of at most {MAX_RECEIPT_REFERRERS} entries")
    out: list[ReceiptReferrer] = []
    for k, r in enumerate(items):
        at = f"{where}.referrers[{k}]"
        tag = r.get("tag") if isinstance(r, dict) else None
        if tag is not None and (not isinstance(tag, str) or not _COSIGN_TAG.fullmatch(tag)):
            raise _bad(origin, f"{at}.tag: not a cosign tag sha256-<hex>.sig/.att/.sbom")
        out.append(ReceiptReferrer(
            subject=_digest(_get(r, "subject", str, origin, at), origin, at),
            digest=_digest(_get(r, "digest", str, origin, at), origin, at),
            media_type=_get(r, "media_type", str, origin, at),
            artifact_type=_get(r, "artifact_type", str, origin, at),
            tag=tag,
        ))
    return tuple(out)


_COSIGN_TAG = re.compile(r"sha256-[0-9a-f]{64}\.(sig|att|sbom)")
_DOC = YamlDoc(hint="give the receipt file 'arcgap import' wrote, unchanged", max_bytes=limits.MAX_RECEIPT_BYTES)
_bad = _DOC.fail
_get = _DOC.get
_digest = _DOC.digest


def _parse(doc: Any, origin: str) -> Receipt:
    if not is_receipt(doc):
        raise BundleFormatError(f"{origin}: not an arcgap import receipt",
                                hint="give the receipt file 'arcgap import' wrote")
    version = _get(doc, "format_version", int, origin, "top")
    if version > RECEIPT_VERSION or version < 1:
        raise BundleFormatError(f"{origin}: receipt format version {version} is not supported",
                                hint="use the arcgap that wrote it, or a newer one")
    bundle = _get(doc, "bundle", dict, origin, "top")
    target = _get(doc, "target", dict, origin, "top")
    blobs: list[BlobEntry] = []
    for n, b in enumerate(_get(doc, "blobs", list, origin, "top")):
        where = f"blobs[{n}]"
        kind = _get(b, "kind", str, origin, where)
        size = _get(b, "size", int, origin, where)
        if kind not in BLOB_KINDS or size < 0:
            raise _bad(origin, f"{where}: invalid size or kind")
        blobs.append(BlobEntry(_digest(_get(b, "digest", str, origin, where), origin, where), size,
                               _get(b, "media_type", str, origin, where), kind))
    images: list[ReceiptImage] = []
    for n, i in enumerate(_get(doc, "images", list, origin, "top")):
        where = f"images[{n}]"
        counts = _get(i, "blobs", dict, origin, where)
        action = _get(i, "action", str, origin, where)
        if action not in ACTIONS:
            raise _bad(origin, f"{where}.action: unknown action {action[:40]!r}")
        images.append(ReceiptImage(
            target=_get(i, "target", str, origin, where),
            source=_get(i, "source", str, origin, where),
            digest=_digest(_get(i, "digest", str, origin, where), origin, where),
            media_type=_get(i, "media_type", str, origin, where),
            platforms=tuple(
                (_get(p, "platform", str, origin, f"{where}.platforms[{k}]"),
                 _digest(_get(p, "digest", str, origin, f"{where}.platforms[{k}]"), origin, where))
                for k, p in enumerate(_get(i, "platforms", list, origin, where))
            ),
            action=action,
            uploaded_blobs=_get(counts, "uploaded", int, origin, f"{where}.blobs"),
            mounted_blobs=_get(counts, "mounted", int, origin, f"{where}.blobs"),
            present_blobs=_get(counts, "present", int, origin, f"{where}.blobs"),
            referrers=_referrers(i, origin, where),
        ))
    name = _get(bundle, "name", str, origin, "bundle")
    if not name or len(name) > 255 or not name.isprintable():
        raise _bad(origin, "bundle.name: not a file name")
    signed = bundle.get("signed_by")
    relied = bundle.get("relied_on") or []
    if not isinstance(relied, list) or not all(isinstance(r, str) for r in relied):
        raise _bad(origin, "bundle.relied_on: wrong type")
    return Receipt(
        bundle_name=name,
        bundle_identity=_digest(_get(bundle, "identity", str, origin, "bundle"), origin, "bundle.identity"),
        bundle_created=str(bundle.get("created", "")),
        bundle_format_version=_get(bundle, "format_version", int, origin, "bundle"),
        signed_by=_digest(signed, origin, "bundle.signed_by") if isinstance(signed, str) else None,
        signature_checked=bundle.get("signature_checked") is True,
        relied_on=tuple(relied),
        target_registry=_get(target, "registry", str, origin, "target"),
        target_repository=_get(target, "repository", str, origin, "target"),
        images=tuple(images),
        blobs=tuple(blobs),
        imported=str(doc.get("imported", "")),
        arcgap_version=str(doc.get("arcgap_version", "")),
    )
