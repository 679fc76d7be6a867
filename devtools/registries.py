"""Start and stop a real CNCF distribution registry (``docker-registry serve``) for tests, demo and bench.

>>> with start_registry(tmp, tls=True, auth="token") as reg:
...     reg.url, reg.ca_file, reg.skopeo_args()
...     body, media_type = reg.raw_get_manifest("arcdata/arc-dns", "v1")

The registry listens on a free loopback port, stores blobs under ``workdir/storage`` (deletes enabled), logs
to ``workdir/registry.log`` and is terminated (then killed) on exit. Options:

- ``tls``: certificate from a test CA (``ca=`` to share one CA between registries);
- ``auth="htpasswd"``: bcrypt file made by ``htpasswd -B`` (password on stdin, not argv);
- ``auth="token"``: Bearer tokens from :mod:`devtools.tokenserver` (anonymous pull, authenticated push);
- ``netns``: the registry (and its token server) run inside that network namespace.

A second, independent registry implementation: :func:`start_crane_registry` runs go-containerregistry's
``crane registry serve --address 127.0.0.1:PORT [--disk DIR]`` (plain HTTP, no auth; blobs in memory or,
with ``disk=True``, under ``workdir/storage``). The ``crane`` binary is :func:`crane_binary`: ``$ARCGAP_CRANE``,
else ``crane`` on ``PATH``, else :data:`CRANE_DEFAULT` (where ``make crane`` / ``scripts/build-crane.sh`` put it).

:class:`Endpoint` describes any registry (also one not started here, see :meth:`Endpoint.from_url`);
:class:`Registry` adds what :func:`start_registry` knows about the process it started.
"""

from __future__ import annotations

import functools
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Union

import yaml

from devtools.netns import netns_argv
from devtools.pki import CA, make_ca, make_token_signer
from devtools.procs import ManagedProcess, StartupError, free_port, log_tail, wait_until
from devtools.rawclient import RawClient
from devtools.tokenserver import TokenPolicy, TokenServer, TokenServerProcess

AuthMode = Literal["none", "htpasswd", "token"]
SkopeoRole = Literal["", "src", "dest"]
AnyTokenServer = Union[TokenServer, TokenServerProcess]

REGISTRY_BIN = "docker-registry"
CRANE_DEFAULT = Path("/tmp/crane-build/bin/crane")
STARTUP_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Endpoint:
    """How to reach a registry: ``host`` is "127.0.0.1:PORT", ``scheme`` "http" or "https"."""

    host: str
    scheme: str
    ca_file: Path | None
    cert_dir: Path | None  # a directory holding only ca.crt (skopeo --cert-dir, dockerd certs.d layout)
    username: str | None
    password: str | None = field(repr=False)
    auth: str
    netns: str | None

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        ca_file: Path | None = None,
        username: str | None = None,
        password: str | None = None,
        netns: str | None = None,
    ) -> Endpoint:
        """An endpoint for a registry started elsewhere (``auth`` is "unknown")."""
        scheme, _, host = url.rstrip("/").partition("://")
        return cls(host, scheme, ca_file, None, username, password, "unknown", netns)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    def raw_client(self) -> RawClient:
        """A new :class:`RawClient` for this registry (with its credentials); close it when done."""
        return RawClient(
            self.url, ca_file=self.ca_file, username=self.username, password=self.password, netns=self.netns
        )

    @functools.cached_property
    def _client(self) -> RawClient:
        return self.raw_client()

    def close(self) -> None:
        """Close the shared client behind :meth:`raw_get_manifest` / :meth:`list_tags` (if opened)."""
        client = self.__dict__.pop("_client", None)
        if client is not None:
            client.close()

    def raw_get_manifest(self, repo: str, ref: str) -> tuple[bytes, str]:
        """The exact manifest bytes and Content-Type, fetched with httpx (Basic/Bearer handled)."""
        return self._client.get_manifest(repo, ref)

    def list_tags(self, repo: str) -> list[str]:
        """Tags of ``repo``; [] when it does not exist."""
        return self._client.list_tags(repo)

    def ref(self, repo: str, ref: str) -> str:
        """``host/repo:tag`` or ``host/repo@sha256:…``."""
        sep = "@" if ":" in ref else ":"
        return f"{self.host}/{repo}{sep}{ref}"

    def docker_ref(self, repo: str, ref: str) -> str:
        """The skopeo transport reference ``docker://host/repo:tag``."""
        return f"docker://{self.ref(repo, ref)}"

    def skopeo_args(self, role: SkopeoRole = "", *, anonymous: bool = False) -> list[str]:
        """skopeo flags for this registry: TLS verification, ``--cert-dir``, ``--creds``.

        ``role`` "src"/"dest" gives ``skopeo copy``'s ``--src-…``/``--dest-…`` spellings. Credentials on argv
        are acceptable in test oracles only; ``anonymous=True`` sends none (``--no-creds``).
        """
        prefix = f"--{role}-" if role else "--"
        args: list[str] = []
        if self.scheme == "http":
            args.append(f"{prefix}tls-verify=false")
        else:
            args.append(f"{prefix}tls-verify=true")
            if self.cert_dir is not None:
                args += [f"{prefix}cert-dir", str(self.cert_dir)]
        if anonymous:
            args.append(f"{prefix}no-creds")
        elif self.username:
            args += [f"{prefix}creds", f"{self.username}:{self.password}"]
        return args

    def command(self, argv: list[str]) -> list[str]:
        """``argv`` prefixed with ``ip netns exec NS`` when the registry lives in a namespace."""
        return netns_argv(self.netns, argv)


