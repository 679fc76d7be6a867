"""``arcgap import --engine docker``: bundle → ``docker load`` (streamed, verified) → push through the engine.

A composition of the engine: :class:`~arcgap.transfer.bundlesource.BundleSource` into :class:`DockerLoad`.
The bundle is re-emitted as the tar ``docker load`` reads while every blob is checked by size and digest on
the way (the OCI layout's members, then the blobs, then a ``manifest.json`` naming each image for the target).
dockerd unpacks the whole upload before it loads anything, so a damaged blob cuts the stream and nothing
is loaded. Nothing is read into memory beyond manifests and configs.

The classic image store keeps one platform per image and re-compresses layers on push: the pushed digests
may differ from the bundle's. That is said before it happens, and the digests the target ends up with are
recorded in the result.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from arcgap.bundle import tarstream
from arcgap.bundle.dockercompat import DOCKER_LOAD_INDEX_NAME, chosen_platforms, docker_load_json, host_platform
from arcgap.bundle.format import INDEX_NAME, LAYOUT_NAME, MANIFEST_KINDS, BlobEntry
from arcgap.bundle.reader import BundleReader
from arcgap.dockerengine import auth_config, check_events, docker_engine_error
from arcgap.errors import ArcgapError, TargetMismatchError, UsageError, option
from arcgap.transfer.bundlesource import BundleSource
from arcgap.transfer.engine import copy_stream
from arcgap.transfer.source import Contents
from arcgap.util.progress import Reporter


@dataclass
class EngineImportResult:
    """What an import through the engine did: ``images[].digest`` is the digest the target holds after the engine's
    push (re-read through the engine), ``bundle_digest`` the bundle's. No receipt: the engine's push is not
    arcgap's to account for blob by blob."""

    images: list[dict[str, Any]]
    verified_bytes: int
    seconds: float
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "command": "import",
            "engine": "docker",
            "images": self.images,
            "verified_bytes": self.verified_bytes,
            "seconds": round(self.seconds, 3),
            "digests_changed": sum(1 for i in self.images if i["digest"] != i["bundle_digest"]),
            "warnings": self.warnings,
        }


def target_ref(registry: str, repository: str, name: str, tag: str) -> str:
    path = "/".join(x for x in (repository, name) if x)
    return f"{registry}/{path}:{tag}"


def docker_import(reader: BundleReader, client: Any, *, registry: str, repository: str, target_tag: str | None,
                  username: str | None, password: str | None, reporter: Reporter,
                  warn: Callable[[str], None]) -> EngineImportResult:
    t0 = time.monotonic()
    manifest = reader.toc
    if manifest.relies_on:
        raise UsageError(f"a differential bundle ({option('since')}) cannot go through the Docker engine: it lacks the "
                         "layers docker load needs", hint="import it with the default engine")
    targets = {i.ref_name: target_ref(registry, repository, i.name, target_tag or i.tag) for i in manifest.images}
    plat = host_platform()
    warnings = [
        "the Docker engine's classic image store may change digests: layers are re-compressed on push, so "
        "manifest digests at the target can differ from the bundle's (image IDs = config digests stay)"
    ]
    for ref, chosen in chosen_platforms(manifest, plat).items():
        warnings.append(f"{ref}: multi-platform index: only {chosen} is loaded and pushed; the target gets a "
                        "single-platform manifest, not the bundle's index")
    for text in warnings:
        warn(text)

    verified = 0

    def meter(n_bytes: int) -> None:
        nonlocal verified
        verified += n_bytes
        reporter.advance(n_bytes)

    reporter.start(manifest.total_bytes, images=len(manifest.images), label=f"loading {reader.origin} into the engine")
    sink = DockerLoad(client, reader, targets=targets, platform=plat)
    copy_stream(BundleSource(reader), sink, meter=meter)
    reporter.close()
    events = sink.events
    loaded = " ".join(str(e.get("stream", "")) for e in events)

    auth = auth_config(username, password)
    results = []
    for image in manifest.images:  # every image is loaded before the first push
        ref = targets[image.ref_name]
        if ref not in loaded:
            raise docker_engine_error(f"docker load did not report {ref}: {loaded.strip()[:300]}")
    for image in manifest.images:
        ref = targets[image.ref_name]
        reporter.phase(f"pushing {ref} through the engine")
        pushed = push_image(client, ref, auth)
        image_id = client.api.inspect_image(ref)["Id"]
        results.append({"source": image.source, "target": ref, "bundle_digest": str(image.digest),
                        "digest": pushed, "image_id": image_id,
                        "action": "pushed" if pushed == str(image.digest) else "pushed (digest changed)"})
    for record in results:  # the tag check: every tag re-read at the target, through the engine
        check_tag(client, record["target"], record["digest"], auth)
    return EngineImportResult(images=results, verified_bytes=verified, seconds=time.monotonic() - t0,
                              warnings=warnings)


