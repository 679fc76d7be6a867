"""Every file arcgap writes keeps its syntax whatever the values from the other side hold (bundle and base
names, refs, platforms, created, usernames): a line feed, a carriage return, NEL, a line separator, a '#', a
': ' or a YAML indicator can neither end a header comment nor add a field. Each file is read back by arcgap's
own reader (or the strict YAML/JSON/shell reader) and gives back exactly the values written."""

from __future__ import annotations

import hashlib
import json
import shlex
import subprocess
from dataclasses import replace

import pytest
import yaml

from arcgap.arc import handoff as render
from arcgap.arc.imagelist import parse_image_list
from arcgap.arc.listgen import render_image_list
from arcgap.bundle.format import BaseBundle, TableOfContents
from arcgap.bundle.parts import PartEntry, PartsIndex
from arcgap.bundle.reader import open_bundle
from arcgap.errors import UsageError
from arcgap.oci.digest import Digest
from arcgap.transfer.receipt import Receipt
from arcgap.util.safetext import safe
from arcgap.util.secret import Secret
from tests.test_bundle_rw import CONTENT, _write
from tests.test_receipt import _receipt
from tests.test_split import IDENTITY

HOSTILE = [
    "a\nformat_version: 99",
    "a\rformat: other",
    "a\x85injected: 1",
    "a\u2028injected: 1",
    "a\u2029injected: 1",
    "# not a comment\n- item",
    "name: value",
    "*alias &anchor !!python/object:os.system",
    "'quoted\" \\ back`tick` $(id) ;rm -rf /",
    "\x1b]0;retitled\x07\x1b[2J",
    "zero\u200bwidth\u202ertl",
]


def _yaml_lines_outside_comments(text: str) -> list[str]:
    return [line for line in text.splitlines() if not line.startswith("#")]


def _one_comment_line(text: str) -> None:
    """The header is one comment line; YAML line breaks (LF, CR, NEL, LS, PS) appear nowhere raw after it."""
    head, _, body = text.partition("\n")
    assert head.startswith("# ")
    for brk in ("\r", "\x85", "\u2028", "\u2029"):
        assert brk not in head, repr(head)
    assert not body.startswith((" ", "\t")), body[:80]


@pytest.mark.parametrize("value", HOSTILE)
def test_sidecar(value: str) -> None:
    name = f"{value.replace('/', '_').replace(chr(92), '_')}.tar.zst"  # a plain file name (no / or backslash)
    index = PartsIndex(name, replace(IDENTITY, created=value), (PartEntry(name, 3, hashlib.sha256(b"abc")
                                                                          .hexdigest()),),
                       3, hashlib.sha256(b"abc").hexdigest(), None)
    text = index.to_yaml().decode()
    _one_comment_line(text)
    back = PartsIndex.from_yaml(text.encode(), origin="sidecar")
    assert back.bundle_name == name and back.identity.created == value
    assert list(yaml.safe_load(text)) == ["format", "format_version", "bundle", "split_bytes", "total", "parts"]


@pytest.mark.parametrize("value", HOSTILE)
def test_bundle_manifest(value: str) -> None:
    base = BaseBundle(safe(f"{value}.tar.zst"), Digest.of(b"base"), "bundle", "2026-01-01T00:00:00Z", ())  # as since.py
    manifest = replace(CONTENT.manifest, format_version=2, relies_on=(base,))
    text = manifest.to_yaml().decode()
    _one_comment_line(text)
    doc = yaml.safe_load(text)
    assert doc == manifest.to_dict()  # no field added, every value as written
    assert TableOfContents.from_yaml(text.encode()).relies_on[0].name == base.name


@pytest.mark.parametrize("value", HOSTILE)
def test_receipt(value: str) -> None:
    image = replace(_receipt().images[0], platforms=((f"linux/{value}", Digest.of(b"m")),), source=value)
    receipt = _receipt(bundle_name="arc.tar.zst", bundle_created=value, relied_on=(value,), images=(image,))
    text = receipt.to_yaml().decode()
    _one_comment_line(text)
    assert yaml.safe_load(text) == receipt.to_dict()
    back = Receipt.from_yaml(text.encode(), origin="receipt")
    assert back.images[0].platforms == image.platforms and back.relied_on == (value,)
    assert back.bundle_created == value


@pytest.mark.parametrize("value", HOSTILE)
def test_handoff_values_are_refused_or_written_whole(value: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A username is the only free text in the hand-off files (registry, repository, tag, names are checked):
    one with control or format characters is refused; a printable one is written whole into JSON, YAML and
    the shell scripts' quoted values."""
    try:
        h = render.Handoff(registry="10.0.0.5:5000", repository="arcdata", tag="v1.29.0_2024-04-09",
                           username=value)
    except UsageError:
        assert not value.isprintable()
        return
    assert value.isprintable()
    secret = render.pull_secret_yaml(h, Secret("pw")).decode()
    _one_comment_line(secret)
    doc = yaml.safe_load(secret)
    assert list(doc) == ["apiVersion", "kind", "metadata", "type", "data"]
    assert list(doc["data"]) == [".dockerconfigjson"]
    config = json.loads(render.dockerconfigjson(h.registry, value, Secret("pw")))
    assert config["auths"]["10.0.0.5:5000"]["username"] == value
    for script in (render.dc_config_script(h), render.extension_script(h)):
        path = tmp_path / "s.sh"
        path.write_text(script)
        assert subprocess.run(["sh", "-n", str(path)], capture_output=True).returncode == 0
        assert value not in script or shlex.quote(value) in script  # a free value only ever shell-quoted


@pytest.mark.parametrize("value", [v for v in HOSTILE if not v.isprintable()])
def test_other_names_in_the_handoff_are_refused(value: str) -> None:
    for field in ("registry", "repository", "tag", "secret_name", "namespace"):
        values = dict(registry="10.0.0.5:5000", repository="arcdata", tag="v1", username="u")
        values[field] = value
        with pytest.raises(UsageError):
            render.Handoff(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", HOSTILE)
def test_a_bundle_written_under_a_hostile_name_is_read_back(value: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The sidecar beside a bundle named with a line feed (and the rest) is read by arcgap's own reader; a name
    with a backslash, which that reader refuses, is refused before anything is written."""
    path = tmp_path / f"{value.replace('/', '_')}.tar.zst"
    if "\\" in path.name:
        with pytest.raises(UsageError, match="backslash"):
            _write(path)
        assert list(tmp_path.iterdir()) == []
        return
    _write(path)
    with open_bundle(path) as reader:
        assert reader.toc == CONTENT.manifest


@pytest.mark.parametrize("value", HOSTILE)
def test_image_list(value: str) -> None:
    """``manifests new`` names the list it started from (a path, any characters) in its header comment."""
    source = parse_image_list("format: arcgap-images/v1\nimages:\n  - arc-a\n", origin="t")
    text = render_image_list(source.images, tag="v1.30.0_2024-05-14", registry="mcr.microsoft.com",
                             repository="arcdata", origin=f"manifests/{value}.yaml")
    assert parse_image_list(text, origin="again").images == source.images
    header = text.split("\n\nformat: ")[0]
    assert all(line.startswith("#") for line in header.split("\n"))
    assert not any(brk in header for brk in ("\r", "\x85", "\u2028", "\u2029"))