@dataclass(frozen=True)
class Registry(Endpoint):
    """A registry started by :func:`start_registry`."""

    root_dir: Path
    log_file: Path
    config_file: Path
    pid: int
    token_server: AnyTokenServer | None = field(default=None, repr=False, compare=False)

    def log_tail(self, lines: int = 30) -> str:
        return log_tail(self.log_file, lines)


def _htpasswd_file(path: Path, username: str, password: str) -> Path:
    done = subprocess.run(
        ["htpasswd", "-niB", username], input=password + "\n", capture_output=True, text=True, check=True
    )
    line = done.stdout.strip().splitlines()[0]
    path.write_text(line + "\n")
    os.chmod(path, 0o600)
    return path


def registry_config(
    root_dir: Path,
    addr: str,
    *,
    tls: tuple[Path, Path] | None = None,
    htpasswd: Path | None = None,
    token: dict[str, str] | None = None,
) -> dict[str, object]:
    """A distribution 2.x configuration as a dict (write it with :func:`yaml.safe_dump`)."""
    http: dict[str, object] = {
        "addr": addr,
        "secret": secrets.token_hex(16),
        "headers": {"X-Content-Type-Options": ["nosniff"]},
    }
    if tls:
        http["tls"] = {"certificate": str(tls[0]), "key": str(tls[1])}
    config: dict[str, object] = {
        "version": 0.1,
        "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": False}},
        "storage": {
            "filesystem": {"rootdirectory": str(root_dir)},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": http,
        "health": {"storagedriver": {"enabled": False}},
    }
    if htpasswd is not None:
        config["auth"] = {"htpasswd": {"realm": "arcgap-test-registry", "path": str(htpasswd)}}
    elif token is not None:
        config["auth"] = {"token": token}
    return config


