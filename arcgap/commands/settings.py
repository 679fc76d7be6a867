"""The seed procedure's ten values: from options, else environment, else a prompt, else the default.

Pure apart from the injected ``prompt``/``secret_prompt`` callables; only the CLI passes real ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from arcgap.commands.options import Prompt, SecretPrompt, SideOptions
from arcgap.errors import UsageError, option, variable
from arcgap.oci.reference import validate_registry, validate_repository, validate_tag
from arcgap.util.secret import Secret

__all__ = ["Endpoint", "Prompt", "SecretPrompt", "collect_endpoint", "env_name", "split_scheme"]


@dataclass(frozen=True)
class Endpoint:
    """One side's values: SOURCE_DOCKER_* or TARGET_DOCKER_*."""

    role: str  # "source" | "target"
    registry: str
    repository: str
    username: str | None
    password: Secret | None
    tag: str | None
    plain_http: bool = False

    def __repr__(self) -> str:
        return (f"Endpoint(role={self.role!r}, registry={self.registry!r}, repository={self.repository!r}, "
                f"username={self.username!r}, password={'***' if self.password else None}, tag={self.tag!r})")


def env_name(role: str, key: str) -> str:
    return f"{role.upper()}_DOCKER_{key.upper()}"


def _first(*values: str | None) -> str | None:
    for v in values:
        if v is not None and v.strip() != "":
            return v.strip()
    return None


def split_scheme(registry: str) -> tuple[str, bool | None]:
    """``http://host:5000`` → (host:5000, plain_http=True); a trailing slash or /v2 path is dropped."""
    plain: bool | None = None
    lowered = registry.lower()
    if lowered.startswith("http://"):
        plain, registry = True, registry[7:]
    elif lowered.startswith("https://"):
        plain, registry = False, registry[8:]
    registry = registry.rstrip("/")
    if registry.endswith("/v2"):
        registry = registry[:-3]
    return registry, plain


def collect_endpoint(
    given: SideOptions,
    *,
    environ: Mapping[str, str],
    defaults: Mapping[str, str | None],
    prompt: Prompt | None,
    secret_prompt: SecretPrompt | None,
) -> Endpoint:
    """Collect registry, repository, username, password and tag for ``given.side``.

    ``given`` holds what the command line gave; an empty environment variable counts as unset; with
    ``prompt`` None (no terminal) nothing is asked: defaults apply and a value without one is an error.
    The password is asked only when a username is set: no username means anonymous access.
    """
    role, options = given.side, given.values()
    password_stdin = given.password.reveal() if given.password else None
    values: dict[str, str | None] = {}
    from_file: set[str] = set()  # values that came from ``defaults`` (a receipt, a bundle): never trusted for TLS
    for key in ("registry", "repository", "username", "tag"):
        value = _first(options.get(key), environ.get(env_name(role, key)))
        if value is None and prompt is not None:
            label = f"{role} {key}" if key != "username" else f"{role} username (empty: anonymous)"
            value = _first(prompt(label, defaults.get(key)))
            if value is not None and value == _first(defaults.get(key)):
                from_file.add(key)
        if value is None:
            value = _first(defaults.get(key))
            if value is not None:
                from_file.add(key)
        values[key] = value
    for key in ("registry", "repository"):
        if values[key] is None:
            raise UsageError(
                f"{variable(f'{role}.{key}')} is not set",
                hint=f"pass {option(f'{role}.{key}')} or set {variable(f'{role}.{key}')}",
            )
    registry, scheme_plain = split_scheme(values["registry"] or "")
    if "registry" in from_file:
        # A value read from a file never weakens transport security: an http:// in a receipt does not switch
        # TLS off (only the command line and the environment can), or preflight would send the password in clear.
        scheme_plain = None
    validate_registry(registry)
    repository = (values["repository"] or "").strip("/")
    validate_repository(repository)
    if values["tag"] is not None:
        validate_tag(values["tag"])
    password: Secret | None = None
    if values["username"] is not None:
        # Passwords are taken verbatim (spaces are legal in them); only an empty value counts as unset.
        raw = next((v for v in (password_stdin, environ.get(env_name(role, "password"))) if v), None)
        if raw is None and secret_prompt is not None:
            raw = secret_prompt(f"{role} password for {values['username']}") or None
        if raw is None:
            raise UsageError(
                f"{variable(role + '.password')} is not set for user {values['username']!r}",
                hint=f"set {variable(role + '.password')}, pipe it with {option('password_stdin')}, or run on a "
                     "terminal",
            )
        password = Secret(raw)
    return Endpoint(
        role=role,
        registry=registry,
        repository=repository,
        username=values["username"],
        password=password,
        tag=values["tag"],
        plain_http=given.plain_http or bool(scheme_plain),
    )
