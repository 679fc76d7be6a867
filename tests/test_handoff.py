"""The hand-off's pure rendering (arcgap.arc.handoff): every document parses back, names the fields Microsoft's
documentation uses, and holds the password only where it must."""

from __future__ import annotations

import base64
import json
import shlex

import pytest
import yaml

from arcgap.arc import handoff as render
from arcgap.errors import UsageError
from arcgap.util.secret import Secret

PASSWORD = "p@ss w0rd,=\"'$"  # quotes, spaces, shell and JSON specials
H = render.Handoff(registry="registry.local:5000", repository="mirror/arcdata", tag="v1.43.0_2026-01-13",
                   username="puller")


def test_deployment_profile_values_in_the_patch_file_and_the_fragment() -> None:
    patch = json.loads(json.dumps(render.control_patch(H)))
    assert patch == {"patch": [
        {"op": "replace", "path": "$.spec.docker.registry", "value": "registry.local:5000"},
        {"op": "replace", "path": "$.spec.docker.repository", "value": "mirror/arcdata"},
        {"op": "replace", "path": "$.spec.docker.imageTag", "value": "v1.43.0_2026-01-13"},
        {"op": "replace", "path": "$.spec.docker.imagePullPolicy", "value": "Always"},
        {"op": "replace", "path": "$.spec.credentials.dockerRegistry", "value": "arc-private-registry"},
    ]}
    spec = render.control_fragment(H)["spec"]
    assert spec["docker"] == {"imagePullPolicy": "Always", "imageTag": "v1.43.0_2026-01-13",
                              "registry": "registry.local:5000", "repository": "mirror/arcdata"}
    assert spec["credentials"] == {"dockerRegistry": "arc-private-registry"}


def test_dc_config_script_replaces_each_value_in_the_given_profile() -> None:
    lines = [line for line in render.dc_config_script(H).splitlines() if line.startswith("az ")]
    assert len(lines) == 5
    words = [shlex.split(line) for line in lines]
    assert all(w[:6] == ["az", "arcdata", "dc", "config", "replace", "--path"] and w[7] == "--json-values"
               for w in words)
    assert [w[8] for w in words] == [f"{k}={v}" for k, v in render.docker_values(H).items()]


def test_pull_secret_decodes_to_the_auth_for_the_registry_host() -> None:
    text = render.pull_secret_yaml(H, Secret(PASSWORD)).decode()
    doc = yaml.safe_load(text)
    assert doc["apiVersion"] == "v1" and doc["kind"] == "Secret"
    assert doc["type"] == "kubernetes.io/dockerconfigjson"
    assert doc["metadata"] == {"name": "arc-private-registry"}
    config = json.loads(base64.b64decode(doc["data"][".dockerconfigjson"]))
    assert list(config["auths"]) == ["registry.local:5000"]
    entry = config["auths"]["registry.local:5000"]
    assert entry["username"] == "puller" and entry["password"] == PASSWORD
    assert base64.b64decode(entry["auth"]).decode() == f"puller:{PASSWORD}"
    assert PASSWORD not in text  # only base64 in the manifest, no stray copy in a comment


def test_pull_secret_with_namespace_and_name() -> None:
    h = render.Handoff(registry="10.0.0.5:5000", repository="arcdata", tag="v1", username="u",
                       secret_name="my-pull", namespace="arc")
    doc = yaml.safe_load(render.pull_secret_yaml(h, Secret("x")))
    assert doc["metadata"] == {"name": "my-pull", "namespace": "arc"}
    assert render.control_fragment(h)["spec"]["credentials"] == {"dockerRegistry": "my-pull"}


def test_extension_settings_name_the_registry_and_the_bootstrapper_password_only_protected() -> None:
    config = render.extension_config(H)
    assert config == {
        "Microsoft.CustomLocation.ServiceAccount": "sa-arc-bootstrapper",
        "imageCredentials.registry": "registry.local:5000",
        "imageCredentials.username": "puller",
        "systemDefaultValues.image": "registry.local:5000/mirror/arcdata/arc-bootstrapper:v1.43.0_2026-01-13",
    }
    assert json.loads(render.extension_protected(Secret(PASSWORD))) == {"imageCredentials.password": PASSWORD}
    script = render.extension_script(H)
    assert PASSWORD not in script and "imageCredentials.password" not in script
    create = " ".join(line.rstrip("\\").strip() for line in script.splitlines() if not line.startswith("#"))
    assert "az k8s-extension create" in create and "--extension-type microsoft.arcdataservices" in create
    assert f'--config-file "$here/{render.EXTENSION_CONFIG}"' in create
    assert f'--config-protected-file "$here/{render.EXTENSION_PROTECTED}"' in create


