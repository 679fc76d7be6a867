"""The Docker engine path (``--engine docker``): talk to a local dockerd through the docker SDK.

The ``docker`` package is imported only here, lazily: the default (registry) engine never loads it, so it works
where the package is installed but no engine runs. The SDK does not raise on errors reported *inside* the
streamed events of pull, load and push (``errorDetail``/``error``); :func:`check_events` turns every such event
into an :class:`~arcgap.errors.ArcgapError`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from arcgap.errors import ArcgapError, AuthError, NetworkError, NotFoundError, RegistryError

NO_ENGINE_HINT = ("start the Docker engine, or point DOCKER_HOST at it (default unix:///var/run/docker.sock; "
                  "DOCKER_TLS_VERIFY and DOCKER_CERT_PATH are honoured)")


class DockerEngineError(RegistryError):
    """The engine reported an error (exit 6 unless it names an auth or not-found problem)."""


def connect(environ: Mapping[str, str]) -> Any:
    """A ``docker.DockerClient`` from DOCKER_HOST and the usual docker environment; NetworkError when none answers."""
    try:
        import docker  # lazily: only the engine path needs it
        from docker.errors import DockerException
    except ImportError:  # pragma: no cover - docker is a declared dependency
        raise ArcgapError("the docker Python package is not installed", hint="pip install docker") from None
    where = environ.get("DOCKER_HOST") or "the default socket (unix:///var/run/docker.sock)"
    try:
        client = docker.from_env(environment=dict(environ), timeout=600)
        client.ping()
    except (DockerException, OSError, Exception) as exc:  # requests' ConnectionError, bad DOCKER_HOST, TLS
        raise NetworkError(f"no Docker engine answers at {where}: {_short(exc)}", hint=NO_ENGINE_HINT) from None
    return client


def auth_config(username: str | None, password: Any) -> dict[str, str] | None:
    """The SDK's ``auth_config`` (sent in the X-Registry-Auth header, never on a command line)."""
    if username is None:
        return None
    value = password.reveal() if hasattr(password, "reveal") else (password or "")
    return {"username": username, "password": value}


def check_events(events: Iterable[Any], *, what: str) -> Iterator[dict[str, Any]]:
    """Yield every decoded event; raise on the first ``errorDetail`` or ``error``."""
    for event in events:
        if not isinstance(event, dict):
            continue
        detail = event.get("errorDetail")
        message = (detail.get("message") if isinstance(detail, dict) else None) or event.get("error")
        if detail is not None or event.get("error"):
            raise docker_engine_error(f"{what}: {message or detail}")
        yield event


def docker_engine_error(message: str) -> ArcgapError:
    low = message.lower()
    if any(k in low for k in ("unauthorized", "authentication required", "denied", "no basic auth credentials",
                              "incorrect username or password")):
        return AuthError(message, hint="check the username and password (and that the user may push/pull "
                                       "this repository)")
    if any(k in low for k in ("not found", "manifest unknown", "no such image", "does not exist")):
        return NotFoundError(message, hint="check the image name and tag")
    if any(k in low for k in ("connection refused", "no such host", "i/o timeout", "x509", "tls:",
                              "http response to https client")):
        return NetworkError(message, hint="the engine could not reach the registry; for a private CA put it in "
                                          "/etc/docker/certs.d/HOST:PORT/ca.crt on the engine's machine")
    return DockerEngineError(message, hint="the Docker engine reported this error")


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:300]
