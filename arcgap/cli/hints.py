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
    "accept_partial_signature", "add", "bundle", "cache_dir", "cache_max_size", "ca_file", "dry_run", "engine",
    "force", "from_local",
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
    if fault == Fault.TLS_EXPIRED:
        insecure = f"--{side}-insecure" if side else "--insecure"
        return ("certificates are checked against this machine's clock (check it with 'date -u'); if the clock is "
                f"right, the registry's operator must renew its certificate ({insecure} skips every check: a last "
                "resort on a network you trust)")
    if fault == Fault.TLS_OTHER_NAME:
        port = detail.registry.rpartition(":")[2] if ":" in detail.registry else ""
        named = next((n for n in detail.names if "*" not in n), "")
        where = f"{env}_REGISTRY" if env else "the registry address"
        use = f" (e.g. {named}:{port})" if named and port.isdigit() else f" (e.g. {named})" if named else ""
        return (f"name the registry in {where} by a name its certificate is issued for{use}, or have the "
                f"certificate reissued for {detail.registry.rpartition(':')[0] or detail.registry}")
    if fault == Fault.SPARSE_INDEX:
        return ("this registry checks that every manifest an index lists is present (distribution 3.1 does by "
                "default) and the bundle lacks some of them: let it accept sparse indexes "
                "(validation.manifests.indexes.platforms: none in its config), or export the image with every "
                "platform it lists; no tag was moved")
    if fault == Fault.STORAGE_FULL:
        return (f"the {side + ' ' if side else ''}registry's storage is full (no space left on its disk): free space "
                "or grow the registry's volume, then run the same command again; no tag was moved")
    if fault == Fault.DIGEST_REFUSED:
        return ("the registry received bytes that do not match the blob's digest: something on the way (a proxy, "
                "the network) changed them; run again, and if it repeats check the proxies in between")
    if fault == Fault.BAD_CONTENT:
        return ("the registry (or a proxy or CDN in front of it) serves bytes that do not match the blob's digest: "
                "report the digest above to the registry's operator; nothing was written from it")
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
    if fault == Fault.TRANSIENT and side == "target" and detail.status == 500:
        # distribution says only "500 UNKNOWN" when its disk is full: the likeliest lasting 500 at a target
        return ("the registry kept answering 500 for the whole retry budget; if its storage may be full (distribution "
                "then says only 500 UNKNOWN), free space or grow its volume and run the same command again: the "
                "blobs it half wrote are uploaded again (its garbage collection removes the rest); otherwise try "
                "again later, or wait longer with --retry-budget SECONDS")
    if fault == Fault.TRANSIENT:
        return ("the registry kept failing for the whole retry budget; try again later (export, import and mirror "
                "wait longer with --retry-budget SECONDS)")
    repository_option = f"--{side or 'target'}-repository"
    if fault == Fault.NO_REPOSITORY:
        return (f"create the repositories named above at the registry first (Amazon ECR: aws ecr create-repository "
                f"--repository-name NAME), or choose another {repository_option}; no blob was sent")
    if fault == Fault.NAME_REFUSED:
        return (f"the registry limits repository names (several allow only a few '/'-separated levels): choose a "
                f"shorter {repository_option}; no blob was sent")
    if fault == Fault.MALFORMED:
        return f"{detail.registry} answers outside the OCI distribution spec; report it to its operator"
    if detail.status:
        codes = f" ({', '.join(detail.codes[:3])})" if detail.codes else ""
        return (f"{detail.registry} refused the request with {detail.status}{codes}, in its own words above; "
                "its log at this time says why")
    return ""