def push_image(client: Any, ref: str, auth: dict[str, str] | None) -> str:
    """``docker push ref`` through the engine; the digest the engine reports for it."""
    repo, _, tag = ref.rpartition(":")
    pushed = None
    try:
        for event in check_events(client.api.push(repo, tag=tag, stream=True, decode=True, auth_config=auth),
                                  what=f"docker push {ref}"):
            aux = event.get("aux")
            if isinstance(aux, dict) and aux.get("Digest"):
                pushed = str(aux["Digest"])
    except ArcgapError:
        raise
    except Exception as exc:  # APIError outside the stream
        raise docker_engine_error(f"docker push {ref}: {exc}") from None
    if pushed is None:
        raise docker_engine_error(f"docker push {ref}: the engine reported no digest")
    return pushed


def check_tag(client: Any, ref: str, expected: str, auth: dict[str, str] | None) -> None:
    """The tag check: the engine asks the target which manifest ``ref`` names; another digest than the push
    reported (another writer, a registry that rewrote it) is an error of its own (exit 10)."""
    try:
        got = client.api.inspect_distribution(ref, auth_config=auth)["Descriptor"]["digest"]
    except (KeyError, TypeError):
        raise docker_engine_error(f"re-reading {ref} through the engine: no digest in its answer") from None
    except Exception as exc:  # APIError: the engine could not ask the registry
        raise docker_engine_error(f"re-reading {ref} through the engine: {exc}") from None
    if got != expected:
        raise TargetMismatchError(f"{ref} resolves to {got} after the push, expected {expected}",
                                  hint="another writer changed the tag, or the registry rewrote the manifest")


class DockerLoad:
    """``docker load`` as a :class:`~arcgap.transfer.sink.StreamSink`: the OCI layout's members, the manifests,
    every other blob as it streams, then a ``manifest.json`` naming each image for the target.

    A failure while reading cuts the upload, so dockerd loads nothing; that failure is raised, not the engine's.
    """

    def __init__(self, client: Any, reader: BundleReader, *, targets: dict[str, str], platform: str) -> None:
        self.client = client
        self.reader = reader
        self.targets = targets
        self.platform = platform
        self.events: list[dict[str, Any]] = []

    def _tar(self, contents: Contents, blobs: Iterator[tuple[BlobEntry, Iterator[bytes]]]) -> Iterator[bytes]:
        for name in (LAYOUT_NAME, INDEX_NAME):
            data = self.reader.layout_files[name]
            yield tarstream.member_header(name, len(data)) + data + tarstream.padding(len(data))
        manifest = contents.toc
        for entry in manifest.blobs:  # read before the stream began: from memory
            data = contents.manifests.get(entry.digest)
            if entry.kind in MANIFEST_KINDS and data is not None:
                yield tarstream.member_header(entry.member, entry.size) + data + tarstream.padding(entry.size)
        for entry, chunks in blobs:
            if entry.kind in MANIFEST_KINDS and entry.digest in contents.manifests:
                for _ in chunks:  # a source that streams its manifests too: already written
                    pass
                continue
            yield tarstream.member_header(entry.member, entry.size)
            yield from chunks
            yield tarstream.padding(entry.size)
        data = docker_load_json(manifest, dict(contents.manifests), wanted_platform=self.platform,
                                    tags=self.targets)
        yield tarstream.member_header(DOCKER_LOAD_INDEX_NAME, len(data)) + data + tarstream.padding(len(data))
        yield tarstream.END_OF_ARCHIVE

    def write(self, contents: Contents, blobs: Iterator[tuple[BlobEntry, Iterator[bytes]]]) -> None:
        failure: list[BaseException] = []

        def stream() -> Iterator[bytes]:
            try:
                yield from self._tar(contents, blobs)
            except BaseException as exc:  # the upload is cut: dockerd loads nothing
                failure.append(exc)
                raise

        try:
            self.events = list(check_events(self.client.api.load_image(stream()), what="docker load"))
        except ArcgapError:
            if failure:
                raise failure[0] from None
            raise
        except Exception as exc:
            if failure:
                raise failure[0] from None
            raise docker_engine_error(f"docker load: {exc}") from None
        if failure:
            raise failure[0]
