"""skopeo as an independent oracle: read raw manifests and copy images between test registries.

Commands run inside the registry's network namespace when it has one. Failures raise :class:`SkopeoError`
carrying skopeo's stderr (which may echo a ``--creds`` value: test registries only).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence

from devtools.registries import Endpoint

SKOPEO_BIN = "skopeo"


class SkopeoError(RuntimeError):
    """skopeo exited non-zero; ``stderr`` holds its message."""

    def __init__(self, argv: Sequence[str], done: subprocess.CompletedProcess[bytes]) -> None:
        self.returncode = done.returncode
        self.stderr = done.stderr.decode(errors="replace").strip()
        super().__init__(f"skopeo {argv[0] if argv else ''} failed ({done.returncode}): {self.stderr[-800:]}")


def skopeo_available() -> bool:
    return shutil.which(SKOPEO_BIN) is not None


def run_skopeo(netns: str | None, args: Sequence[str], *, timeout: float = 120.0) -> bytes:
    """Run ``skopeo ARGS`` (in ``netns`` if given); returns stdout or raises :class:`SkopeoError`."""
    argv = [SKOPEO_BIN, *args]
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    done = subprocess.run(argv, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise SkopeoError(list(args), done)
    return done.stdout


def inspect_raw(registry: Endpoint, repo: str, ref: str, *, anonymous: bool = False) -> bytes:
    """``skopeo inspect --raw``: the manifest bytes exactly as the registry serves them."""
    return run_skopeo(
        registry.netns,
        ["inspect", "--raw", *registry.skopeo_args(anonymous=anonymous), registry.docker_ref(repo, ref)],
    )


def copy(
    src: Endpoint,
    src_repo: str,
    src_ref: str,
    dst: Endpoint,
    dst_repo: str,
    dst_ref: str,
    *,
    all_images: bool = True,
    preserve_digests: bool = True,
    src_anonymous: bool = False,
    dst_anonymous: bool = False,
) -> None:
    """``skopeo copy`` registry to registry (both must share a network namespace, or none)."""
    if src.netns != dst.netns:
        raise ValueError("skopeo copy needs both registries in the same network namespace")
    args = ["copy", "--retry-times", "0"]
    if all_images:
        args.append("--all")
    if preserve_digests:
        args.append("--preserve-digests")
    args += src.skopeo_args("src", anonymous=src_anonymous) + dst.skopeo_args("dest", anonymous=dst_anonymous)
    args += [src.docker_ref(src_repo, src_ref), dst.docker_ref(dst_repo, dst_ref)]
    run_skopeo(src.netns, args)
