"""``arcgap.yaml``: the bundle's table of contents, its schema, and the derived OCI ``index.json``.

Every digest and size the importer relies on is listed here, in the order the blobs follow in the tar. A
differential bundle (format version 2) also lists, under ``relies_on``, the blobs it leaves out because the
target already holds them from an earlier bundle.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import yaml

from arcgap import __version__
from arcgap.errors import BundleFormatError, UsageError
from arcgap.oci.digest import Digest
from arcgap.oci.mediatypes import OCI_INDEX, OCI_LAYOUT_VERSION, is_index, is_manifest
from arcgap.oci.reference import validate_repository, validate_tag

FORMAT_NAME = "arcgap-bundle"
FORMAT_VERSION = 2  # the newest version this arcgap reads and writes
PLAIN_FORMAT_VERSION = 1  # a full, unsigned bundle: arcgap 0.1 reads it too
MANIFEST_NAME = "arcgap.yaml"
LAYOUT_NAME = "oci-layout"
INDEX_NAME = "index.json"
MAX_YAML_BYTES = 64 * 1024 * 1024
BLOB_KINDS = ("index", "manifest", "config", "layer")
RELIABLE_KINDS = ("config", "layer")  # manifests are always in the bundle: tags need their bytes
BASE_VIAS = ("bundle", "sidecar", "receipt")


def needed_version(*, differential: bool, signed: bool) -> int:
    """The lowest format version that describes a bundle, so older arcgap reads every bundle it can.

    Version 1 readers would take ``relies_on`` for an unknown key and stop at ``arcgap.yaml.sig`` with an
    unclear message; version 2 makes them say "newer format" instead.
    """
    return FORMAT_VERSION if (differential or signed) else PLAIN_FORMAT_VERSION


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
class BaseBundle:
    """An earlier bundle whose blobs a differential bundle leaves out: the target must already hold them."""

    name: str  # the base bundle's file name, for messages ("arcdata-v1.28.0.tar.zst")
    identity: Digest  # sha256 of the base's arcgap.yaml bytes
    via: str  # what --since was given: one of BASE_VIAS
    created: str  # the base bundle's creation time
    blobs: tuple[BlobEntry, ...]  # the blobs left out of this bundle because the base has them

    @property
    def total_bytes(self) -> int:
        return sum(b.size for b in self.blobs)


@dataclass(frozen=True)
class BundleManifest:
    source_registry: str
    source_repository: str
    images: tuple[ImageEntry, ...]
    blobs: tuple[BlobEntry, ...]
    created: str  # RFC 3339, UTC
    arcgap_version: str = __version__
    format_version: int = PLAIN_FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)  # forward-compatible fields, kept verbatim
    relies_on: tuple[BaseBundle, ...] = ()  # empty for a full bundle

    def __post_init__(self) -> None:
        if self.relies_on and self.format_version < FORMAT_VERSION:
            raise ValueError("a differential bundle needs format version 2")

    @property
    def total_bytes(self) -> int:
        """Bytes of the blobs in the bundle (relied-on blobs are not in it)."""
        return sum(b.size for b in self.blobs)

    @property
    def relied_on_blobs(self) -> tuple[BlobEntry, ...]:
        return tuple(b for base in self.relies_on for b in base.blobs)

    @property
    def relied_on_bytes(self) -> int:
        return sum(base.total_bytes for base in self.relies_on)

    def base_of(self, digest: Digest) -> BaseBundle | None:
        """The base bundle a relied-on blob comes from."""
        return next((base for base in self.relies_on if any(b.digest == digest for b in base.blobs)), None)

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
            "blobs": [_blob_dict(b) for b in self.blobs],
        }
        if self.relies_on:
            doc["relies_on"] = [
                {"bundle": base.name, "identity": str(base.identity), "via": base.via, "created": base.created,
                 "blobs": [_blob_dict(b) for b in base.blobs]}
                for base in self.relies_on
            ]
        doc.update(self.extra)
        return doc

    def to_yaml(self) -> bytes:
        header = f"# arcgap bundle manifest: {len(self.images)} images, {len(self.blobs)} blobs"
        if self.relies_on:
            names = ", ".join(base.name for base in self.relies_on)
            header += f" (and {len(self.relied_on_blobs)} blobs the target holds from {names})"
        header += "\n"
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
        except (yaml.YAMLError, RecursionError) as exc:  # deep nesting: recursion
            mark = getattr(exc, "problem_mark", None)
            where = f"{origin}:{mark.line + 1}" if mark is not None else origin
            raise BundleFormatError(
                f"{where}: not valid YAML", hint="the bundle is damaged or not an arcgap bundle"
            ) from None
        return _parse(doc, origin)


def _blob_dict(b: BlobEntry) -> dict[str, Any]:
    return {"digest": str(b.digest), "size": b.size, "media_type": b.media_type, "kind": b.kind}


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
    seen: set[Digest] = set()
    listed = _get(doc, "blobs", list, origin, "top")
    blobs = [_blob(b, origin, f"blobs[{n}]", seen, BLOB_KINDS) for n, b in enumerate(listed)]
    in_bundle = set(seen)
    relies_on = _relies_on(doc, version, origin, seen)
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
        if entry.digest not in in_bundle or any(p.digest not in in_bundle for p in platforms):
            raise _fail(origin, f"{where}: manifest {entry.digest.short} is not among the bundle's blobs")
        if is_index(media_type) != any(p.digest != entry.digest for p in platforms):
            raise _fail(origin, f"{where}: platforms do not match the media type")
        images.append(entry)
    known = {"format", "format_version", "arcgap_version", "created", "source", "images", "blobs", "relies_on"}
    return BundleManifest(
        source_registry=_get(source, "registry", str, origin, "source"),
        source_repository=str(source.get("repository") or ""),
        images=tuple(images),
        blobs=tuple(blobs),
        created=str(doc.get("created", "")),
        arcgap_version=str(doc.get("arcgap_version", "")),
        format_version=version,
        extra={k: v for k, v in doc.items() if k not in known},
        relies_on=relies_on,
    )


def _blob(b: Any, origin: str, where: str, seen: set[Digest], kinds: tuple[str, ...]) -> BlobEntry:
    d = _digest(_get(b, "digest", str, origin, where), origin, where)
    size = _get(b, "size", int, origin, where)
    kind = _get(b, "kind", str, origin, where)
    if size < 0 or kind not in kinds or d in seen:
        raise _fail(origin, f"{where}: invalid size, kind or duplicate digest")
    seen.add(d)
    return BlobEntry(d, size, _get(b, "media_type", str, origin, where), kind)


def _relies_on(doc: dict[str, Any], version: int, origin: str, seen: set[Digest]) -> tuple[BaseBundle, ...]:
    """The ``relies_on`` section: bases and the blobs left out; none of them may also be in the bundle."""
    if "relies_on" not in doc:
        return ()
    if version < FORMAT_VERSION:
        raise _fail(origin, f"relies_on needs format_version {FORMAT_VERSION}, not {version}")
    bases: list[BaseBundle] = []
    for n, base in enumerate(_get(doc, "relies_on", list, origin, "top")):
        where = f"relies_on[{n}]"
        name = _get(base, "bundle", str, origin, where)
        via = _get(base, "via", str, origin, where)
        if not name or len(name) > 255 or not name.isprintable() or via not in BASE_VIAS:
            raise _fail(origin, f"{where}: invalid bundle name or via")
        blobs = tuple(_blob(b, origin, f"{where}.blobs[{k}]", seen, RELIABLE_KINDS)
                      for k, b in enumerate(_get(base, "blobs", list, origin, where)))
        identity = _digest(_get(base, "identity", str, origin, where), origin, where)
        bases.append(BaseBundle(name, identity, via, str(base.get("created", "")), blobs))
    return tuple(bases)
