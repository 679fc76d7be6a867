"""Push synthetic images with raw httpx (:class:`devtools.rawclient.RawClient`), independent of arcgap.

- :class:`Pusher` -- blobs (HEAD to skip, cross-repository mount when the blob was pushed elsewhere by this
  pusher, else POST + monolithic PUT, streamed from a file for big layers) and manifests.
- :func:`push_image` -- config + manifest, docker v2 or OCI flavour, optionally indented (non-canonical).
- :func:`push_index` -- a docker manifest list or an OCI index over children pushed by digest.

Manifests are bytes: :attr:`ImageInfo.digest` is the sha256 of exactly the bytes pushed.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol, Union

import httpx

from devtools.layers import BLOCK, Layer, layer_from_bytes
from devtools.rawclient import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    RawClient,
    RegistryHTTPError,
    repo_scope,
)

Flavor = Literal["docker", "oci"]
LayerLike = Union[bytes, Layer]

DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_TYPES: dict[Flavor, dict[str, str]] = {
    "docker": {
        "manifest": DOCKER_MANIFEST,
        "index": DOCKER_MANIFEST_LIST,
        "config": DOCKER_CONFIG,
        "layer": DOCKER_LAYER,
    },
    "oci": {"manifest": OCI_MANIFEST, "index": OCI_INDEX, "config": OCI_CONFIG, "layer": OCI_LAYER},
}
CREATED = "2024-04-09T00:00:00Z"


class HasRawClient(Protocol):
    def raw_client(self) -> RawClient: ...


def sha256_digest(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def _json_bytes(obj: object, indent: int | None) -> bytes:
    if indent is None:
        return json.dumps(obj, separators=(",", ":")).encode()
    return json.dumps(obj, indent=indent).encode()


@dataclass(frozen=True)
class ImageInfo:
    """What was pushed: ``digest`` is sha256 of ``manifest`` (the exact bytes); ``tag`` None = by digest."""

    repository: str
    tag: str | None
    digest: str
    media_type: str
    manifest: bytes = field(repr=False)
    config_digest: str | None = None
    layer_digests: tuple[str, ...] = ()
    children: tuple[ImageInfo, ...] = ()
    platform: dict[str, str] | None = None

    @property
    def ref(self) -> str:
        """``repo:tag`` (or ``repo@digest`` when untagged)."""
        return f"{self.repository}:{self.tag}" if self.tag else f"{self.repository}@{self.digest}"

    @property
    def is_index(self) -> bool:
        return self.media_type in (DOCKER_MANIFEST_LIST, OCI_INDEX)

    def all_digests(self) -> set[str]:
        """Every manifest and blob digest reachable from this image (for completeness checks)."""
        out = {self.digest, *self.layer_digests}
        if self.config_digest:
            out.add(self.config_digest)
        for child in self.children:
            out |= child.all_digests()
        return out


class Pusher:
    """Pushes blobs and manifests to one registry; remembers where each blob went to mount it next time."""

    def __init__(self, registry: HasRawClient) -> None:
        self.client = registry.raw_client()
        self._seen: dict[str, str] = {}  # blob digest -> a repository that has it
        self._lock = threading.Lock()
        self.blobs_uploaded = 0
        self.blobs_mounted = 0

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Pusher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _remember(self, repo: str, digest: str) -> None:
        with self._lock:
            self._seen.setdefault(digest, repo)

    def _start_upload(self, repo: str, digest: str) -> httpx.URL | None:
        """POST an upload (trying a mount first); None when the blob got mounted."""
        with self._lock:
            source = self._seen.get(digest)
        scopes = [repo_scope(repo, "pull,push")]
        path = f"/v2/{repo}/blobs/uploads/"
        if source and source != repo:
            scopes.append(repo_scope(source, "pull"))
            path += f"?mount={digest}&from={source}"
        resp = self.client.request("POST", path, scopes=scopes, headers={"Content-Length": "0"})
        if resp.status_code == 201:
            with self._lock:
                self.blobs_mounted += 1
            return None
        if resp.status_code != 202:
            raise RegistryHTTPError(resp, f"POST upload to {repo}")
        return httpx.URL(self.client.base + "/").join(resp.headers["Location"])

    def _finish_upload(
        self, repo: str, location: httpx.URL, digest: str, body: bytes | Iterator[bytes], size: int
    ) -> None:
        url = location.copy_merge_params({"digest": digest})
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        resp = self.client.request(
            "PUT", url, scopes=[repo_scope(repo, "pull,push")], headers=headers, content=body,
            replayable=isinstance(body, bytes),
        )  # fmt: skip
        if resp.status_code != 201:
            raise RegistryHTTPError(resp, f"PUT blob {digest} to {repo}")
        with self._lock:
            self.blobs_uploaded += 1

    def _push(self, repo: str, digest: str, size: int, body: bytes | Callable[[], Iterator[bytes]]) -> str:
        scopes = [repo_scope(repo, "pull,push")]  # the token the upload needs anyway
        head = self.client.request("HEAD", f"/v2/{repo}/blobs/{digest}", scopes=scopes)
        if head.status_code not in (200, 404):
            raise RegistryHTTPError(head, f"HEAD blob {repo}@{digest}")
        if head.status_code == 200:
            self._remember(repo, digest)
            return digest
        location = self._start_upload(repo, digest)
        if location is not None:
            payload = body if isinstance(body, bytes) else body()
            self._finish_upload(repo, location, digest, payload, size)
        self._remember(repo, digest)
        return digest

    def push_blob(self, repo: str, data: bytes) -> str:
        """Upload ``data`` (HEAD first; mount or POST + PUT); returns its digest."""
        return self._push(repo, sha256_digest(data), len(data), data)

    def push_blob_file(self, repo: str, path: Path, digest: str | None = None) -> str:
        """Upload a file, streamed in 1 MiB pieces (the auth handshake happens on the POST)."""
        path = Path(path)
        if digest is None:
            h = hashlib.sha256()
            with open(path, "rb") as fh:
                for chunk in iter(lambda: fh.read(BLOCK), b""):
                    h.update(chunk)
            digest = f"sha256:{h.hexdigest()}"

        def stream() -> Iterator[bytes]:
            with open(path, "rb") as fh:
                yield from iter(lambda: fh.read(BLOCK), b"")

        return self._push(repo, digest, path.stat().st_size, stream)

    def push_layer(self, repo: str, layer: Layer) -> str:
        if layer.data is not None:
            return self.push_blob(repo, layer.data)
        assert layer.path is not None
        return self.push_blob_file(repo, layer.path, layer.digest)

    def push_manifest(self, repo: str, ref: str, body: bytes, media_type: str) -> str:
        """PUT a manifest by tag or digest; returns sha256 of ``body`` (checked against the registry's)."""
        digest = sha256_digest(body)
        resp = self.client.request(
            "PUT",
            f"/v2/{repo}/manifests/{ref}",
            scopes=[repo_scope(repo, "pull,push")],
            headers={"Content-Type": media_type},
            content=body,
        )
        if resp.status_code != 201:
            raise RegistryHTTPError(resp, f"PUT manifest {repo}:{ref}")
        echoed = resp.headers.get("Docker-Content-Digest")
        if echoed and echoed != digest:
            raise RuntimeError(f"registry computed {echoed} for a manifest whose sha256 is {digest}")
        return digest


def _descriptor(media_type: str, digest: str, size: int, **extra: object) -> dict[str, object]:
    return {"mediaType": media_type, "size": size, "digest": digest, **extra}


def image_config(
    diff_ids: Sequence[str],
    *,
    arch: str,
    os: str,
    variant: str | None = None,
    labels: dict[str, str] | None = None,
) -> bytes:
    """A minimal, docker-loadable image config (canonical JSON, sorted keys)."""
    config: dict[str, object] = {
        "architecture": arch,
        "os": os,
        "created": CREATED,
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Labels": labels or {},
        },
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
        "history": [
            {"created": CREATED, "created_by": f"devtools.synth layer {i}"} for i in range(len(diff_ids))
        ],
    }
    if variant:
        config["variant"] = variant
    return json.dumps(config, sort_keys=True, separators=(",", ":")).encode()