def test_anonymous_registry_has_no_credentials_and_no_secret() -> None:
    h = render.Handoff(registry="registry.local", repository="arcdata", tag="v1", username=None)
    assert render.extension_config(h) == {"Microsoft.CustomLocation.ServiceAccount": "sa-arc-bootstrapper",
                                          "systemDefaultValues.image": "registry.local/arcdata/arc-bootstrapper:v1"}
    assert "--config-protected-file" not in render.extension_script(h)
    with pytest.raises(UsageError):
        render.pull_secret_yaml(h, Secret("x"))


@pytest.mark.parametrize(("tags", "wanted", "chosen"), [
    (["v1.41.0_2025-09-09", "v1.43.0_2026-01-13", "v1.42.0_2025-10-14"], None, "v1.43.0_2026-01-13"),
    (["v1.41.0_2025-09-09", "v1.42.0_2025-10-14"], "v1.41.0_2025-09-09", "v1.41.0_2025-09-09"),
    (["v1", "v1"], None, "v1"),
    (["2024-04", "v1.29.0_2024-04-09"], None, "v1.29.0_2024-04-09"),
])
def test_choose_release(tags: list[str], wanted: str | None, chosen: str) -> None:
    assert render.choose_release(tags, wanted) == chosen


@pytest.mark.parametrize(("tags", "wanted", "text"), [
    ([], None, "no images"),
    (["v1", "v2"], None, "several tags"),
    (["v1.41.0_2025-09-09"], "v1.40.0_2025-08-12", "not among the imported tags"),
])
def test_choose_release_refuses(tags: list[str], wanted: str | None, text: str) -> None:
    with pytest.raises(UsageError, match=text):
        render.choose_release(tags, wanted)


@pytest.mark.parametrize("kwargs", [
    {"pull_policy": "Sometimes"}, {"secret_name": "Arc_Secret"}, {"namespace": "arc ns"}, {"tag": "bad tag"},
    {"registry": "http://x"}, {"repository": "Arc"},
])
def test_bad_values_are_usage_errors(kwargs: dict[str, str]) -> None:
    base = {"registry": "r.local", "repository": "arcdata", "tag": "v1", "username": "u"}
    with pytest.raises(UsageError):
        render.Handoff(**{**base, **kwargs})  # type: ignore[arg-type]


def test_notes_list_the_images_and_never_the_password() -> None:
    refs = [H.image("arc-controller"), H.image("arc-bootstrapper")]
    text = render.notes(H, references=refs, secret_written=True, secret_to_stdout=False)
    assert text.startswith("# Hand-off: Azure Arc data services v1.43.0_2026-01-13 from registry.local:5000/")
    assert f"- `{H.image('arc-bootstrapper')}`" in text and f"- `{H.image('arc-controller')}`" in text
    assert "arcgap preflight" in text and render.CONTROL_PATCH in text and render.PULL_SECRET in text


def test_notes_tell_the_referrers_that_travel_and_how_the_target_finds_them() -> None:
    refs = [H.image("arc-controller")]
    assert "OCI referrers" not in render.notes(H, references=refs, secret_written=True, secret_to_stdout=False)
    note = render.ReferrerNote(kinds=(("application/spdx+json", 1), ("application/vnd.cncf.notary.signature", 2)))
    text = render.notes(H, references=refs, secret_written=True, secret_to_stdout=False, referrers=note)
    assert "3 referrers travel with the release (1 application/spdx+json, 2 application/vnd.cncf.notary." in text
    assert "`arcgap preflight BUNDLE` checks that each is at the target" in text
    placed = render.ReferrerNote(way="fallback tags", placed=4)
    text = render.notes(H, references=refs, secret_written=True, secret_to_stdout=False, referrers=placed)
    assert "4 referrers travel with the release; the registry has no referrers API: each image's fallback tag" in text
    assert render.ReferrerNote(kinds=(("x\x1b[2J", 1),)).to_dict() == {"referrers": 1, "kinds": {"x\x1b[2J": 1},
                                                                      "way": None}
    text = render.notes(H, references=refs, secret_written=True, secret_to_stdout=False,
                        referrers=render.ReferrerNote(kinds=(("x\x1b[2J", 1),)))
    assert "\x1b" not in text  # a kind comes from the bundle: escaped


@pytest.mark.parametrize("name", ["u\nstringData:\n  x: y", "u\x1b]0;t\x07", "u\u200b", " "])
def test_a_username_with_control_characters_is_refused(name: str) -> None:
    """It lands in the pull secret's header comment and JSON: a line feed there would add YAML fields."""
    with pytest.raises(UsageError, match="control or format characters"):
        render.Handoff(registry="registry.local", repository="arcdata", tag="v1", username=name)
