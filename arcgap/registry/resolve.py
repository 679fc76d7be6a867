"""Resolve image references at a registry into raw manifests, walking indexes to every platform."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

from arcgap.errors import NotFoundError, RegistryError, UsageError, variable
from arcgap.oci.digest import Digest
from arcgap.oci.mediatypes import MAX_MANIFEST_BYTES, Descriptor, ParsedManifest, is_index, parse_manifest
from arcgap.oci.reference import Reference
from arcgap.oci.strictjson import CONFIG_MEDIA_TYPES, StrictJSONError, check_config, loads
from arcgap.registry.client import FetchedManifest, RegistryClient
from arcgap.util.parallel import each, lookup_jobs

MAX_CONFIG_BYTES = 8 * 1024 * 1024
CHILD_THREADS = 8  # threads per index for its children; the requests in flight are bounded by the gate


@dataclass(frozen=True)
class Wanted:
    """One image to export: ``name`` is its path relative to the source repository."""

    name: str
    reference: Reference  # registry/repository:tag


@dataclass(frozen=True)
class PlatformManifest:
    platform: str
    manifest: FetchedManifest
    parsed: ParsedManifest


@dataclass(frozen=True)
class ResolvedImage:
    wanted: Wanted
    top: FetchedManifest  # index or single manifest (after a --platform filter: the chosen manifest)
    platforms: tuple[PlatformManifest, ...]
    configs: dict[Digest, bytes]  # config blobs, fetched to learn platforms (small)
    filtered_from: Digest | None = None  # set when --platform replaced an index by one of its children


def _platform_of_config(raw: bytes) -> str:
    try:
        doc = json.loads(raw)
    except ValueError:
        return "unknown"
    if not isinstance(doc, dict):
        return "unknown"
    os_, arch = doc.get("os"), doc.get("architecture")
    if isinstance(os_, str) and isinstance(arch, str):
        variant = doc.get("variant")
        return f"{os_}/{arch}" + (f"/{variant}" if isinstance(variant, str) and variant else "")
    return "unknown"


def _read_config(client: RegistryClient, repo: str, parsed: ParsedManifest, what: str) -> tuple[Digest, bytes]:
    config = parsed.config
    assert config is not None
    if config.size > MAX_CONFIG_BYTES:
        raise RegistryError(f"{what}: image config of {config.size} bytes is implausibly large")
    data = b"".join(client.stream_blob(repo, config.digest, config.size, what=f"config of {what}"))
    try:  # what a Go registry or runtime reads of an image config must be what arcgap read (artifacts: any bytes)
        if config.media_type in CONFIG_MEDIA_TYPES:
            check_config(loads(data))
    except StrictJSONError as exc:
        raise RegistryError(
            f"{what}: image config {config.digest.short} refused: {str(exc)[:200]}",
            hint="Go, Python and JavaScript readers would read this config differently; re-push the image "
                 "with a standard tool (skopeo, crane, docker) so that its JSON is plain",
        ) from None
    return config.digest, data


def resolve_image(client: RegistryClient, wanted: Wanted, *, platform: str | None = None,
                  jobs: int = 1, gate: AbstractContextManager[object] | None = None) -> ResolvedImage:
    """``wanted``'s manifests and configs; an index's children ``jobs`` at a time (at most ``CHILD_THREADS``;
    each child's manifest, then its config: on a 40 ms path one after the other they cost an index two round
    trips per child). ``gate`` is held around each request (:func:`resolve_all`'s bound on look-ups in flight,
    shared by every image and child)."""
    gate = gate if gate is not None else nullcontext()
    ref = wanted.reference
    what = str(ref)
    try:
        with gate:
            top = client.get_manifest(ref.repository, ref.ref, reuse=True)  # the check before it asked already
    except NotFoundError:
        raise NotFoundError(
            f"image {what} not found at the source",
            hint=f"check the image name and {variable('source.tag')} (or the image list)",
        ) from None
    parsed_top = parse_manifest(top.raw, top.media_type, what=what)
    configs: dict[Digest, bytes] = {}
    if not is_index(top.media_type):
        with gate:
            digest, data = _read_config(client, ref.repository, parsed_top, what)
        configs[digest] = data
        plat = _platform_of_config(data)
        if platform and plat != platform and not plat.startswith(platform + "/"):
            raise UsageError(f"{what} is a single-platform image for {plat}, not {platform}")
        return ResolvedImage(wanted, top, (PlatformManifest(plat, top, parsed_top),), configs)
    children = list(parsed_top.children)
    if platform:
        chosen = [c for c in children if c.platform == platform or (c.platform or "").startswith(platform + "/")]
        if not chosen:
            available = ", ".join(sorted({c.platform or "unknown" for c in children}))
            raise UsageError(f"{what} has no {platform} image (it has {available})")
        children = chosen[:1]
    for child in children:
        if child.size > MAX_MANIFEST_BYTES:
            raise RegistryError(f"{what}: child manifest {child.digest.short} is implausibly large")

    def one(child: Descriptor) -> tuple[PlatformManifest, Digest, bytes]:
        with gate:
            fetched = client.get_manifest(ref.repository, str(child.digest))
        if len(fetched.raw) != child.size:
            raise RegistryError(f"{what}: child manifest {child.digest.short} size differs from the index")
        parsed = parse_manifest(fetched.raw, fetched.media_type, what=f"{what}@{child.digest.short}")
        if is_index(fetched.media_type):
            raise RegistryError(f"{what}: nested indexes are not supported")
        with gate:
            digest, data = _read_config(client, ref.repository, parsed, f"{what}@{child.digest.short}")
        return PlatformManifest(child.platform or _platform_of_config(data), fetched, parsed), digest, data

    platforms: list[PlatformManifest] = []
    threads = min(jobs, len(children), CHILD_THREADS)
    for plat_manifest, digest, data in each(one, children, jobs=threads, name="arcgap-child"):
        configs[digest] = data
        platforms.append(plat_manifest)
    if platform:
        only = platforms[0]
        return ResolvedImage(wanted, only.manifest, (only,), configs, filtered_from=top.digest)
    return ResolvedImage(wanted, top, tuple(platforms), configs)


def resolve_all(
    client_for: Callable[[str], RegistryClient], wanted: Sequence[Wanted], *, jobs: int, platform: str | None = None,
    on_each: Callable[[ResolvedImage], None] | None = None,
) -> list[ResolvedImage]:
    """Resolve every image (:func:`lookup_jobs` at a time, and as many requests in flight at most, an index's
    children included); errors name the image. Order follows ``wanted``. ``on_each`` is called with each image
    as soon as it is resolved (on the thread that resolved it)."""
    clients = [client_for(w.reference.registry) for w in wanted]
    lookups = lookup_jobs(jobs)
    gate = threading.BoundedSemaphore(lookups)

    def one(pair: tuple[RegistryClient, Wanted]) -> ResolvedImage:
        image = resolve_image(pair[0], pair[1], platform=platform, jobs=lookups, gate=gate)
        if on_each is not None:
            on_each(image)
        return image

    return each(one, list(zip(clients, wanted)), jobs=lookups)