def push_image(
    pusher: Pusher,
    repo: str,
    tag: str | None,
    *,
    layers: Sequence[LayerLike],
    flavor: Flavor = "docker",
    indent: int | None = None,
    arch: str = "amd64",
    os: str = "linux",
    variant: str | None = None,
    labels: dict[str, str] | None = None,
) -> ImageInfo:
    """Push layers, config and manifest; tag it ``tag`` (or push by digest only when ``tag`` is None)."""
    types = MEDIA_TYPES[flavor]
    resolved = [layer if isinstance(layer, Layer) else layer_from_bytes(layer) for layer in layers]
    for layer in resolved:
        pusher.push_layer(repo, layer)
    config = image_config([lyr.diff_id for lyr in resolved], arch=arch, os=os, variant=variant, labels=labels)
    config_digest = pusher.push_blob(repo, config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": types["manifest"],
        "config": _descriptor(types["config"], config_digest, len(config)),
        "layers": [_descriptor(types["layer"], lyr.digest, lyr.size) for lyr in resolved],
    }
    body = _json_bytes(manifest, indent)
    digest = pusher.push_manifest(repo, tag or sha256_digest(body), body, types["manifest"])
    platform = {"architecture": arch, "os": os, **({"variant": variant} if variant else {})}
    return ImageInfo(
        repository=repo,
        tag=tag,
        digest=digest,
        media_type=types["manifest"],
        manifest=body,
        config_digest=config_digest,
        layer_digests=tuple(lyr.digest for lyr in resolved),
        platform=platform,
    )


