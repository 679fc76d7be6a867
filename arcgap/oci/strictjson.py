"""One strict reading of JSON for manifests, indexes, configs and layout files (pure, no I/O).

A document is accepted only if every reader a registry or client may use (Go's ``encoding/json``, Python's
``json``, JavaScript's ``JSON.parse``) reads it the same way: UTF-8 without a byte order mark, no duplicate
keys, no NaN/Infinity, no lone surrogate (Go replaces it with U+FFFD), no key that Go would match to a spec field
without being its exact name (Go matches case-insensitively with Unicode simple folding: ``Layers``, ``layerſ``,
``\u212aey``), integers where the spec says integer, and no more containers than :data:`MAX_CONTAINERS` (checked
on the bytes before parsing, so memory stays bounded whatever the document holds).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

MAX_CONTAINERS = 50_000  # objects and arrays in one document (a 1,024-layer manifest has ~3,000)
MAX_VALUES = 400_000  # commas and colons in one document: bounds the scalars a parse creates
MAX_CONFIG_BYTES = 8 * 1024 * 1024  # an image config read whole (a large one is a few hundred KiB)
CONFIG_MEDIA_TYPES = frozenset({"application/vnd.oci.image.config.v1+json",
                                "application/vnd.docker.container.image.v1+json"})  # artifacts' configs: any bytes
MAX_INT = 2**63 - 1  # Go's int64: sizes beyond it are refused
_SURROGATE = re.compile("[\ud800-\udfff]")


class StrictJSONError(ValueError):
    """The document would not read the same everywhere; the message says why (without quoting much of it)."""


def _fold(text: str) -> str:
    """Go's simple case folding, as far as it maps onto ASCII (the spec's field names are ASCII):
    U+212A KELVIN SIGN folds to ``k`` and U+017F LONG S to ``s``; no other non-ASCII character folds to ASCII."""
    return text.translate(_FOLDS).lower()  # str.lower maps U+212A to "k" already; U+0130 stays non-ASCII


_FOLDS = str.maketrans({"\u017f": "s"})


def _excerpt(text: str) -> str:
    return ascii(text[:40])


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for key, value in pairs:
        if key in doc:
            raise StrictJSONError(f"duplicate key {_excerpt(key)}")
        doc[key] = value
    return doc


def _constant(name: str) -> Any:
    raise StrictJSONError(f"{name} is not JSON")


def _walk_strings(value: Any) -> None:
    """Refuse lone surrogates anywhere (keys and values); iterative, so depth costs no stack."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                raise StrictJSONError("a string holds a lone UTF-16 surrogate (\\ud800-\\udfff)")
        elif isinstance(item, dict):
            for key, child in item.items():
                if _SURROGATE.search(key):
                    raise StrictJSONError("a key holds a lone UTF-16 surrogate (\\ud800-\\udfff)")
                stack.append(child)
        elif isinstance(item, list):
            stack.extend(item)


def loads(raw: bytes) -> Any:
    """Parse ``raw`` the strict way, or raise :class:`StrictJSONError`."""
    if raw.startswith(b"\xef\xbb\xbf"):
        raise StrictJSONError("starts with a UTF-8 byte order mark")
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in raw[:4]:
        raise StrictJSONError("is UTF-16 or UTF-32, not UTF-8")
    containers = raw.count(b"{") + raw.count(b"[")
    if containers > MAX_CONTAINERS:
        raise StrictJSONError(f"more than {MAX_CONTAINERS} objects and arrays")
    if raw.count(b",") + raw.count(b":") > MAX_VALUES:
        raise StrictJSONError(f"more than {MAX_VALUES} values")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StrictJSONError(f"is not valid UTF-8 (at byte {exc.start})") from None
    try:
        doc = json.loads(text, object_pairs_hook=_pairs, parse_constant=_constant)
    except StrictJSONError:
        raise
    except RecursionError:
        raise StrictJSONError("nested too deeply") from None
    except ValueError as exc:  # json.JSONDecodeError, and int strings over Python's digit limit
        raise StrictJSONError(f"is not JSON ({str(exc)[:100]})") from None
    _walk_strings(doc)
    return doc


# -- the spec's struct fields, level by level ----------------------------------------------------------------

# OCI image-spec specs-go/v1 and distribution's schema2/manifestlist: one set per level, the union of both
MANIFEST_FIELDS = ("schemaVersion", "mediaType", "artifactType", "config", "layers", "subject", "annotations",
                   "manifests")
DESCRIPTOR_FIELDS = ("mediaType", "digest", "size", "urls", "annotations", "data", "artifactType", "platform")
PLATFORM_FIELDS = ("architecture", "os", "os.version", "os.features", "variant", "features")
CONFIG_FIELDS = ("created", "author", "architecture", "os", "os.version", "os.features", "variant", "config",
                 "rootfs", "history")
