"""Media types of the Docker v2 and OCI image formats, and the pure parsing of manifest bytes."""

from __future__ import annotations

import json
from dataclasses import dataclass

from arcgap.errors import RegistryError, UsageError
from arcgap.oci.digest import Digest
from arcgap.oci.strictjson import StrictJSONError, check_manifest, loads

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_LAYOUT_VERSION = "1.0.0"

INDEX_TYPES = frozenset({DOCKER_LIST, OCI_INDEX})
IMAGE_MANIFEST_TYPES = frozenset({DOCKER_MANIFEST, OCI_MANIFEST})
MANIFEST_TYPES = INDEX_TYPES | IMAGE_MANIFEST_TYPES

# The Accept list for manifest GET/HEAD: every type we can carry byte for byte.
MANIFEST_ACCEPT = ", ".join([OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST])

MAX_MANIFEST_BYTES = 4 * 1024 * 1024  # distribution's own limit for a manifest PUT


def is_index(media_type: str) -> bool:
    return media_type in INDEX_TYPES


def is_manifest(media_type: str) -> bool:
    return media_type in MANIFEST_TYPES


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: Digest
    size: int
    platform: str | None = None  # "os/arch[/variant]" for index children
    urls: tuple[str, ...] = ()


@dataclass(frozen=True)
class ParsedManifest:
    """What a manifest's bytes refer to. Indexes have ``children``; image manifests ``config`` + ``layers``."""

    media_type: str
    children: tuple[Descriptor, ...] = ()
    config: Descriptor | None = None
    layers: tuple[Descriptor, ...] = ()

    @property
    def blobs(self) -> tuple[Descriptor, ...]:
        return ((self.config,) if self.config else ()) + self.layers


def _descriptor(obj: object, where: str) -> Descriptor:
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: descriptor is not an object")
    media_type = obj.get("mediaType")
    digest = obj.get("digest")
    size = obj.get("size")
    if not isinstance(media_type, str) or not isinstance(digest, str):
        raise ValueError(f"{where}: descriptor lacks mediaType or digest")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ValueError(f"{where}: descriptor has no valid size")
    try:
        parsed = Digest.parse(digest)
    except UsageError as exc:
        raise ValueError(f"{where}: {exc.message}") from None
    platform = None
    plat = obj.get("platform")
    if isinstance(plat, dict) and isinstance(plat.get("os"), str) and isinstance(plat.get("architecture"), str):
        platform = f"{plat['os']}/{plat['architecture']}"
        if isinstance(plat.get("variant"), str) and plat["variant"]:
            platform += f"/{plat['variant']}"
    urls = obj.get("urls") or ()
    return Descriptor(media_type, parsed, size, platform, tuple(u for u in urls if isinstance(u, str)))


def sniff_media_type(raw: bytes) -> str | None:
    """The ``mediaType`` field of manifest bytes, if any (OCI makes it optional)."""
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(doc, dict):
        return None
    mt = doc.get("mediaType")
    if isinstance(mt, str):
        return mt
    if "manifests" in doc:
        return OCI_INDEX
    if "config" in doc and "layers" in doc:
        return OCI_MANIFEST
    return None


def parse_manifest(raw: bytes, media_type: str, *, what: str) -> ParsedManifest:
    """Parse manifest ``raw`` bytes (never re-serialised). Raises RegistryError for what we cannot carry."""
    if media_type in (DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED):
        raise RegistryError(
            f"{what}: Docker schema 1 manifests are not supported",
            hint="schema 1 is deprecated; re-push the image with a current docker or skopeo",
        )
    if media_type not in MANIFEST_TYPES:
        raise RegistryError(f"{what}: unsupported manifest media type {media_type!r}")
    try:
        doc = loads(raw)
        check_manifest(doc, media_type, index=is_index(media_type))
    except StrictJSONError as exc:
        raise RegistryError(
            f"{what}: malformed manifest: {str(exc)[:200]}",
            hint="Go, Python and JavaScript readers would read this manifest differently; re-push the image "
                 "with a standard tool (skopeo, crane, docker) so that its JSON is plain",
        ) from None
    try:
        if is_index(media_type):
            items = doc.get("manifests")
            if not isinstance(items, list):
                raise ValueError("index has no 'manifests' list")
            children = tuple(_descriptor(d, f"manifests[{i}]") for i, d in enumerate(items))
            for child in children:
                if not is_manifest(child.media_type):
                    raise ValueError(f"index child {child.digest} has unsupported type {child.media_type}")
            return ParsedManifest(media_type, children=children)
        config = _descriptor(doc.get("config"), "config")
        layers_raw = doc.get("layers")
        if not isinstance(layers_raw, list):
            raise ValueError("manifest has no 'layers' list")
        layers = tuple(_descriptor(d, f"layers[{i}]") for i, d in enumerate(layers_raw))
        return ParsedManifest(media_type, config=config, layers=layers)
    except (ValueError, RecursionError) as exc:
        raise RegistryError(f"{what}: malformed manifest: {str(exc)[:200]}") from None