EMPTY_CONFIG = b"{}"  # an artifact's config (OCI image spec: application/vnd.oci.empty.v1+json)


def push_artifact(pusher: Pusher, repo: str, subject: tuple[str, int, str] | None, artifact_type: str,
                  payload: bytes) -> tuple[str, bytes]:
    """An OCI artifact manifest (the empty config, one layer holding ``payload``) pushed by digest; with ``subject``
    (digest, size, media type) it is a referrer of that manifest. Returns its digest and bytes."""
    pusher.push_blob(repo, EMPTY_CONFIG)
    layer = pusher.push_blob(repo, payload)
    doc: dict[str, object] = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256_digest(EMPTY_CONFIG),
                   "size": len(EMPTY_CONFIG)},
        "layers": [{"mediaType": "application/octet-stream", "digest": layer, "size": len(payload)}],
    }
    if subject is not None:
        doc["subject"] = {"mediaType": subject[2], "digest": subject[0], "size": subject[1]}
    raw = json.dumps(doc).encode()
    digest = sha256_digest(raw)
    pusher.push_manifest(repo, digest, raw, OCI_MANIFEST)
    return digest, raw


def push_index(
    pusher: Pusher,
    repo: str,
    tag: str | None,
    children: Sequence[ImageInfo],
    *,
    flavor: Flavor = "docker",
    indent: int | None = None,
) -> ImageInfo:
    """Push a manifest list (docker) or image index (OCI) over ``children`` (already pushed by digest)."""
    types = MEDIA_TYPES[flavor]
    for child in children:
        if child.repository != repo:
            raise ValueError(f"child {child.ref} is not in {repo}")
    index = {
        "schemaVersion": 2,
        "mediaType": types["index"],
        "manifests": [
            _descriptor(child.media_type, child.digest, len(child.manifest), platform=child.platform or {})
            for child in children
        ],
    }
    body = _json_bytes(index, indent)
    digest = pusher.push_manifest(repo, tag or sha256_digest(body), body, types["index"])
    return ImageInfo(
        repository=repo,
        tag=tag,
        digest=digest,
        media_type=types["index"],
        manifest=body,
        children=tuple(children),
    )