ROOTFS_FIELDS = ("type", "diff_ids")
LAYOUT_FIELDS = ("imageLayoutVersion",)


def check_fields(doc: Mapping[str, Any], fields: Iterable[str], where: str) -> None:
    """Refuse a key Go would take for one of ``fields`` without it being that field's exact name."""
    folded = {f.lower(): f for f in fields}
    for key in doc:
        name = folded.get(_fold(key))
        if name is not None and name != key:
            raise StrictJSONError(f"{where}key {_excerpt(key)} is read as {name!r} by Go readers (case-insensitive)")


def check_int(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise StrictJSONError(f"{where} is not an integer")
    if value < 0 or value > MAX_INT:
        raise StrictJSONError(f"{where} is out of range (0 to 2**63-1)")
    return value


def _check_strings(value: Any, where: str) -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise StrictJSONError(f"{where} is not a list of strings")


def _check_annotations(value: Any, where: str) -> None:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise StrictJSONError(f"{where} is not a map of strings")


def _check_typed(doc: Mapping[str, Any], where: str) -> None:
    """Types Go's structs impose on the fields present (a null is refused: Go reads it as absent)."""
    for key, value in doc.items():
        at = f"{where}{key}"
        if key in ("mediaType", "artifactType", "digest", "data", "architecture", "os", "os.version", "variant"):
            if not isinstance(value, str):
                raise StrictJSONError(f"{at} is not a string")
        elif key == "size":
            check_int(value, at)
        elif key in ("urls", "os.features", "features"):
            _check_strings(value, at)
        elif key == "annotations":
            _check_annotations(value, at)


def check_descriptor(obj: Any, where: str) -> None:
    if not isinstance(obj, dict):
        raise StrictJSONError(f"{where} is not an object")
    check_fields(obj, DESCRIPTOR_FIELDS, f"{where}: ")
    _check_typed(obj, f"{where}.")
    platform = obj.get("platform")
    if platform is not None or "platform" in obj:
        if not isinstance(platform, dict):
            raise StrictJSONError(f"{where}.platform is not an object")
        check_fields(platform, PLATFORM_FIELDS, f"{where}.platform: ")
        _check_typed(platform, f"{where}.platform.")


def check_manifest(doc: Any, media_type: str, *, index: bool) -> None:
    """An image manifest or index (OCI or Docker v2): fields, types, ``schemaVersion`` 2 and the media type
    its bytes declare against ``media_type`` (OCI image-spec §6.1, §6.2)."""
    if not isinstance(doc, dict):
        raise StrictJSONError("not a JSON object")
    check_fields(doc, MANIFEST_FIELDS, "")
    version = doc.get("schemaVersion")
    if not isinstance(version, int) or isinstance(version, bool) or version != 2:
        raise StrictJSONError(f"schemaVersion is {_excerpt(json.dumps(version))}, not the integer 2")
    _check_typed(doc, "")
    own = doc.get("mediaType")
    if own is not None and own != media_type:
        raise StrictJSONError(f"its mediaType {_excerpt(own)} is not the type it is stored as ({media_type})")
    wrong = ("config", "layers") if index else ("manifests",)
    present = [k for k in wrong if k in doc]
    if present:
        kind = "an index" if index else "an image manifest"
        raise StrictJSONError(f"{kind} holds a {present[0]!r} field (OCI image-spec §6)")
    if "subject" in doc:
        check_descriptor(doc["subject"], "subject")
    if index:
        items = doc.get("manifests")
        if isinstance(items, list):
            for n, item in enumerate(items):
                check_descriptor(item, f"manifests[{n}]")
        return
    if "config" in doc:
        check_descriptor(doc["config"], "config")
    layers = doc.get("layers")
    if isinstance(layers, list):
        for n, item in enumerate(layers):
            check_descriptor(item, f"layers[{n}]")


def check_config(doc: Any) -> None:
    """An image config: the top-level fields and ``rootfs`` spelled exactly, of the spec's types."""
    if not isinstance(doc, dict):
        raise StrictJSONError("not a JSON object")
    check_fields(doc, CONFIG_FIELDS, "")
    for key in ("created", "author", "architecture", "os", "os.version", "variant"):
        if key in doc and not isinstance(doc[key], str):
            raise StrictJSONError(f"{key} is not a string")
    if "os.features" in doc:
        _check_strings(doc["os.features"], "os.features")
    rootfs = doc.get("rootfs")
    if "rootfs" in doc:
        if not isinstance(rootfs, dict):
            raise StrictJSONError("rootfs is not an object")
        check_fields(rootfs, ROOTFS_FIELDS, "rootfs: ")
        if "diff_ids" in rootfs:
            _check_strings(rootfs["diff_ids"], "rootfs.diff_ids")
