"""Compare image digests at two registries, read independently of arcgap with ``skopeo inspect --raw``.

The digest of a manifest is the sha256 of the exact bytes the registry serves; for an index each child
manifest (by digest) is read and compared too. Credentials reach skopeo through an ``--authfile`` (mode
0600), never its command line; TLS trust through ``--cert-dir`` (a directory holding only ``ca.crt``).
Commands run inside the registry's network namespace when it has one.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from devtools.registries import Endpoint
from devtools.skopeo import SkopeoError, run_skopeo

INDEX_TYPES = (
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
)


def write_authfile(path: Path, host: str, username: str, password: str) -> Path:
    """A containers ``auth.json`` holding one login (written 0600 before the secret goes in)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    with os.fdopen(fd, "w") as fh:
        json.dump({"auths": {host: {"auth": token}}}, fh)
    return path


class ManifestReader:
    """``skopeo inspect --raw`` against one registry; credentials from an authfile, if the endpoint has any."""

    def __init__(self, endpoint: Endpoint, authfile_dir: Path) -> None:
        self.endpoint = endpoint
        self.args: list[str] = []
        if endpoint.scheme == "http":
            self.args.append("--tls-verify=false")
        else:
            self.args.append("--tls-verify=true")
            if endpoint.cert_dir is not None:
                self.args += ["--cert-dir", str(endpoint.cert_dir)]
        if endpoint.username:
            host_id = endpoint.host.replace(":", "_")
            authfile = write_authfile(
                authfile_dir / f"skopeo-auth-{host_id}.json", endpoint.host, endpoint.username,
                endpoint.password or "",
            )  # fmt: skip
            self.args += ["--authfile", str(authfile)]
        else:
            self.args.append("--no-creds")

    def raw(self, repo: str, ref: str) -> bytes:
        """The manifest bytes exactly as served for ``repo:tag`` or ``repo@sha256:…``."""
        return run_skopeo(
            self.endpoint.netns, ["inspect", "--raw", *self.args, self.endpoint.docker_ref(repo, ref)], timeout=60
        )

    def digest(self, repo: str, ref: str) -> tuple[str | None, bytes | None, str]:
        """``(digest, raw, "")``, or ``(None, None, error)`` when skopeo fails."""
        try:
            raw = self.raw(repo, ref)
        except SkopeoError as exc:
            return None, None, exc.stderr.splitlines()[-1] if exc.stderr else str(exc)
        return "sha256:" + hashlib.sha256(raw).hexdigest(), raw, ""


@dataclass(frozen=True)
class DigestRow:
    """One compared manifest: a top-level image (``platform`` "") or one platform child of an index."""

    image: str
    platform: str
    source: str | None
    target: str | None
    error: str = ""

    @property
    def match(self) -> bool:
        return self.source is not None and self.source == self.target

    @property
    def label(self) -> str:
        return f"{self.image} [{self.platform}]" if self.platform else self.image


def _children(raw: bytes) -> list[tuple[str, str]]:
    """``(digest, "os/arch[/variant]")`` of an index's manifests; [] for a single manifest."""
    try:
        doc = json.loads(raw)
    except ValueError:
        return []
    if not isinstance(doc, dict) or (doc.get("mediaType") not in INDEX_TYPES and "manifests" not in doc):
        return []
    out: list[tuple[str, str]] = []
    for m in doc.get("manifests") or []:
        p = m.get("platform") or {}
        plat = "/".join(x for x in (p.get("os"), p.get("architecture"), p.get("variant")) if x) or "unknown"
        out.append((str(m.get("digest")), plat))
    return out


def compare_images(
    source: ManifestReader,
    source_repo: str,
    target: ManifestReader,
    target_repo: str,
    names: Sequence[str],
    tag: str,
    *,
    threads: int = 4,
) -> list[DigestRow]:
    """Rows for every image (``<repo>/<name>:<tag>`` on both sides) and every child of an index."""

    def one(name: str) -> list[DigestRow]:
        src, src_raw, src_err = source.digest(f"{source_repo}/{name}", tag)
        dst, _, dst_err = target.digest(f"{target_repo}/{name}", tag)
        rows = [DigestRow(name, "", src, dst, "; ".join(e for e in (src_err, dst_err) if e))]
        for child, plat in _children(src_raw or b""):
            c_src, _, c_src_err = source.digest(f"{source_repo}/{name}", child)
            c_dst, _, c_dst_err = target.digest(f"{target_repo}/{name}", child)
            rows.append(DigestRow(name, plat, c_src, c_dst, "; ".join(e for e in (c_src_err, c_dst_err) if e)))
        return rows

    with ThreadPoolExecutor(max_workers=max(threads, 1)) as pool:
        return [row for rows in pool.map(one, names) for row in rows]


def format_table(rows: Sequence[DigestRow], *, width: int = 19) -> str:
    """A plain-text table: image, source digest, target digest, match (digests cut to ``width``: sha256 + 12 hex)."""

    def short(d: str | None) -> str:
        return "(missing)" if d is None else d[:width]

    label_w = max([len("image"), *(len(r.label) for r in rows)])
    header = f"{'image':<{label_w}}  {'source digest':<{width}}  {'target digest':<{width}}  match"
    lines = [header, "-" * len(header)]
    for r in rows:
        mark = "yes" if r.match else "NO"
        lines.append(f"{r.label:<{label_w}}  {short(r.source):<{width}}  {short(r.target):<{width}}  {mark}")
        if r.error:
            lines.append(f"{'':<{label_w}}  ! {r.error}")
    return "\n".join(lines)
