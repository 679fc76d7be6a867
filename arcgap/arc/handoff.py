"""The hand-off to the Arc data controller, pure: deployment-profile values, the pull secret and the Arc data
services extension settings for one release at the target registry. No I/O; the password stays a Secret until
the one document that must hold it is rendered.

Field names follow Microsoft's documentation (README, "The operator's month", lists the pages): the data
controller's ``spec.docker.*`` and ``spec.credentials.dockerRegistry`` (control.json / data-controller.yaml), the
``{"patch": [{"op", "path", "value"}]}`` file of ``az arcdata dc config patch``, the ``key=value`` form of
``az arcdata dc config replace --json-values``, and the extension's ``imageCredentials.registry``,
``imageCredentials.username``, ``imageCredentials.password`` (protected) and ``systemDefaultValues.image``.
"""

from __future__ import annotations

import base64
import json
import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import yaml

from arcgap.arc.imagelist import is_release_tag, release_sort_key
from arcgap.errors import UsageError, option, variable
from arcgap.oci.reference import join_repository, validate_registry, validate_repository, validate_tag
from arcgap.util.safetext import safe
from arcgap.util.secret import Secret

DEFAULT_SECRET_NAME = "arc-private-registry"  # the name Microsoft's data-controller.yaml and bootstrapper use
DEFAULT_PULL_POLICY = "Always"  # the value of Microsoft's data-controller.yaml template and built-in profiles
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
BOOTSTRAPPER = "arc-bootstrapper"
BOOTSTRAPPER_SERVICE_ACCOUNT = "sa-arc-bootstrapper"  # Microsoft.CustomLocation.ServiceAccount in the docs

# File names inside the hand-off directory, in the order an operator uses them.
CONTROL_PATCH = "control-patch.json"
CONTROL_FRAGMENT = "control-docker.json"
DC_CONFIG_SCRIPT = "dc-config-replace.sh"
PULL_SECRET = "arc-private-registry.yaml"
EXTENSION_CONFIG = "arc-extension-config.json"
EXTENSION_PROTECTED = "arc-extension-protected.json"
EXTENSION_SCRIPT = "arc-extension-create.sh"
NOTES = "NEXT-STEPS.md"
SECRET_FILES = frozenset({PULL_SECRET, EXTENSION_PROTECTED})  # written 0600, never wider


@dataclass(frozen=True)
class Handoff:
    """What the data controller needs to pull one release from the private registry."""

    registry: str  # host[:port] as the cluster's nodes reach it
    repository: str  # e.g. "arcdata" or "mirror/arcdata"
    tag: str  # the release's tag at the target
    username: str | None  # None: an anonymous registry, no pull secret
    secret_name: str = DEFAULT_SECRET_NAME
    pull_policy: str = DEFAULT_PULL_POLICY
    namespace: str | None = None  # the data controller's namespace, written into the secret when given

    def __post_init__(self) -> None:
        validate_registry(self.registry)
        validate_repository(self.repository)
        validate_tag(self.tag)
        if self.pull_policy not in PULL_POLICIES:
            raise UsageError(f"invalid image pull policy {self.pull_policy!r}",
                             hint=f"one of {', '.join(PULL_POLICIES)}")
        _check_k8s_name(self.secret_name, "pull secret name")
        if self.username is not None and (not self.username.isprintable() or not self.username.strip()):
            # The name lands in the pull secret's header comment, its JSON and the notes: a line feed there
            # would end the comment and let a crafted name add YAML fields Kubernetes would apply.
            raise UsageError(f"the target username '{safe(self.username)}' holds control or format characters",
                             hint="give the registry user's name as the registry knows it")
        if self.namespace is not None:
            _check_k8s_name(self.namespace, "namespace")

    @property
    def bootstrapper_image(self) -> str:
        return f"{self.registry}/{join_repository(self.repository, BOOTSTRAPPER)}:{self.tag}"

    def image(self, name: str) -> str:
        return f"{self.registry}/{join_repository(self.repository, name)}:{self.tag}"


