"""Start and stop a private Docker engine (Debian's ``dockerd``) for tests: its own data root, socket and pidfile.

>>> with start_dockerd(tmp) as engine:
...     engine.host            # "unix:///tmp/.../docker.sock" (give it as DOCKER_HOST)
...     engine.docker(["image", "ls"])

Started as ``dockerd --data-root D --exec-root E --pidfile P --host unix://SOCK --storage-driver vfs
--iptables=false --ip6tables=false --bridge=none`` (see the field notes): no containers run, but pull, push,
save, load and tag work. It trusts ``/etc/docker/certs.d/HOST:PORT/ca.crt`` (:func:`trust_ca`) and treats
127.0.0.0/8 as an insecure (plain HTTP) registry.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from devtools.procs import ManagedProcess, StartupError, wait_until

DOCKERD_BIN = "dockerd"
STARTUP_TIMEOUT_S = 30.0
CERTS_D = Path("/etc/docker/certs.d")


@dataclass(frozen=True)
class Dockerd:
    socket: Path
    data_root: Path
    log_file: Path
    pid: int

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    def docker(self, argv: list[str], *, input: bytes | None = None, check: bool = True,
               timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
        """Run the docker CLI against this engine."""
        return subprocess.run(["docker", "-H", self.host, *argv], input=input, capture_output=True,
                              check=check, timeout=timeout)


def dockerd_usable() -> tuple[bool, str]:
    if shutil.which(DOCKERD_BIN) is None:
        return False, "dockerd is not installed (apt-get install docker.io)"
    if os.geteuid() != 0:
        return False, "dockerd needs root"
    return True, ""


@contextmanager
def start_dockerd(workdir: Path) -> Iterator[Dockerd]:
    """Start dockerd under ``workdir`` (its socket in a short temp dir: unix socket paths are limited)."""
    workdir.mkdir(parents=True, exist_ok=True)
    sockdir = Path(tempfile.mkdtemp(prefix="arcgap-dockerd-"))
    sock = sockdir / "docker.sock"
    log = workdir / "dockerd.log"
    argv = [DOCKERD_BIN, "--data-root", str(workdir / "data"), "--exec-root", str(sockdir / "exec"),
            "--pidfile", str(sockdir / "docker.pid"), "--host", f"unix://{sock}", "--storage-driver", "vfs",
            "--iptables=false", "--ip6tables=false", "--bridge=none"]
    proc = ManagedProcess(argv, log, drop_env_prefixes=("DOCKER_",))
    try:
        def ready() -> bool | None:
            if not sock.exists():
                return None
            done = subprocess.run(["docker", "-H", f"unix://{sock}", "version", "--format", "{{.Server.Version}}"],
                                  capture_output=True, timeout=10)
            return True if done.returncode == 0 else None

        if wait_until(ready, timeout=STARTUP_TIMEOUT_S, interval=0.1, alive=proc.alive) is None:
            why = "exited" if not proc.alive() else f"did not answer within {STARTUP_TIMEOUT_S} s"
            raise StartupError(f"dockerd {why}: {proc.tail()}")
        yield Dockerd(sock, workdir / "data", log, proc.pid)
    finally:
        proc.stop(grace=10.0)
        shutil.rmtree(sockdir, ignore_errors=True)


@contextmanager
def trust_ca(host: str, ca_file: Path) -> Iterator[Path]:
    """Make dockerd trust ``ca_file`` for registry ``host`` (HOST:PORT) via certs.d; removed afterwards."""
    d = CERTS_D / host
    d.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ca_file, d / "ca.crt")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)
