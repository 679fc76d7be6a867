"""A key repeated in one YAML mapping is refused in every document arcgap reads from the other side (PyYAML
alone keeps the last one silently; Go's and other readers may keep the first): arcgap.yaml, a receipt, a parts
sidecar and an image list, each with the key and its lines, with the exit code of a malformed document."""

from __future__ import annotations

from pathlib import Path

import pytest

from arcgap.arc.imagelist import parse_image_list
from arcgap.bundle.format import TOC_NAME, TableOfContents
from arcgap.bundle.parts import PartsIndex
from arcgap.cli import run
from arcgap.errors import BundleFormatError, ExitCode, UsageError
from arcgap.transfer.receipt import Receipt
from arcgap.util import safeyaml
from tests.test_bundle_format import _manifest
from tests.test_receipt import _receipt
from tests.test_split import _index


def _load(text: str) -> object:
    return safeyaml.load(text, max_bytes=10_000, max_nodes=1_000, max_depth=10)


@pytest.mark.parametrize(
    ("text", "why", "line"),
    [
        ("a: 1\nb: 2\na: 3\n", "key 'a' appears twice in one mapping (lines 1 and 3)", 3),
        ("x:\n  - {n: 1, n: 2}\n", "key 'n' appears twice in one mapping (lines 2 and 2)", 2),
        ("yes: 1\ntrue: 2\n", "key True appears twice in one mapping (lines 1 and 2)", 2),  # both are True
        ("1: a\n0x1: b\n", "key 1 appears twice in one mapping (lines 1 and 2)", 2),
        ("a:\n  b: 1\n  b: 1\n", "key 'b' appears twice in one mapping (lines 2 and 3)", 3),  # even the same value
    ],
)
def test_a_repeated_key_is_refused_with_its_lines(text: str, why: str, line: int) -> None:
    with pytest.raises(safeyaml.YamlRefused) as info:
        _load(text)
    assert (info.value.why, info.value.line) == (why, line)


def test_distinct_keys_still_load() -> None:
    assert _load("a: 1\nb: {a: 2}\nc: [{a: 3}, {a: 4}]\n'1': x\n1: y\n") == {
        "a": 1, "b": {"a": 2}, "c": [{"a": 3}, {"a": 4}], "1": "x", 1: "y"}


def _repeat_top_key(data: bytes, key: str, value: str) -> tuple[bytes, int, int]:
    """``data`` with ``key: value`` appended; the line numbers of the first and the repeated key."""
    lines = data.decode().splitlines()
    first = next(n for n, text in enumerate(lines, 1) if text.startswith(f"{key}:"))
    return (data.decode() + f"{key}: {value}\n").encode(), first, len(lines) + 1


def test_arcgap_yaml_with_images_twice_is_refused() -> None:
    data, first, again = _repeat_top_key(_manifest().to_yaml(), "images", "[]")
    with pytest.raises(BundleFormatError) as info:
        TableOfContents.from_yaml(data)
    assert info.value.message == (f"{TOC_NAME}:{again}: refused: key 'images' appears twice in one mapping "
                                  f"(lines {first} and {again})")
    assert info.value.exit_code == ExitCode.BUNDLE_FORMAT


def test_receipt_with_a_repeated_key_is_refused() -> None:
    data, first, again = _repeat_top_key(_receipt().to_yaml(), "blobs", "[]")
    with pytest.raises(BundleFormatError) as info:
        Receipt.from_yaml(data, origin="r.yaml")
    assert info.value.message == (f"r.yaml:{again}: refused: key 'blobs' appears twice in one mapping "
                                  f"(lines {first} and {again})")
    assert info.value.exit_code == ExitCode.BUNDLE_FORMAT


def test_parts_sidecar_with_a_repeated_key_is_refused() -> None:
    data, first, again = _repeat_top_key(_index(bytes(2560), 1000).to_yaml(), "parts", "[]")
    with pytest.raises(BundleFormatError) as info:
        PartsIndex.from_yaml(data, origin="s.parts.yaml")
    assert info.value.message == (f"s.parts.yaml:{again}: refused: key 'parts' appears twice in one mapping "
                                  f"(lines {first} and {again})")
    assert info.value.exit_code == ExitCode.BUNDLE_FORMAT


def test_image_list_with_images_twice_is_refused() -> None:
    text = ("format: arcgap-images/v1\nrelease: v1.29.0_2024-04-09\nregistry: mcr.microsoft.com\n"
            "repository: arcdata\nimages: [arc-dns]\nimages: [arc-controller]\n")
    with pytest.raises(UsageError) as info:
        parse_image_list(text, origin="lists/x.yaml")
    assert info.value.message == "lists/x.yaml:6: duplicate key 'images'"
    assert info.value.exit_code == ExitCode.USAGE


def test_handoff_refuses_a_receipt_with_a_repeated_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, first, again = _repeat_top_key(_receipt().to_yaml(), "images", "[]")
    receipt = tmp_path / "r.yaml"
    receipt.write_bytes(data)
    code = run(["handoff", "--receipt", str(receipt), "-o", str(tmp_path / "out"), "--no-input"])
    err = capsys.readouterr().err
    assert code == ExitCode.BUNDLE_FORMAT, err
    assert err.splitlines()[0] == (f"error: {receipt}: refused: key 'images' appears twice in one mapping "
                                   f"(lines {first} and {again})")
    assert not (tmp_path / "out").exists()