def _check_k8s_name(name: str, what: str) -> None:
    """RFC 1123 label-ish names (what kubectl accepts for secrets and namespaces), so nothing needs quoting."""
    ok = 0 < len(name) <= 253 and name[0].isalnum() and name[-1].isalnum() and all(
        c.islower() or c.isdigit() or c in "-." for c in name)
    if not ok:
        raise UsageError(f"invalid {what} {name!r}", hint="lower-case letters, digits, '-' and '.'")


def choose_release(tags: Iterable[str], wanted: str | None = None) -> str:
    """The release a hand-off is for: ``wanted`` when given (it must be among ``tags``), else the newest release
    tag (``vMAJOR.MINOR.PATCH_DATE``), else the only tag there is."""
    distinct = sorted(set(tags), key=release_sort_key)
    if not distinct:
        raise UsageError("no images to hand off", hint="give a receipt or bundle that lists the release's images")
    if wanted is not None:
        validate_tag(wanted)
        if wanted not in distinct:
            raise UsageError(f"release {wanted} is not among the imported tags ({', '.join(distinct)})",
                             hint=f"give one of those tags with {option('release')}")
        return wanted
    releases = [t for t in distinct if is_release_tag(t)]
    if releases:
        return releases[0]
    if len(distinct) == 1:
        return distinct[0]
    raise UsageError(f"several tags and none is a release tag: {', '.join(distinct)}",
                     hint=f"choose the one the data controller runs with {option('release')} TAG")


# -- the deployment profile (az arcdata dc create / dc config) --------------------------------------------------


def docker_values(h: Handoff) -> dict[str, str]:
    """JSON path → value, in the order of Microsoft's data-controller.yaml."""
    return {
        "spec.docker.registry": h.registry,
        "spec.docker.repository": h.repository,
        "spec.docker.imageTag": h.tag,
        "spec.docker.imagePullPolicy": h.pull_policy,
        "spec.credentials.dockerRegistry": h.secret_name,
    }


def control_patch(h: Handoff) -> dict[str, Any]:
    """The patch file of ``az arcdata dc config patch --path custom/control.json --patch-file FILE``."""
    return {"patch": [{"op": "replace", "path": f"$.{path}", "value": value}
                      for path, value in docker_values(h).items()]}


def control_fragment(h: Handoff) -> dict[str, Any]:
    """The same values as a control.json / DataController ``spec`` fragment (for data-controller.yaml)."""
    return {"spec": {
        "credentials": {"dockerRegistry": h.secret_name},
        "docker": {"imagePullPolicy": h.pull_policy, "imageTag": h.tag, "registry": h.registry,
                   "repository": h.repository},
    }}


def dc_config_script(h: Handoff) -> str:
    """``az arcdata dc config replace`` for each value; the profile path is the script's first argument."""
    lines = [
        "#!/bin/sh",
        f"# arcgap hand-off: point an Arc data controller deployment profile at {h.registry}/{h.repository}, "
        f"release {h.tag}.",
        "# Usage: sh dc-config-replace.sh [PROFILE]   (PROFILE: the control.json of 'az arcdata dc config init', "
        "default custom/control.json)",
        "set -eu",
        'profile="${1:-custom/control.json}"',
    ]
    for path, value in docker_values(h).items():
        lines.append(f'az arcdata dc config replace --path "$profile" --json-values {shlex.quote(f"{path}={value}")}')
    return "\n".join(lines) + "\n"


# -- the Kubernetes pull secret ---------------------------------------------------------------------------------


def dockerconfigjson(registry: str, username: str, password: Secret) -> bytes:
    """``{"auths": {registry: {username, password, auth}}}`` as ``kubectl create secret docker-registry`` writes
    it (``auth`` = base64 of ``username:password``)."""
    auth = base64.b64encode(f"{username}:{password.reveal()}".encode()).decode("ascii")
    doc = {"auths": {registry: {"username": username, "password": password.reveal(), "auth": auth}}}
    return json.dumps(doc, separators=(",", ":")).encode()


