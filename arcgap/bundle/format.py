"""``arcgap.yaml``: the bundle's table of contents, its schema, and the derived OCI ``index.json``.

Every digest and size the importer relies on is listed here, in the order the blobs follow in the tar.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import yaml

from arcgap import __version__
from arcgap.digest import Digest
from arcgap.errors import BundleFormatError, UsageError
from arcgap.mediatypes import OCI_INDEX, OCI_LAYOUT_VERSION, is_index, is_manifest
from arcgap.reference import validate_repository, validate_tag

FORMAT_NAME = "arcgap-bundle"
FORMAT_VERSION = 1
MANIFEST_NAME = "arcgap.yaml"
LAYOUT_NAME = "oci-layout"
INDEX_NAME = "index.json"
MAX_YAML_BYTES = 64 * 1024 * 1024
BLOB_KINDS = ("index", "manifest", "config", "layer")


@dataclass(frozen=True)
class BlobEntry:
    digest: Digest
    size: int
    media_type: str
    kind: str  # one of BLOB_KINDS

    @property
    def member(self) -> str:
        return f"blobs/{self.digest.algorithm}/{self.digest.hex}"


@dataclass(frozen=True)
class PlatformEntry:
    platform: str  # os/arch[/variant], "unknown" when the index does not say
    digest: Digest
    media_type: str


@dataclass(frozen=True)
class ImageEntry:
    name: str  # repository path relative to the source repository, e.g. "arc-controller"
    tag: str
    source: str  # full source reference
    digest: Digest  # the top-level manifest (or index) digest, as the source serves it
    media_type: str
    size: int
    platforms: tuple[PlatformEntry, ...]  # one entry for a single-platform image

    @property
    def ref_name(self) -> str:
        return f"{self.name}:{self.tag}"


@dataclass(frozen=True)
class BundleManifest:
    source_registry: str
    source_repository: str
    images: tuple[ImageEntry, ...]
    blobs: tuple[BlobEntry, ...]
    created: str  # RFC 3339, UTC
    arcgap_version: str = __version__
    format_version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)  # forward-compatible fields, kept verbatim

    @property
    def total_bytes(self) -> int:
        return sum(b.size for b in self.blobs)

    def blob(self, digest: Digest) -> BlobEntry | None:
        return self._by_digest().get(digest)

    def _by_digest(self) -> dict[Digest, BlobEntry]:
        return {b.digest: b for b in self.blobs}

    # -- serialisation --------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "format": FORMAT_NAME,
            "format_version": self.format_version,
            "arcgap_version": self.arcgap_version,
            "created": self.created,
            "source": {"registry": self.source_registry, "repository": self.source_repository},
            "images": [
                {
                    "name": i.name,
                    "tag": i.tag,
                    "source": i.source,
                    "digest": str(i.digest),
                    "media_type": i.media_type,
                    "size": i.size,
                    "platforms": [
                        {"platform": p.platform, "digest": str(p.digest), "media_type": p.media_type}
                        for p in i.platforms
                    ],
                }
                for i in self.images
            ],
            "blobs": [
                {"digest": str(b.digest), "size": b.size, "media_type": b.media_type, "kind": b.kind}
                for b in self.blobs
            ],
        }
        doc.update(self.extra)
        return doc

    def to_yaml(self) -> bytes:
        header = f"# arcgap bundle manifest: {len(self.images)} images, {len(self.blobs)} blobs\n"
        body = yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=False, width=200)
        return (header + body).encode()

    def oci_index(self) -> bytes:
        """index.json of the OCI layout: one descriptor per image, ref.name unique per image."""
        manifests = [
            {
                "mediaType": i.media_type,
                "digest": str(i.digest),
                "size": i.size,
                "annotations": {
                    "org.opencontainers.image.ref.name": i.ref_name,
                    "io.arcgap.source": i.source,
                },
            }
            for i in self.images
        ]
        doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
        return (json.dumps(doc, indent=2, sort_keys=False) + "\n").encode()

    @staticmethod
    def oci_layout() -> bytes:
        return (json.dumps({"imageLayoutVersion": OCI_LAYOUT_VERSION}) + "\n").encode()

    @classmethod
    def from_yaml(cls, data: bytes, *, origin: str = MANIFEST_NAME) -> BundleManifest:
        try:
            doc = yaml.safe_load(data)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{origin}:{mark.line + 1}" if mark is not None else origin
            raise BundleFormatError(
                f"{where}: not valid YAML", hint="the bundle is damaged or not an arcgap bundle"
            ) from None
        return _parse(doc, origin)


def _fail(origin: str, text: str) -> BundleFormatError:
    return BundleFormatError(f"{origin}: {text}", hint="the bundle is damaged or was not written by arcgap")


def _get(obj: Any, key: str, typ: type | tuple[type, ...], origin: str, where: str) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise _fail(origin, f"{where}: missing '{key}'")
    value = obj[key]
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise _fail(origin, f"{where}.{key}: wrong type")
    return value


def _digest(text: str, origin: str, where: str) -> Digest:
    try:
        return Digest.parse(text)
    except UsageError:
        raise _fail(origin, f"{where}: invalid digest {text[:80]!r}") from None


def _parse(doc: Any, origin: str) -> BundleManifest:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
        raise BundleFormatError(
            f"{origin}: not an arcgap bundle manifest", hint="give a file written by 'arcgap export'"
        )
    version = _get(doc, "format_version", int, origin, "top")
    if version > FORMAT_VERSION:
        raise BundleFormatError(
            f"bundle format version {version} is newer than this arcgap supports ({FORMAT_VERSION})",
            hint=f"install a newer arcgap on this side (the bundle was written by arcgap {doc.get('arcgap_version')})",
        )
    if version < 1:
        raise _fail(origin, f"unknown format_version {version}")
    source = _get(doc, "source", dict, origin, "top")
    blobs: list[BlobEntry] = []
    seen: set[Digest] = set()
    for n, b in enumerate(_get(doc, "blobs", list, origin, "top")):
        where = f"blobs[{n}]"
        d = _digest(_get(b, "digest", str, origin, where), origin, where)
        size = _get(b, "size", int, origin, where)
        kind = _get(b, "kind", str, origin, where)
        if size < 0 or kind not in BLOB_KINDS or d in seen:
            raise _fail(origin, f"{where}: invalid size, kind or duplicate digest")
        seen.add(d)
        blobs.append(BlobEntry(d, size, _get(b, "media_type", str, origin, where), kind))
    images: list[ImageEntry] = []
    refs: set[str] = set()
    for n, i in enumerate(_get(doc, "images", list, origin, "top")):
        where = f"images[{n}]"
        name = _get(i, "name", str, origin, where)
        tag = _get(i, "tag", str, origin, where)
        try:
            validate_repository(name)
            validate_tag(tag)
        except UsageError as exc:
            raise _fail(origin, f"{where}: {exc.message}") from None
        media_type = _get(i, "media_type", str, origin, where)
        if not is_manifest(media_type):
            raise _fail(origin, f"{where}: unsupported media type {media_type!r}")
        platforms = tuple(
            PlatformEntry(
                _get(p, "platform", str, origin, f"{where}.platforms[{k}]"),
                _digest(_get(p, "digest", str, origin, f"{where}.platforms[{k}]"), origin, where),
                _get(p, "media_type", str, origin, f"{where}.platforms[{k}]"),
            )
            for k, p in enumerate(_get(i, "platforms", list, origin, where))
        )
        entry = ImageEntry(
            name=name,
            tag=tag,
            source=_get(i, "source", str, origin, where),
            digest=_digest(_get(i, "digest", str, origin, where), origin, where),
            media_type=media_type,
            size=_get(i, "size", int, origin, where),
            platforms=platforms,
        )
        if entry.ref_name in refs:
            raise _fail(origin, f"{where}: duplicate image {entry.ref_name}")
        refs.add(entry.ref_name)
        if entry.digest not in seen or any(p.digest not in seen for p in platforms):
            raise _fail(origin, f"{where}: manifest {entry.digest.short} is not among the bundle's blobs")
        if is_index(media_type) != any(p.digest != entry.digest for p in platforms):
            raise _fail(origin, f"{where}: platforms do not match the media type")
        images.append(entry)
    known = {"format", "format_version", "arcgap_version", "created", "source", "images", "blobs"}
    return BundleManifest(
        source_registry=_get(source, "registry", str, origin, "source"),
        source_repository=str(source.get("repository") or ""),
        images=tuple(images),
        blobs=tuple(blobs),
        created=str(doc.get("created", "")),
        arcgap_version=str(doc.get("arcgap_version", "")),
        format_version=version,
        extra={k: v for k, v in doc.items() if k not in known},
    )
