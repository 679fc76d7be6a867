"""Stored registry credentials, found the way docker and podman find them.

Reads docker's ``config.json`` (``credHelpers``, ``credsStore``, ``auths``) and containers' ``auth.json``,
runs ``docker-credential-*`` helpers with secrets on stdin only, writes ``config.json`` atomically (0600).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arcgap.errors import AuthError, LocalIOError, UsageError
from arcgap.oci.reference import DOCKER_HUB_NAMES, validate_registry
from arcgap.util.regularfile import read_regular_text
from arcgap.util.secret import Secret

HELPER_TIMEOUT_S = 30.0
DOCKER_HUB_KEY = "https://index.docker.io/v1/"  # docker's key (and helper ServerURL) for Docker Hub
# docker-credential-helpers: Username "<token>" marks Secret as an identity (refresh) token.
_TOKEN_USERNAME = "<token>"
_NOT_FOUND = "credentials not found in native keychain"
_HELPER_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class Credentials:
    """A username with a password, or an identity token (``identity_token=True``); the secret never prints."""

    username: str
    password: Secret
    identity_token: bool = False
    source: str = ""  # where they came from, for messages: "options", "~/.docker/config.json", a helper name


@dataclass(frozen=True)
class _Helper:
    name: str
    config: str  # the config file that names the helper, for hints

    @property
    def program(self) -> str:
        return f"docker-credential-{self.name}"


def lookup_credentials(
    registry: str, *, environ: Mapping[str, str] | None = None, timeout_s: float = HELPER_TIMEOUT_S
) -> Credentials | None:
    """Credentials stored for ``registry`` (host[:port]; Docker Hub by any of its names), or None.

    Order: docker's config (``credHelpers[host]``, else ``credsStore``, else ``auths``), then containers'
    auth files. ``environ`` (default ``os.environ``) supplies DOCKER_CONFIG, HOME, PATH and the rest.
    """
    env = _environment(environ)
    host = _registry_host(registry)
    path = _docker_config_path(env)
    if path is not None:
        shown = _display(path, env)
        config = _read_json(path, shown)
        if config is not None:
            helper = _helper_for(config, host, shown)
            if helper is not None:
                creds = _helper_get(helper, _server_url(registry), env, timeout_s)
            else:
                creds = _from_auths(config, host, shown, scoped_keys=False)
            if creds is not None:
                return creds
    for path in _containers_auth_paths(env):
        shown = _display(path, env)
        data = _read_json(path, shown)
        creds = _from_auths(data, host, shown, scoped_keys=True) if data is not None else None
        if creds is not None:
            return creds
    return None


def store_credentials(
    registry: str,
    creds: Credentials,
    *,
    environ: Mapping[str, str] | None = None,
    timeout_s: float = HELPER_TIMEOUT_S,
) -> str:
    """Store ``creds`` for ``registry`` as ``docker login`` does; returns where they went (for messages)."""
    env = _environment(environ)
    host = _registry_host(registry)
    server_url = _server_url(registry)
    path, shown, config = _config_for_write(env)
    helper = _helper_for(config, host, shown)
    auths = _auths_for_write(config, shown)
    _drop_keys(auths, host)
    secret = creds.password.reveal()
    if helper is not None:
        username = _TOKEN_USERNAME if creds.identity_token else creds.username
        payload = json.dumps({"ServerURL": server_url, "Username": username, "Secret": secret})
        _run_helper(helper, "store", payload, env, timeout_s, secret=secret, missing_ok=False)
        # As docker does: an empty entry records the login, the helper holds the secret.
        auths[server_url] = {}
        _write_config(path, shown, config)
        return helper.program
    entry: dict[str, str] = {}
    if creds.identity_token:
        if creds.username and creds.username != _TOKEN_USERNAME:
            entry["auth"] = _b64(f"{creds.username}:")
        entry["identitytoken"] = secret
    else:
        entry["auth"] = _b64(f"{creds.username}:{secret}")
    auths[server_url] = entry
    _write_config(path, shown, config)
    return shown


def erase_credentials(
    registry: str, *, environ: Mapping[str, str] | None = None, timeout_s: float = HELPER_TIMEOUT_S
) -> bool:
    """Forget the credentials for ``registry`` (helper and ``auths``); True if anything was removed."""
    env = _environment(environ)
    host = _registry_host(registry)
    path = _docker_config_path(env)
    if path is None:
        return False
    shown = _display(path, env)
    config = _read_json(path, shown)
    if config is None:
        return False
    erased = False
    helper = _helper_for(config, host, shown)
    if helper is not None:
        erased = _run_helper(helper, "erase", _server_url(registry), env, timeout_s) is not None
    if _drop_keys(_object(config, "auths", shown), host):
        _write_config(path, shown, config)
        erased = True
    return erased


# --- where things are --------------------------------------------------------------------------------------


def _environment(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    if environ is not None:
        return environ
    env = dict(os.environ)
    env.setdefault("HOME", os.path.expanduser("~"))
    return env


def _docker_config_path(env: Mapping[str, str]) -> Path | None:
    if env.get("DOCKER_CONFIG"):
        return Path(env["DOCKER_CONFIG"]) / "config.json"
    return Path(env["HOME"]) / ".docker" / "config.json" if env.get("HOME") else None


def _containers_auth_paths(env: Mapping[str, str]) -> list[Path]:
    """containers-auth.json(5): REGISTRY_AUTH_FILE alone, else the runtime file, then the config-home file."""
    if env.get("REGISTRY_AUTH_FILE"):
        return [Path(env["REGISTRY_AUTH_FILE"])]
    paths = []
    if env.get("XDG_RUNTIME_DIR"):
        paths.append(Path(env["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    if env.get("XDG_CONFIG_HOME"):
        paths.append(Path(env["XDG_CONFIG_HOME"]) / "containers" / "auth.json")
    elif env.get("HOME"):
        paths.append(Path(env["HOME"]) / ".config" / "containers" / "auth.json")
    return paths


def _display(path: Path, env: Mapping[str, str]) -> str:
    home = env.get("HOME")
    if home:
        with contextlib.suppress(ValueError):
            return "~/" + path.relative_to(home).as_posix()
    return str(path)


# --- names of registries ------------------------------------------------------------------------------------


def _key_host(key: str, *, scoped_keys: bool) -> str | None:
    """docker's ConvertToHostname: 'https://host:5000/v1/' → 'host:5000'; Docker Hub's names → 'docker.io'.

    In containers' auth.json a key without a scheme may name a namespace ('quay.io/org'): with
    ``scoped_keys`` such keys give None, since a lookup by registry must not use a repository's login.
    """
    text = key.strip()
    lowered = text.lower()
    had_scheme = lowered.startswith(("https://", "http://"))
    if had_scheme:
        text = text.split("://", 1)[1]
    host, slash, _ = text.partition("/")
    if scoped_keys and slash and not had_scheme:
        return None
    host = host.lower()
    return "docker.io" if host in DOCKER_HUB_NAMES else host


def _registry_host(registry: str) -> str:
    host = _key_host(registry, scoped_keys=False) or ""
    validate_registry(host)
    return host


def _server_url(registry: str) -> str:
    """What ``docker login`` writes as the ``auths`` key and passes to helpers as ServerURL."""
    text = registry.strip()
    if "://" in text:
        text = text.split("://", 1)[1]
    host = text.split("/", 1)[0]
    return DOCKER_HUB_KEY if host.lower() in DOCKER_HUB_NAMES else host


def _find_key(mapping: Mapping[str, Any], host: str, *, scoped_keys: bool) -> str | None:
    """The key of ``mapping`` for ``host``: the key docker writes if present, else any equivalent spelling."""
    exact = DOCKER_HUB_KEY if host == "docker.io" else host
    if exact in mapping:
        return exact
    for key in mapping:
        if _key_host(key, scoped_keys=scoped_keys) == host:
            return key
    return None


def _drop_keys(auths: dict[str, Any], host: str) -> bool:
    keys = [k for k in auths if _key_host(k, scoped_keys=False) == host]
    for key in keys:
        del auths[key]
    return bool(keys)


# --- reading config files -----------------------------------------------------------------------------------


def _read_json(path: Path, shown: str) -> dict[str, Any] | None:
    """The JSON object in ``path``; None if there is no such file; UsageError (with the line) if malformed."""
    try:
        text = read_regular_text(path)
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        raise UsageError(f"{shown}: not UTF-8 text", hint=f"fix or remove {shown}") from None
    except OSError as exc:
        raise LocalIOError(
            f"cannot read {shown}: {exc.strerror}", hint="check the file's permissions"
        ) from None
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"{shown}:{exc.lineno}: malformed JSON: {exc.msg}",
            hint=f"fix {shown} (or move it away and log in again)",
        ) from None
    if not isinstance(data, dict):
        raise UsageError(
            f"{shown}: expected a JSON object", hint=f"fix {shown} (or move it away and log in again)"
        )
    return data


def _object(config: Mapping[str, Any], name: str, shown: str) -> dict[str, Any]:
    value = config.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UsageError(f"{shown}: {name!r} must be a JSON object", hint=f"fix {shown}")
    return value


def _helper_for(config: Mapping[str, Any], host: str, shown: str) -> _Helper | None:
    helpers = _object(config, "credHelpers", shown)
    key = _find_key(helpers, host, scoped_keys=False)
    name = helpers[key] if key is not None else config.get("credsStore")
    if not name:
        return None
    where = f"credHelpers[{key!r}]" if key is not None else "credsStore"
    if not isinstance(name, str) or not _HELPER_NAME_RE.fullmatch(name):
        raise UsageError(f"{shown}: {where}: invalid credential helper name {name!r}", hint=f"fix {shown}")
    return _Helper(name, shown)


def _from_auths(config: Mapping[str, Any], host: str, shown: str, *, scoped_keys: bool) -> Credentials | None:
    auths = _object(config, "auths", shown)
    key = _find_key(auths, host, scoped_keys=scoped_keys)
    if key is None:
        return None
    entry = auths[key]
    where = f"{shown}: auths[{key!r}]"
    if not isinstance(entry, dict):
        raise UsageError(f"{where} must be a JSON object", hint=f"fix {shown}")
    fields = {}
    for name in ("auth", "username", "password", "identitytoken"):
        value = entry.get(name) or ""
        if not isinstance(value, str):
            raise UsageError(f"{where}.{name} must be a string", hint=f"fix {shown}")
        fields[name] = value
    username, password = fields["username"], fields["password"]
    if fields["auth"]:
        try:
            decoded = base64.b64decode(fields["auth"]).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        username, sep, password = decoded.partition(":")
        if not sep:
            raise UsageError(
                f"{where}.auth is not base64 of 'username:password'", hint=f"fix {shown}, or log in again"
            )
    if fields["identitytoken"]:
        return Credentials(username or _TOKEN_USERNAME, Secret(fields["identitytoken"]), True, shown)
    if not username and not password:
        return None
    return Credentials(username, Secret(password), False, shown)


# --- credential helpers -------------------------------------------------------------------------------------


def _helper_get(
    helper: _Helper, server_url: str, env: Mapping[str, str], timeout_s: float
) -> Credentials | None:
    out = _run_helper(helper, "get", server_url, env, timeout_s)
    if out is None:
        return None
    try:
        doc = json.loads(out)
    except ValueError:
        doc = None
    username = doc.get("Username") if isinstance(doc, dict) else None
    secret = doc.get("Secret") if isinstance(doc, dict) else None
    if not isinstance(username, str) or not isinstance(secret, str):
        # Never quote the output: it may hold the secret.
        raise AuthError(
            f"{helper.program} get returned malformed output for {server_url}",
            hint=f"check that {helper.program} works: echo {server_url} | {helper.program} get",
        )
    if not secret:
        return None
    if username == _TOKEN_USERNAME:
        return Credentials(username, Secret(secret), True, helper.program)
    return Credentials(username, Secret(secret), False, helper.program)


def _run_helper(
    helper: _Helper,
    action: str,
    stdin_text: str,
    env: Mapping[str, str],
    timeout_s: float,
    *,
    secret: str | None = None,
    missing_ok: bool = True,
) -> str | None:
    """Run ``docker-credential-<name> <action>`` with ``stdin_text`` on stdin; its stdout, or None when the
    helper answers "credentials not found" (and ``missing_ok``). Secrets travel on stdin, never in argv."""
    program = helper.program
    path = shutil.which(program, path=env.get("PATH", os.defpath))
    hint = f"install {program}, or change the credential helper named in {helper.config}"
    if path is None:
        raise AuthError(f"credential helper {program} not found on PATH", hint=hint)
    try:
        proc = subprocess.Popen(
            [path, action],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env),
        )
    except OSError as exc:
        raise AuthError(f"cannot run credential helper {program}: {exc.strerror}", hint=hint) from None
    try:
        out, err = proc.communicate(stdin_text.encode(), timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        # Do not wait for EOF: a grandchild may still hold the pipes open.
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
        raise AuthError(
            f"credential helper {program} {action} did not answer within {timeout_s:g} s",
            hint="the helper may be waiting for a locked keychain or a passphrase: unlock it and retry",
        ) from None
    if proc.returncode == 0:
        return out.decode("utf-8", errors="replace")
    text = (out.decode("utf-8", errors="replace") + "\n" + err.decode("utf-8", errors="replace")).strip()
    if missing_ok and _NOT_FOUND in text.lower():
        return None
    detail = text.splitlines()[0][:200] if text else "no message"
    if secret:
        detail = detail.replace(secret, "***")
    raise AuthError(
        f"credential helper {program} {action} failed (exit status {proc.returncode}): {detail}",
        hint=f"check that {program} works on its own, or change the credential helper set in {helper.config}",
    )


# --- writing config.json ------------------------------------------------------------------------------------


def _config_for_write(env: Mapping[str, str]) -> tuple[Path, str, dict[str, Any]]:
    path = _docker_config_path(env)
    if path is None:
        raise LocalIOError(
            "cannot find docker's config directory: neither DOCKER_CONFIG nor HOME is set",
            hint="set DOCKER_CONFIG to a directory for config.json",
        )
    shown = _display(path, env)
    return path, shown, _read_json(path, shown) or {}


def _auths_for_write(config: dict[str, Any], shown: str) -> dict[str, Any]:
    auths = _object(config, "auths", shown)
    config["auths"] = auths
    return auths


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def _write_config(path: Path, shown: str, config: Mapping[str, Any]) -> None:
    """Replace ``path`` atomically (temp file in the same directory, then rename); the file is mode 0600."""
    target = Path(os.path.realpath(path))  # a symlinked config.json stays a symlink, as with docker
    data = (json.dumps(config, indent="\t") + "\n").encode("utf-8")
    tmp: str | None = None
    try:
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".config.json.", dir=target.parent)  # mkstemp creates it 0600
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
        tmp = None
    except OSError as exc:
        raise LocalIOError(
            f"cannot write {shown}: {exc.strerror}", hint="check the directory's permissions"
        ) from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
