"""``arcgap.yaml``: the bundle's table of contents, its schema, and the derived OCI ``index.json``.

Every digest and size the importer relies on is listed here, in the order the blobs follow in the tar. A
differential bundle (format version 2) also lists, under ``relies_on``, the blobs it leaves out because the
target already holds them from an earlier bundle. A signed bundle (format version 3) also records, under
``members``, the size and sha256 of every other member (``oci-layout``, ``index.json``, ``manifest.json``), so the
signature over ``arcgap.yaml`` covers every byte of the bundle. A bundle of several releases (an upgrade chain,
format version 4) lists them under ``releases``, oldest first; each image belongs to the release whose tag it
carries. Referrers (signatures, SBOMs, attestations: format version 5) are listed under ``referrers``
(:mod:`arcgap.bundle.referrers`). Limits: :mod:`arcgap.bundle.limits`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from arcgap import __version__
from arcgap.bundle import limits
from arcgap.bundle.referrers import REFERRERS_FORMAT_VERSION, ReferrerEntry, parse_referrers
from arcgap.bundle.yamldoc import YamlDoc, shown_number
from arcgap.errors import BundleFormatError, UsageError
from arcgap.oci.digest import Digest
from arcgap.oci.mediatypes import OCI_INDEX, OCI_LAYOUT_VERSION, is_index, is_manifest
from arcgap.oci.reference import validate_repository, validate_tag
from arcgap.util import safeyaml

FORMAT_NAME = "arcgap-bundle"
FORMAT_VERSION = 5  # the newest version this arcgap reads and writes
PLAIN_FORMAT_VERSION = 1  # a full, unsigned bundle: arcgap 0.1 reads it too
DIFFERENTIAL_FORMAT_VERSION = 2  # relies_on (and, before version 3, a signature without members)
MEMBERS_FORMAT_VERSION = 3  # members: the digests of the bundle's other members, written by signed bundles
CHAIN_FORMAT_VERSION = 4  # releases: several releases in one bundle (an upgrade chain)
TOC_NAME = "arcgap.yaml"
LAYOUT_NAME = "oci-layout"
INDEX_NAME = "index.json"
MAX_YAML_BYTES = limits.MAX_YAML_BYTES
MANIFEST_KINDS = ("index", "manifest")  # the blob kinds that are manifests (stored whole, parsed)
BLOB_KINDS = (*MANIFEST_KINDS, "config", "layer")
RELIABLE_KINDS = ("config", "layer")  # manifests are always in the bundle: tags need their bytes
BASE_VIAS = ("bundle", "sidecar", "receipt")


def needed_version(*, differential: bool, signed: bool, chain: bool = False, referrers: bool = False) -> int:
    """The lowest format version that describes a bundle, so older arcgap reads every bundle it can.

    Version 1 readers would take ``relies_on`` for an unknown key and stop at ``arcgap.yaml.sig`` with an
    unclear message; version 2 makes them say "newer format" instead. A signed bundle records its other
    members' digests (``members``), which a version 2 reader would not check: version 3. A version 3 reader
    would import an upgrade chain without its release order and let ``--target-tag`` put every release on one
    tag: a chain (``releases``) is version 4.
    """
    if referrers:
        return REFERRERS_FORMAT_VERSION  # an older reader would import the images without their signatures
    if chain:
        return CHAIN_FORMAT_VERSION
    if signed:
        return MEMBERS_FORMAT_VERSION
    return DIFFERENTIAL_FORMAT_VERSION if differential else PLAIN_FORMAT_VERSION


@dataclass(frozen=True)
class MemberEntry:
    """A member other than arcgap.yaml, its signature and the blobs, as ``members`` in arcgap.yaml records it."""

    name: str
    size: int
    digest: Digest


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
class TableOfContents:
    source_registry: str
    source_repository: str
    images: tuple[ImageEntry, ...]
    blobs: tuple[BlobEntry, ...]
    created: str  # RFC 3339, UTC
    arcgap_version: str = __version__
    format_version: int = PLAIN_FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)  # forward-compatible fields, kept verbatim
    relies_on: tuple[BaseBundle, ...] = ()  # empty for a full bundle
    members: tuple[MemberEntry, ...] = ()  # the other members' digests (format version 3: signed bundles)
    releases: tuple[str, ...] = ()  # an upgrade chain's release tags, oldest first (format version 4)
    referrers: tuple[ReferrerEntry, ...] = ()  # signatures, SBOMs, attestations (format version 5)

    def __post_init__(self) -> None:
        if self.relies_on and self.format_version < DIFFERENTIAL_FORMAT_VERSION:
            raise ValueError("a differential bundle needs format version 2")
        if self.members and self.format_version < MEMBERS_FORMAT_VERSION:
            raise ValueError("members need format version 3")
        if self.releases and self.format_version < CHAIN_FORMAT_VERSION:
            raise ValueError("a bundle of several releases needs format version 4")
        if self.referrers and self.format_version < REFERRERS_FORMAT_VERSION:
            raise ValueError("referrers need format version 5")

    def with_members(self, members: dict[str, bytes]) -> TableOfContents:
        """This manifest recording the size and sha256 of ``members`` (name -> exact bytes), in that order."""
        from dataclasses import replace

        entries = tuple(MemberEntry(name, len(data), Digest.of(data)) for name, data in members.items())
        return replace(self, members=entries, format_version=max(self.format_version, MEMBERS_FORMAT_VERSION))

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
        """The base bundle a relied-on blob comes from (the first that lists it): one look-up, not a scan."""
        return self._base_by_digest.get(digest)

    def blob(self, digest: Digest) -> BlobEntry | None:
        return self._by_digest.get(digest)

    # built once per manifest (frozen: the fields never change), so a look-up per blob stays linear overall
    @cached_property
    def _by_digest(self) -> dict[Digest, BlobEntry]:
        return {b.digest: b for b in self.blobs}

    @cached_property
    def _base_by_digest(self) -> dict[Digest, BaseBundle]:
        found: dict[Digest, BaseBundle] = {}
        for base in self.relies_on:
            for b in base.blobs:
                found.setdefault(b.digest, base)
        return found

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
        if self.members:
            doc["members"] = [{"name": m.name, "size": m.size, "digest": str(m.digest)} for m in self.members]
        if self.releases:
            doc["releases"] = list(self.releases)
        if self.referrers:
            doc["referrers"] = [r.to_dict() for r in self.referrers]
        doc.update(self.extra)
        return doc

    def to_yaml(self) -> bytes:
        header = f"arcgap bundle manifest: {len(self.images)} images, {len(self.blobs)} blobs"
        if self.relies_on:
            names = ", ".join(base.name for base in self.relies_on)
            header += f" (and {len(self.relied_on_blobs)} blobs the target holds from {names})"
        header = safeyaml.comment(header)
        body = safeyaml.dump(self.to_dict())
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
    def from_yaml(cls, data: bytes, *, origin: str = TOC_NAME) -> TableOfContents:
        doc = _DOC.load(data, origin)
        return _parse(doc, origin)


def _blob_dict(b: BlobEntry) -> dict[str, Any]:
    return {"digest": str(b.digest), "size": b.size, "media_type": b.media_type, "kind": b.kind}


_DOC = YamlDoc(
    hint="the bundle is damaged or was not written by arcgap", max_bytes=limits.MAX_YAML_BYTES,
    refused_hint="arcgap never writes this: the bundle was altered or not written by arcgap "
                 "(see \"Limits\" in docs/bundle.md)",
    invalid_hint="the bundle is damaged or not an arcgap bundle",
    max_text=limits.MAX_TEXT, max_int=limits.MAX_BLOB_BYTES, max_items=limits.MAX_BLOBS,
)
_fail = _DOC.fail
_get = _DOC.get
_digest = _DOC.digest
_number = shown_number


def _text(doc: dict[str, Any], key: str, origin: str, where: str) -> str:
    """An optional free-text field: a string of bounded length (anything else is a damaged manifest)."""
    value = doc.get(key, "")
    if value is None:
        return ""
    if isinstance(value, (dict, list, bool, bytes)) or len(str(value)) > limits.MAX_TEXT:
        raise _fail(origin, f"{where}.{key}: not a short string")
    return str(value)


def _parse(doc: Any, origin: str) -> TableOfContents:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
        raise BundleFormatError(
            f"{origin}: not an arcgap bundle manifest", hint="give a file written by 'arcgap export'"
        )
    version = _get(doc, "format_version", int, origin, "top")
    if version > FORMAT_VERSION:
        raise BundleFormatError(
            f"bundle format version {version} is newer than this arcgap supports ({FORMAT_VERSION})",
            hint="install a newer arcgap on this side (the bundle was written by arcgap "
                 f"{str(doc.get('arcgap_version'))[:40]})",
        )
    if version < 1:
        raise _fail(origin, f"unknown format_version {version}")
    source = _get(doc, "source", dict, origin, "top")
    seen: set[Digest] = set()
    listed = _get(doc, "blobs", list, origin, "top")
    blobs = [_blob(b, origin, f"blobs[{n}]", seen, BLOB_KINDS) for n, b in enumerate(listed)]
    _check_blob_order(blobs, origin)
    in_bundle = {b.digest: b for b in blobs}
    relies_on = _relies_on(doc, version, origin, seen)
    images: list[ImageEntry] = []
    refs: set[str] = set()
    listed_images = _get(doc, "images", list, origin, "top")
    if not listed_images:
        raise BundleFormatError(f"{origin}: the bundle holds no images",
                                hint="nothing to import or verify: export the images again")
    if len(listed_images) > limits.MAX_IMAGES:
        raise _fail(origin, f"more than {limits.MAX_IMAGES} images")
    for n, i in enumerate(listed_images):
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
        if len(platforms) > limits.MAX_INDEX_CHILDREN:
            raise _fail(origin, f"{where}: more than {limits.MAX_INDEX_CHILDREN} platforms")
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
        top = in_bundle[entry.digest]
        if (top.size, top.media_type, top.kind) != (entry.size, media_type, "index" if is_index(media_type)
                                                    else "manifest"):
            raise _fail(origin, f"{where}: size, media type or kind differs from blob {entry.digest.short}")
        images.append(entry)
    releases = _releases(doc, version, origin, images)
    known = {"format", "format_version", "arcgap_version", "created", "source", "images", "blobs", "relies_on",
             "members", "releases", "referrers"}
    return TableOfContents(
        source_registry=_get(source, "registry", str, origin, "source"),
        source_repository=_text(source, "repository", origin, "source"),
        images=tuple(images),
        blobs=tuple(blobs),
        created=_text(doc, "created", origin, "top"),
        arcgap_version=_text(doc, "arcgap_version", origin, "top"),
        format_version=version,
        extra={k: v for k, v in doc.items() if k not in known},
        relies_on=relies_on,
        members=_members(doc, version, origin),
        releases=releases,
        referrers=parse_referrers(
            doc, version, origin, images={i.ref_name: {i.digest, *(p.digest for p in i.platforms)} for i in images},
            manifests={b.digest: (b.size, b.media_type) for b in blobs if b.kind in MANIFEST_KINDS}),
    )


def _releases(doc: dict[str, Any], version: int, origin: str, images: list[ImageEntry]) -> tuple[str, ...]:
    """``releases`` (format version 4): distinct release tags, oldest first, each carried by an image."""
    if "releases" not in doc:
        return ()
    if version < CHAIN_FORMAT_VERSION:
        raise _fail(origin, f"releases needs format_version {CHAIN_FORMAT_VERSION}, not {version}")
    listed = _get(doc, "releases", list, origin, "top")
    tags = {i.tag for i in images}
    seen: set[str] = set()
    for n, tag in enumerate(listed):
        if not isinstance(tag, str) or tag not in tags or tag in seen:
            raise _fail(origin, f"releases[{n}]: not the tag of an image of the bundle, or listed twice")
        seen.add(tag)
    return tuple(listed)


def _check_blob_order(blobs: list[BlobEntry], origin: str) -> None:
    """Manifests and indexes first (import checks the graph before it sends a blob), each within the limits."""
    held = 0
    configs_seen = False
    for n, b in enumerate(blobs):
        if b.kind in MANIFEST_KINDS:
            if configs_seen:
                raise _fail(origin, f"blobs[{n}]: manifest {b.digest.short} after a config or layer")
            if b.size > limits.MAX_MANIFEST_BYTES:
                raise BundleFormatError(
                    f"{origin}: blobs[{n}]: {b.kind} {b.digest.short} of {_number(b.size)} bytes is over the "
                    f"{limits.MAX_MANIFEST_BYTES}-byte limit for a manifest",
                    hint="arcgap never writes such a manifest: the bundle was altered or not written by arcgap")
            if is_index(b.media_type) != (b.kind == "index") or not is_manifest(b.media_type):
                raise _fail(origin, f"blobs[{n}]: kind {b.kind} does not fit media type {b.media_type[:100]!r}")
            held += b.size
            if held > limits.MAX_MANIFESTS_TOTAL_BYTES:
                raise _fail(origin, f"manifests of more than {limits.MAX_MANIFESTS_TOTAL_BYTES} bytes in all")
        else:
            configs_seen = True


def _members(doc: dict[str, Any], version: int, origin: str) -> tuple[MemberEntry, ...]:
    """``members`` (format version 3): the layout members' names, sizes and digests, in the bundle's order."""
    if "members" not in doc:
        return ()
    if version < MEMBERS_FORMAT_VERSION:
        raise _fail(origin, f"members needs format_version {MEMBERS_FORMAT_VERSION}, not {version}")
    entries: list[MemberEntry] = []
    for n, m in enumerate(_get(doc, "members", list, origin, "top")):
        where = f"members[{n}]"
        name = _get(m, "name", str, origin, where)
        if name not in (LAYOUT_NAME, INDEX_NAME, "manifest.json") or any(e.name == name for e in entries):
            raise _fail(origin, f"{where}: unexpected or repeated member {name[:100]!r}")
        entries.append(MemberEntry(name, _get(m, "size", int, origin, where),
                                   _digest(_get(m, "digest", str, origin, where), origin, where)))
    return tuple(entries)


def _blob(b: Any, origin: str, where: str, seen: set[Digest], kinds: tuple[str, ...]) -> BlobEntry:
    d = _digest(_get(b, "digest", str, origin, where), origin, where)
    size = _get(b, "size", int, origin, where)
    kind = _get(b, "kind", str, origin, where)
    if size < 0 or kind not in kinds or d in seen:
        raise _fail(origin, f"{where}: invalid size, kind or duplicate digest")
    if len(seen) >= 2 * limits.MAX_BLOBS:
        raise _fail(origin, f"more than {limits.MAX_BLOBS} blobs")
    seen.add(d)
    return BlobEntry(d, size, _get(b, "media_type", str, origin, where), kind)


def _relies_on(doc: dict[str, Any], version: int, origin: str, seen: set[Digest]) -> tuple[BaseBundle, ...]:
    """The ``relies_on`` section: bases and the blobs left out; none of them may also be in the bundle."""
    if "relies_on" not in doc:
        return ()
    if version < DIFFERENTIAL_FORMAT_VERSION:
        raise _fail(origin, f"relies_on needs format_version {DIFFERENTIAL_FORMAT_VERSION}, not {version}")
    bases: list[BaseBundle] = []
    listed = _get(doc, "relies_on", list, origin, "top")
    if len(listed) > limits.MAX_BASES:
        raise _fail(origin, f"relies_on: more than {limits.MAX_BASES} base bundles")
    for n, base in enumerate(listed):
        where = f"relies_on[{n}]"
        name = _get(base, "bundle", str, origin, where)
        via = _get(base, "via", str, origin, where)
        if not name or len(name) > 255 or not name.isprintable() or via not in BASE_VIAS:
            raise _fail(origin, f"{where}: invalid bundle name or via")
        blobs = tuple(_blob(b, origin, f"{where}.blobs[{k}]", seen, RELIABLE_KINDS)
                      for k, b in enumerate(_get(base, "blobs", list, origin, where)))
        identity = _digest(_get(base, "identity", str, origin, where), origin, where)
        bases.append(BaseBundle(name, identity, via, _text(base, "created", origin, where), blobs))
    return tuple(bases)
