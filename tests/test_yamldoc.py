"""The one validating reader behind arcgap.yaml, receipts and parts sidecars: typed fields, bounds, hints."""

from __future__ import annotations

from typing import Any

import pytest

from arcgap.bundle.yamldoc import YamlDoc
from arcgap.errors import BundleFormatError, ExitCode

DOC = YamlDoc(hint="H", max_bytes=1000, refused_hint="R", invalid_hint="I", max_text=5, max_int=100, max_items=2)
PLAIN = YamlDoc(hint="H", max_bytes=1000, nonnegative=True)


def _error(reader: YamlDoc, obj: Any, key: str, typ: type) -> BundleFormatError:
    with pytest.raises(BundleFormatError) as info:
        reader.get(obj, key, typ, "o.yaml", "top")
    assert info.value.exit_code == ExitCode.BUNDLE_FORMAT and info.value.hint == "H"
    return info.value


@pytest.mark.parametrize(
    ("reader", "obj", "key", "typ", "message"),
    [
        (DOC, {}, "a", int, "o.yaml: top: missing 'a'"),
        (DOC, [1], "a", int, "o.yaml: top: missing 'a'"),
        (DOC, {"a": True}, "a", int, "o.yaml: top.a: wrong type"),  # a bool is not an int
        (DOC, {"a": "x"}, "a", int, "o.yaml: top.a: wrong type"),
        (DOC, {"a": "toolong"}, "a", str, "o.yaml: top.a: longer than 5 characters"),
        (DOC, {"a": 101}, "a", int, "o.yaml: top.a: 101 is out of range (0 to 100)"),
        (DOC, {"a": -1}, "a", int, "o.yaml: top.a: -1 is out of range (0 to 100)"),
        (DOC, {"a": 10**400}, "a", int, "o.yaml: top.a: a number of 1329 bits is out of range (0 to 100)"),
        (DOC, {"a": [1, 2, 3]}, "a", list, "o.yaml: top.a: more than 2 entries"),
        (PLAIN, {"a": -1}, "a", int, "o.yaml: top.a: negative"),
    ],
)
def test_get_refuses(reader: YamlDoc, obj: Any, key: str, typ: type, message: str) -> None:
    assert _error(reader, obj, key, typ).message == message


def test_get_returns_what_fits() -> None:
    assert DOC.get({"a": 100, "b": "12345", "c": [1, 2]}, "a", int, "o", "top") == 100
    assert DOC.get({"b": "12345"}, "b", str, "o", "top") == "12345"
    assert PLAIN.get({"a": 10**400}, "a", int, "o", "top") == 10**400  # no max_int: only the sign is checked
    assert PLAIN.get({"a": "x" * 5000}, "a", str, "o", "top") == "x" * 5000


@pytest.mark.parametrize(
    ("data", "message", "hint"),
    [
        (b"a: &x 1\nb: *x\n", "o.yaml:1: refused: YAML anchors are not allowed", "R"),
        (b"a: 1\na: 2\n", "o.yaml:2: refused: key 'a' appears twice in one mapping (lines 1 and 2)", "R"),
        (b"a" * 1001, "o.yaml: refused: 1001 bytes, more than the 1000 allowed", "R"),
        (b"a: [1, 2\n", "o.yaml:2: not valid YAML", "I"),
    ],
)
def test_load_refuses_with_the_documents_hints(data: bytes, message: str, hint: str) -> None:
    with pytest.raises(BundleFormatError) as info:
        DOC.load(data, "o.yaml")
    assert (info.value.message, info.value.hint) == (message, hint)
    with pytest.raises(BundleFormatError) as info:
        PLAIN.load(data, "o.yaml")
    assert info.value.hint == "H"  # no hint of its own: the document's


def test_digest() -> None:
    good = "sha256:" + "a" * 64
    assert str(DOC.digest(good, "o", "top")) == good
    with pytest.raises(BundleFormatError, match=r"^o: top: invalid digest 'sha256:x'$"):
        DOC.digest("sha256:x", "o", "top")
