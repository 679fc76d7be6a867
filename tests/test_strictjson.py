"""arcgap.oci.strictjson: one table per rule; each bad document next to the good one it differs from."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from arcgap.oci.mediatypes import DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST
from arcgap.oci.strictjson import (
    MAX_CONTAINERS,
    MAX_VALUES,
    StrictJSONError,
    check_config,
    check_manifest,
    loads,
)

D = "sha256:" + "a" * 64
CONFIG = {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": D, "size": 2}
LAYER = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": D, "size": 10}
MANIFEST = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": CONFIG, "layers": [LAYER],
            "annotations": {"Layers": "kept: annotations are a map, their keys are exact"}}
INDEX = {"schemaVersion": 2, "mediaType": OCI_INDEX,
         "manifests": [{"mediaType": OCI_MANIFEST, "digest": D, "size": 5,
                        "platform": {"architecture": "amd64", "os": "linux", "os.features": ["x"]}}]}


def _raw(doc: Any) -> bytes:
    return json.dumps(doc).encode()


# -- the reading itself -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        pytest.param(b"\xef\xbb\xbf" + _raw(MANIFEST), "byte order mark", id="utf8-bom"),
        pytest.param(json.dumps(MANIFEST).encode("utf-16"), "UTF-16 or UTF-32", id="utf16-bom"),
        pytest.param(json.dumps(MANIFEST).encode("utf-16-le"), "UTF-16 or UTF-32", id="utf16-le"),
        pytest.param(json.dumps(MANIFEST).encode("utf-32-be"), "UTF-16 or UTF-32", id="utf32-be"),
        pytest.param(b'{"a": "\xff"}', "not valid UTF-8", id="invalid-utf8"),
        pytest.param(b'{"a": 1, "a": 2}', "duplicate key 'a'", id="duplicate"),
        pytest.param(b'{"x": {"a": 1, "a": 1}}', "duplicate key 'a'", id="duplicate-nested-same-value"),
        pytest.param(b'{"a": NaN}', "NaN is not JSON", id="nan"),
        pytest.param(b'{"a": -Infinity}', "-Infinity is not JSON", id="minus-infinity"),
        pytest.param(b'{"a": Infinity}', "Infinity is not JSON", id="infinity"),
        pytest.param(b'{"a": "\\ud800"}', "lone UTF-16 surrogate", id="lone-high-surrogate"),
        pytest.param(b'{"a": ["\\udc00x"]}', "lone UTF-16 surrogate", id="lone-low-surrogate-in-list"),
        pytest.param(b'{"\\ud800": 1}', "lone UTF-16 surrogate", id="lone-surrogate-key"),
        pytest.param(b"[" * 2000 + b"]" * 2000, "nested too deeply", id="deep"),
        pytest.param(b"[" + b"{}," * MAX_CONTAINERS + b"{}]", "objects and arrays", id="too-many-containers"),
        pytest.param(b"[" + b"1," * (MAX_VALUES + 1) + b"1]", "values", id="too-many-values"),
        pytest.param(b"{not json", "is not JSON", id="not-json"),
        pytest.param(b"", "is not JSON", id="empty"),
        pytest.param(b'{"a": 1' + b"0" * 5000 + b"}", "is not JSON", id="int-over-python-digit-limit"),
    ],
)
def test_loads_refuses(raw: bytes, why: str) -> None:
    with pytest.raises(StrictJSONError, match=re.escape(why)):
        loads(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"a": "\\ud83d\\ude00"}', {"a": "\U0001f600"}),  # a surrogate pair is one character everywhere
        (b'{"a": "\xc3\xa9"}', {"a": "\u00e9"}),
        (b'  {"a": [1, 2.5, true, null]}\n', {"a": [1, 2.5, True, None]}),
        (b"[" + b"{}," * (MAX_CONTAINERS - 2) + b"{}]", [{}] * (MAX_CONTAINERS - 1)),
    ],
)
def test_loads_accepts(raw: bytes, expected: Any) -> None:
    assert loads(raw) == expected


# -- manifests and indexes -----------------------------------------------------------------------------------


def _with(doc: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(doc))
    for key, value in changes.items():
        target = out
        *path, last = key.split("__")
        for part in path:
            target = target[int(part)] if isinstance(target, list) else target[part]
        target[last] = value
    return out


LONG_S, KELVIN = "\u017f", "\u212a"


@pytest.mark.parametrize(
    ("doc", "media_type", "why"),
    [
        # a key Go takes for a spec field without it being the field's exact name (case and Unicode folding)
        pytest.param(_with(MANIFEST, Layers=[]), OCI_MANIFEST, "key 'Layers' is read as 'layers'", id="Layers"),
        pytest.param(_with(MANIFEST, **{"layer" + LONG_S: []}), OCI_MANIFEST, "is read as 'layers'", id="layer-long-s"),
        pytest.param(_with(MANIFEST, MediaType=OCI_MANIFEST), OCI_MANIFEST, "read as 'mediaType'", id="MediaType"),
        pytest.param(_with(MANIFEST, **{LONG_S + "chemaVersion": 2}), OCI_MANIFEST, "read as 'schemaVersion'",
                     id="long-s-schemaVersion"),
        pytest.param(_with(MANIFEST, CONFIG=CONFIG), OCI_MANIFEST, "read as 'config'", id="CONFIG"),
        pytest.param(_with(MANIFEST, Subject=LAYER), OCI_MANIFEST, "read as 'subject'", id="Subject"),
        pytest.param(_with(MANIFEST, ANNOTATIONS={}), OCI_MANIFEST, "read as 'annotations'", id="ANNOTATIONS"),
        pytest.param(_with(MANIFEST, layers__0__Size=11), OCI_MANIFEST, "layers[0]: key 'Size' is read as 'size'",
                     id="descriptor-Size"),
        pytest.param(_with(MANIFEST, config__Digest=D), OCI_MANIFEST, "config: key 'Digest'", id="descriptor-Digest"),
        pytest.param(_with(MANIFEST, config__URLs=[]), OCI_MANIFEST, "read as 'urls'", id="descriptor-URLs"),
        pytest.param(_with(INDEX, Manifests=[]), OCI_INDEX, "read as 'manifests'", id="Manifests"),
        pytest.param(_with(INDEX, manifests__0__platform__OS="linux"), OCI_INDEX, "platform: key 'OS'",
                     id="platform-OS"),
        pytest.param(_with(INDEX, manifests__0__platform__Architecture="arm64"), OCI_INDEX, "read as 'architecture'",
                     id="platform-Architecture"),
        pytest.param(_with(INDEX, manifests__0__platform__VARIANT="v8"), OCI_INDEX, "read as 'variant'",
                     id="platform-VARIANT"),
        pytest.param(_with(INDEX, **{"manifests__0__platform__OS.Version": "1"}), OCI_INDEX,
                     "read as 'os.version'", id="platform-OS.Version"),
        pytest.param(_with(INDEX, manifests__0__Platform={}), OCI_INDEX, "read as 'platform'", id="Platform"),
        pytest.param(_with(INDEX, manifests__0__ArtifactType="x"), OCI_INDEX, "read as 'artifactType'",
                     id="ArtifactType"),
        pytest.param(_with(MANIFEST, layers__0__data="", layers__0__DATA=""), OCI_MANIFEST, "read as 'data'",
                     id="descriptor-DATA"),
        # schemaVersion: present, the integer 2
        pytest.param(_with(MANIFEST, schemaVersion=2.0), OCI_MANIFEST, "not the integer 2", id="schema-2.0"),
        pytest.param(_with(MANIFEST, schemaVersion=1), OCI_MANIFEST, "not the integer 2", id="schema-1"),
        pytest.param(_with(MANIFEST, schemaVersion=True), OCI_MANIFEST, "not the integer 2", id="schema-true"),
        pytest.param(_with(MANIFEST, schemaVersion="2"), OCI_MANIFEST, "not the integer 2", id="schema-string"),
        pytest.param({k: v for k, v in MANIFEST.items() if k != "schemaVersion"}, OCI_MANIFEST, "not the integer 2",
                     id="schema-missing"),
        # integers where the spec says integer, within Go's int64
        pytest.param(_with(MANIFEST, layers__0__size=10.0), OCI_MANIFEST, "size is not an integer", id="size-10.0"),
        pytest.param(_with(MANIFEST, config__size=True), OCI_MANIFEST, "size is not an integer", id="size-bool"),
        pytest.param(_with(MANIFEST, config__size=-1), OCI_MANIFEST, "out of range", id="size-negative"),
        pytest.param(_with(MANIFEST, config__size=2**63), OCI_MANIFEST, "out of range", id="size-2**63"),
        pytest.param(_with(MANIFEST, config__size=None), OCI_MANIFEST, "size is not an integer", id="size-null"),
        # the types Go's structs impose
        pytest.param(_with(MANIFEST, mediaType=None), OCI_MANIFEST, "mediaType is not a string", id="mt-null"),
        pytest.param(_with(MANIFEST, annotations={"a": 1}), OCI_MANIFEST, "not a map of strings", id="annot-int"),
        pytest.param(_with(MANIFEST, layers__0__urls="http://x"), OCI_MANIFEST, "not a list of strings",
                     id="urls-string"),
        pytest.param(_with(INDEX, manifests__0__platform="linux/amd64"), OCI_INDEX, "platform is not an object",
                     id="platform-string"),
        pytest.param(_with(INDEX, manifests__0__platform__features=[1]), OCI_INDEX, "not a list of strings",
                     id="platform-features"),
        pytest.param(_with(MANIFEST, subject="x"), OCI_MANIFEST, "subject is not an object", id="subject-string"),
        # mediaType consistent with the content (OCI image-spec §6.1, §6.2)
        pytest.param(MANIFEST, DOCKER_MANIFEST, "is not the type it is stored as", id="mt-other-than-stored"),
        pytest.param(INDEX, DOCKER_LIST, "is not the type it is stored as", id="index-mt-other-than-stored"),
        pytest.param(_with(INDEX, layers=[]), OCI_INDEX, "an index holds a 'layers' field", id="index-with-layers"),
        pytest.param(_with(INDEX, config=CONFIG), OCI_INDEX, "an index holds a 'config'", id="index-with-config"),
        pytest.param(_with(MANIFEST, manifests=[]), OCI_MANIFEST, "an image manifest holds a 'manifests'",
                     id="manifest-with-manifests"),
        pytest.param([MANIFEST], OCI_MANIFEST, "not a JSON object", id="a-list"),
    ],
)
def test_check_manifest_refuses(doc: Any, media_type: str, why: str) -> None:
    index = media_type in (OCI_INDEX, DOCKER_LIST)
    with pytest.raises(StrictJSONError, match=re.escape(why)):
        check_manifest(loads(_raw(doc)), media_type, index=index)


@pytest.mark.parametrize(
    ("doc", "media_type"),
    [
        (MANIFEST, OCI_MANIFEST),
        ({k: v for k, v in MANIFEST.items() if k != "mediaType"}, OCI_MANIFEST),  # optional in OCI
        (_with(MANIFEST, mediaType=DOCKER_MANIFEST), DOCKER_MANIFEST),
        (INDEX, OCI_INDEX),
        (_with(INDEX, mediaType=DOCKER_LIST), DOCKER_LIST),
        (_with(MANIFEST, config__size=2**63 - 1), OCI_MANIFEST),
        (_with(MANIFEST, layerz=[], Layer=[], x_layers=[]), OCI_MANIFEST),  # unknown fields, not spec fields
        (_with(MANIFEST, annotations={"Layers": "x", "layers": "y", "la\u017fers": "z"}), OCI_MANIFEST),
        (_with(MANIFEST, config__annotations={"Digest": "x"}), OCI_MANIFEST),
        (_with(MANIFEST, **{"\u0130ayers": []}), OCI_MANIFEST),  # U+0130 folds to nothing ASCII in Go
    ],
)
def test_check_manifest_accepts(doc: Any, media_type: str) -> None:
    check_manifest(loads(_raw(doc)), media_type, index=media_type in (OCI_INDEX, DOCKER_LIST))


def test_the_kelvin_sign_folds_to_k() -> None:
    doc = {"schemaVersion": 2, "config": CONFIG, "layers": [], "annotations": {}}
    check_manifest(loads(_raw(doc)), OCI_MANIFEST, index=False)
    config = {"rootfs": {"type": "layers", "diff_ids": []}, "architecture": "amd64", "os": "linux"}
    config["\u212aey"] = "not a spec field: accepted"
    check_config(loads(_raw(config)))
    # "kind" is no spec field either; a Go struct field named "Kind" would match "\u212aind" too
    with pytest.raises(StrictJSONError, match="read as 'architecture'"):
        check_config(loads(_raw({"architecture": "amd64", "ARCHITECTURE": "arm64"})))


# -- image configs -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "why"),
    [
        pytest.param({"architecture": "amd64", "Architecture": "arm64"}, "read as 'architecture'", id="Arch"),
        pytest.param({"os": "linux", "OS": "windows"}, "read as 'os'", id="OS"),
        pytest.param({"rootfs": {"type": "layers", "diff_ids": [], "Diff_IDs": [D]}}, "read as 'diff_ids'",
                     id="rootfs-Diff_IDs"),
        pytest.param({"Rootfs": {}}, "read as 'rootfs'", id="Rootfs"),
        pytest.param({"ro\u017etfs": {}}, None, id="not-a-fold-of-rootfs"),
        pytest.param({"hi\u017ftory": []}, "read as 'history'", id="long-s-history"),
        pytest.param({"architecture": 5}, "architecture is not a string", id="arch-int"),
        pytest.param({"rootfs": []}, "rootfs is not an object", id="rootfs-list"),
        pytest.param({"rootfs": {"diff_ids": [1]}}, "not a list of strings", id="diff-ids-int"),
        pytest.param([], "not a JSON object", id="a-list"),
    ],
)
def test_check_config(doc: Any, why: str | None) -> None:
    if why is None:
        check_config(loads(_raw(doc)))
        return
    with pytest.raises(StrictJSONError, match=why):
        check_config(loads(_raw(doc)))