def pull_secret_yaml(h: Handoff, password: Secret) -> bytes:
    """The ``kubernetes.io/dockerconfigjson`` Secret manifest. Holds the password: write it 0600 or to stdout."""
    if h.username is None:
        raise UsageError("an anonymous registry needs no pull secret", hint=f"set {variable('target.username')}")
    metadata: dict[str, str] = {"name": h.secret_name}
    if h.namespace is not None:
        metadata["namespace"] = h.namespace
    doc = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64.b64encode(dockerconfigjson(h.registry, h.username, password))
                 .decode("ascii")},
    }
    header = (f"# arcgap hand-off: pull secret for {h.registry} (user {h.username}); holds the password, keep it "
              "0600. Apply with: kubectl apply -n NAMESPACE -f THIS-FILE\n")
    return (header + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=10_000)).encode()


# -- the Arc data services extension (direct connectivity mode) ----------------------------------------------


def extension_config(h: Handoff) -> dict[str, str]:
    """Configuration settings (not secret) for ``az k8s-extension create --config-file``."""
    config = {"Microsoft.CustomLocation.ServiceAccount": BOOTSTRAPPER_SERVICE_ACCOUNT}
    if h.username is not None:
        config["imageCredentials.registry"] = h.registry
        config["imageCredentials.username"] = h.username
    config["systemDefaultValues.image"] = h.bootstrapper_image
    return config


def extension_protected(password: Secret) -> bytes:
    """Protected settings for ``--config-protected-file``: the password, never on a command line."""
    return (json.dumps({"imageCredentials.password": password.reveal()}, indent=2) + "\n").encode()


def extension_script(h: Handoff) -> str:
    """``az k8s-extension create`` for the Arc data services extension, its settings read from the two files."""
    protected = f' --config-protected-file "$here/{EXTENSION_PROTECTED}"' if h.username is not None else ""
    return "\n".join([
        "#!/bin/sh",
        f"# arcgap hand-off: the Arc data services extension (direct connectivity mode) pulling from {h.registry}, "
        f"release {h.tag}.",
        "# Set CLUSTER_NAME, RESOURCE_GROUP and NAMESPACE (the data controller's); EXTENSION_NAME defaults to "
        "arc-data-services.",
        "set -eu",
        'here="$(cd "$(dirname "$0")" && pwd)"',
        'az k8s-extension create --cluster-name "$CLUSTER_NAME" --resource-group "$RESOURCE_GROUP" \\',
        '    --name "${EXTENSION_NAME:-arc-data-services}" --cluster-type connectedClusters \\',
        '    --extension-type microsoft.arcdataservices --scope cluster --release-namespace "$NAMESPACE" \\',
        f'    --config-file "$here/{EXTENSION_CONFIG}"{protected}',
    ]) + "\n"


# -- the notes ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReferrerNote:
    """The release's OCI referrers (signatures, SBOMs, attestations) as the hand-off tells them."""

    kinds: tuple[tuple[str, int], ...] = ()  # (artifactType or "tag:sig" …, how many), from a bundle; () unknown
    way: str | None = None  # how the target lists them ("referrers API", "fallback tags"), when an import said
    placed: int | None = None  # how many the import placed, when an import said

    @property
    def total(self) -> int | None:
        return sum(n for _, n in self.kinds) if self.kinds else self.placed

    def to_dict(self) -> dict[str, Any]:
        return {"referrers": self.total, "kinds": dict(self.kinds), "way": self.way}


def _referrer_lines(note: ReferrerNote | None) -> list[str]:
    if note is None or not note.total:
        return []
    kinds = ", ".join(f"{n} {safe(k)}" for k, n in note.kinds)
    found = {"referrers API": "the registry's referrers API lists them for each image",
             "fallback tags": "the registry has no referrers API: each image's fallback tag `sha256-<hex>` (an "
                              "image index) lists them, as cosign, notation and oras look for it"}.get(note.way or "")
    return [
        "## Signatures, SBOMs and attestations (OCI referrers)",
        "",
        f"{note.total} referrers travel with the release" + (f" ({kinds})" if kinds else "") + "; "
        + (found or "at the target they are found by the referrers API, else by each image's fallback tag "
                    "`sha256-<hex>`") + ". "
        "`arcgap preflight BUNDLE` checks that each is at the target and listed for its image; a signature "
        "policy (Kyverno, Ratify, `cosign verify`, `notation verify`) refuses an image whose signature is not.",
        "",
    ]