@contextmanager
def start_registry(
    workdir: Path,
    *,
    tls: bool = False,
    auth: AuthMode = "none",
    username: str = "arcuser",
    password: str = "arc-secret-pass",
    port: int | None = None,
    bind: str = "127.0.0.1",
    netns: str | None = None,
    ca: CA | None = None,
    timeout: float = STARTUP_TIMEOUT_S,
) -> Iterator[Registry]:
    """Run a distribution registry until the ``with`` block ends; yields its :class:`Registry`."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    pki_dir = workdir / "pki"
    root_dir = workdir / "storage"
    root_dir.mkdir(exist_ok=True)
    log_file = workdir / "registry.log"
    config_file = workdir / "config.yml"
    with ExitStack() as stack:
        ca_file = cert_dir = None
        tls_pair = None
        if tls:
            ca = ca or make_ca(pki_dir)
            extra_ips = [bind] if bind not in ("127.0.0.1", "0.0.0.0") else []
            tls_pair = ca.issue_server_cert(pki_dir, ips=extra_ips, name="registry")
            ca_file = ca.cert_path
            cert_dir = ca.cert_dir(workdir / "certs.d")
        htpasswd = _htpasswd_file(workdir / "htpasswd", username, password) if auth == "htpasswd" else None
        token_server: AnyTokenServer | None = None
        token_cfg = None
        if auth == "token":
            policy = TokenPolicy(make_token_signer(pki_dir), username=username, password=password)
            if netns is None:
                token_server = TokenServer(policy, bind=bind, tls=tls_pair)
            else:
                token_server = TokenServerProcess(
                    policy, workdir / "tokenserver.log", bind=bind, tls=tls_pair, netns=netns, timeout=timeout
                )
            stack.callback(token_server.stop)
            token_cfg = {
                "realm": token_server.realm,
                "service": policy.service,
                "issuer": policy.issuer,
                "rootcertbundle": str(policy.signer.cert_path),
            }
        attempts = 1 if port else 3
        for attempt in range(attempts):
            chosen = port or free_port(bind if netns is None else "127.0.0.1")
            config = registry_config(
                root_dir, f"{bind}:{chosen}", tls=tls_pair, htpasswd=htpasswd, token=token_cfg
            )
            config_file.write_text(yaml.safe_dump(config, sort_keys=False))
            # REGISTRY_* variables override the config file in distribution: never inherit them.
            argv = netns_argv(netns, [REGISTRY_BIN, "serve", str(config_file)])
            proc = ManagedProcess(argv, log_file, drop_env_prefixes=("REGISTRY_",))
            reg = Registry(
                host=f"{bind}:{chosen}",
                scheme="https" if tls else "http",
                ca_file=ca_file,
                cert_dir=cert_dir,
                username=None if auth == "none" else username,
                password=None if auth == "none" else password,
                auth=auth,
                netns=netns,
                root_dir=root_dir,
                log_file=log_file,
                config_file=config_file,
                pid=proc.pid,
                token_server=token_server,
            )
            probe = RawClient(reg.url, ca_file=ca_file, netns=netns, timeout=1.0)
            try:
                ready = wait_until(lambda p=probe: p.ping() in (200, 401), timeout=timeout, alive=proc.alive)
            finally:
                probe.close()
            if ready:
                break
            proc.stop()
            tail = proc.tail()
            if "address already in use" not in tail or attempt == attempts - 1:
                raise StartupError(f"registry on {reg.host} did not answer /v2/ within {timeout}s:\n{tail}")
        stack.callback(proc.stop)
        stack.callback(reg.close)
        yield reg


def crane_binary() -> Path | None:
    """The ``crane`` to run: ``$ARCGAP_CRANE``, ``crane`` on ``PATH``, or :data:`CRANE_DEFAULT`; None if absent."""
    named = os.environ.get("ARCGAP_CRANE")
    if named:
        return Path(named) if os.access(named, os.X_OK) else None
    found = shutil.which("crane")
    if found:
        return Path(found)
    return CRANE_DEFAULT if os.access(CRANE_DEFAULT, os.X_OK) else None


@contextmanager
def start_crane_registry(
    workdir: Path, *, disk: bool = True, crane: Path | None = None, timeout: float = STARTUP_TIMEOUT_S
) -> Iterator[Registry]:
    """Run ``crane registry serve`` (go-containerregistry's registry: plain HTTP, no auth) until the block ends.

    ``disk=True`` keeps blobs under ``workdir/storage`` (``--disk``, created first: crane wants it to exist);
    ``disk=False`` keeps them in the registry's memory. ``config_file`` of the yielded :class:`Registry` holds
    the command line (crane has no configuration file).
    """
    binary = crane or crane_binary()
    if binary is None:
        raise StartupError("crane not found: run 'make crane' (scripts/build-crane.sh) or set ARCGAP_CRANE")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    root_dir = workdir / "storage"
    root_dir.mkdir(exist_ok=True)
    log_file = workdir / "registry.log"
    config_file = workdir / "command.txt"
    for attempt in range(3):
        port = free_port()
        argv = [str(binary), "registry", "serve", "--address", f"127.0.0.1:{port}"]
        if disk:
            argv += ["--disk", str(root_dir)]
        config_file.write_text(" ".join(argv) + "\n")
        proc = ManagedProcess(argv, log_file)
        reg = Registry(
            host=f"127.0.0.1:{port}", scheme="http", ca_file=None, cert_dir=None, username=None, password=None,
            auth="none", netns=None, root_dir=root_dir, log_file=log_file, config_file=config_file, pid=proc.pid,
        )  # fmt: skip
        probe = RawClient(reg.url, timeout=1.0)
        try:
            ready = wait_until(lambda p=probe: p.ping() == 200, timeout=timeout, alive=proc.alive)
        finally:
            probe.close()
        if ready:
            break
        proc.stop()
        tail = proc.tail()
        if "address already in use" not in tail or attempt == 2:
            raise StartupError(f"crane registry on {reg.host} did not answer /v2/ within {timeout}s:\n{tail}")
    try:
        yield reg
    finally:
        reg.close()
        proc.stop()
