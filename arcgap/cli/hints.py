"""The hint for a registry's neutral error: what to check, worded for the side (source or target) whose
registry failed, as the seed procedure names its settings (SOURCE_DOCKER_* / TARGET_DOCKER_*, --source-*);
and :func:`words`, which spells the settings a lower layer's text names as data (:func:`arcgap.errors.option`,
:func:`arcgap.errors.variable`): the one place that knows the options' and the environment variables' names."""

from __future__ import annotations

from arcgap.errors import ArcgapError, Fault, spell

SIDES = ("source", "target")
# A side's settings: --source-ca-file / SOURCE_DOCKER_REGISTRY, and so on.
SIDE_OPTIONS = ("registry", "repository", "username", "tag", "ca_file", "plain_http", "insecure")
SIDE_VARIABLES = ("registry", "repository", "username", "password", "tag")
# Settings that belong to no side: the neutral key → the option's name.
OPTIONS = {key: "--" + key.replace("_", "-") for key in (
    "add", "bundle", "cache_dir", "cache_max_size", "ca_file", "dry_run", "engine", "force", "from_local",
    "from_release", "handoff", "help", "image", "images", "installer_platform", "installer_python", "json",
    "no_cache", "no_secret", "no_space_check", "output", "password_stdin", "plain_http", "platform", "receipt",
    "release", "since", "sign", "skip_missing", "split_size", "to_release", "username", "verify_key",
    "with_installer",
)}  # fmt: skip
VARIABLES = {"sign.passphrase": "ARCGAP_KEY_PASSPHRASE", "debug": "ARCGAP_DEBUG"}


def word(kind: str, key: str) -> str:
    """The command line's name for a setting; KeyError for a key nobody defined (a test keeps them defined)."""
    side, _, name = key.partition(".")
    if kind == "option":
        if side in SIDES and name in SIDE_OPTIONS:
            return f"--{side}-{name.replace('_', '-')}"
        return OPTIONS[key]
    if side in SIDES and name in SIDE_VARIABLES:
        return f"{side.upper()}_DOCKER_{name.upper()}"
    return VARIABLES[key]


def _word_or_key(kind: str, key: str) -> str:
    try:
        return word(kind, key)
    except KeyError:  # a key without a name must not cost the user the error line: show the key
        return key


def words(text: str) -> str:
    """``text`` as the user reads it: each setting named as data spelled as its option or variable."""
    return spell(text, _word_or_key)


def hint_for(exc: ArcgapError) -> str:
    """The error's own hint; else, for a registry's error, what to check on its side; else nothing."""
    if exc.hint or exc.detail is None:
        return words(exc.hint)
    detail, side = exc.detail, exc.side
    env = f"{side.upper()}_DOCKER" if side else None
    fault = detail.fault
    if fault in (Fault.TLS_UNTRUSTED, Fault.TLS_HANDSHAKE):
        ca, plain = (f"--{side}-ca-file", f"--{side}-plain-http") if side else ("--ca-file", "--plain-http")
        return (f"give the registry's CA with {ca} (or put it in /etc/docker/certs.d/{detail.registry}/ca.crt); "
                f"use {plain} if the registry speaks plain HTTP")
    if fault == Fault.UNREACHABLE:
        return f"check {env}_REGISTRY and the network path to it" if env else \
            f"check the address of {detail.registry} and the network path to it"
    if fault == Fault.NOT_A_REGISTRY:
        return f"check {env}_REGISTRY" if env else "check the registry's name and port"
    if fault == Fault.UNAUTHORIZED:
        return f"check {env}_USERNAME and {env}_PASSWORD" if env else "check the username and password"
    if fault == Fault.CREDENTIALS:
        who = f"{env}_USERNAME and {env}_PASSWORD" if env else "the username and password"
        return f"check {who} (or your docker login for {detail.registry})"
    if fault == Fault.DENIED:
        return f"the {side} user lacks permission on this repository" if side else \
            "the user lacks permission on this repository"
    if fault == Fault.NOT_FOUND:
        return f"check the image name and {env}_TAG" if env else "check the image name and tag"
    if fault == Fault.TRANSIENT:
        return "the registry keeps failing; try again later"
    repository_option = f"--{side or 'target'}-repository"
    if fault == Fault.NO_REPOSITORY:
        return (f"create the repositories named above at the registry first (Amazon ECR: aws ecr create-repository "
                f"--repository-name NAME), or choose another {repository_option}; no blob was sent")
    if fault == Fault.NAME_REFUSED:
        return (f"the registry limits repository names (several allow only a few '/'-separated levels): choose a "
                f"shorter {repository_option}; no blob was sent")
    if fault == Fault.MALFORMED:
        return f"{detail.registry} answers outside the OCI distribution spec; report it to its operator"
    return ""