def notes(h: Handoff, *, references: Iterable[str], secret_written: bool, secret_to_stdout: bool,
          referrers: ReferrerNote | None = None) -> str:
    """NEXT-STEPS.md: what each file is for and the commands in order; ``references`` are the release's images
    at the target; ``referrers`` what travels with them."""
    refs = sorted(set(references))
    if h.username is None:
        secret = ("The target registry is anonymous: no pull secret is written. The profile still names "
                  f"`{h.secret_name}`; Kubernetes pulls without credentials when that secret does not exist.")
    elif secret_to_stdout:
        secret = (f"The pull secret `{h.secret_name}` went to standard output, as asked: neither it nor "
                  f"`{EXTENSION_PROTECTED}` was written here. Write that file yourself (mode 0600) as "
                  '`{"imageCredentials.password": "…"}` for the extension.')
    elif secret_written:
        secret = (f"`{PULL_SECRET}` (mode 0600) is the pull secret `{h.secret_name}` for user `{h.username}`: "
                  "`kubectl apply -n NAMESPACE -f arc-private-registry.yaml`, then delete or lock away the file.")
    else:
        secret = (f"No pull secret was written (--no-secret): create `{h.secret_name}` for user `{h.username}` "
                  "yourself (`kubectl create secret docker-registry`), and the extension's "
                  f"`{EXTENSION_PROTECTED}` (mode 0600) as `{{\"imageCredentials.password\": \"…\"}}`.")
    lines = [
        f"# Hand-off: Azure Arc data services {h.tag} from {h.registry}/{h.repository}",
        "",
        "Written by `arcgap handoff`. Check the target first: `arcgap preflight RECEIPT-OR-BUNDLE` names any "
        "image that is missing or different (exit 0: every image, every platform, at its digest).",
        "",
        "## 1. Pull secret",
        "",
        secret,
        "",
        "## 2. The Arc data services extension (direct connectivity mode)",
        "",
        "```sh",
        f"CLUSTER_NAME=... RESOURCE_GROUP=... NAMESPACE=arc sh {EXTENSION_SCRIPT}",
        "```",
        "",
        f"`{EXTENSION_CONFIG}` names the registry and `systemDefaultValues.image` = `{h.bootstrapper_image}`; "
        + (f"the password is only in `{EXTENSION_PROTECTED}` (protected setting, mode 0600)."
           if h.username is not None else "the registry is anonymous, so no image credentials are set."),
        "",
        "## 3. The deployment profile and the data controller",
        "",
        "```sh",
        "az arcdata dc config init --source azure-arc-kubeadm --path custom   # or the profile you use",
        f"az arcdata dc config patch --path custom/control.json --patch-file {CONTROL_PATCH}",
        f"# or, value by value: sh {DC_CONFIG_SCRIPT} custom/control.json",
        "az arcdata dc create --name arc-dc --resource-group RG --custom-location CL --connectivity-mode direct "
        "--path ./custom ...",
        "```",
        "",
        "Microsoft retired the indirectly connected mode in September 2025; a site still on it uses the same "
        "profile with `--connectivity-mode indirect --k8s-namespace NAMESPACE --use-k8s`. "
        f"`{CONTROL_FRAGMENT}` holds the same values as a `spec` fragment for a DataController YAML (kubectl "
        f"deployments, with the bootstrapper image `{h.bootstrapper_image}` and "
        f"`imagePullSecrets: [{{name: {h.secret_name}}}]`).",
        "",
        *_referrer_lines(referrers),
        "## Images of this release at the target",
        "",
        *[f"- `{r}`" for r in refs],
        "",
    ]
    return "\n".join(lines)
