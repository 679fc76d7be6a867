"""Parts of a bundle for removable media: ``--split-size`` parsing, part names, and the ``NAME.parts.yaml`` sidecar.

Pure: no I/O. The writing side is :mod:`arcgap.bundle.partsink`, the reading side :mod:`arcgap.bundle.partstream`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from arcgap.bundle import limits
from arcgap.bundle.yamldoc import YamlDoc
from arcgap.errors import BundleFormatError, UsageError
from arcgap.errors import option as named
from arcgap.util import safeyaml

SIDECAR_SUFFIX = ".parts.yaml"
SIDECAR_FORMAT = "arcgap-parts"
SIDECAR_VERSION = 1
MAX_SIDECAR_BYTES = limits.MAX_SIDECAR_BYTES
PART_SUFFIX = re.compile(r"\.(\d{3,})$")

# FAT32 cannot hold a file of 4 GiB; its largest is one byte less. DVD and BD capacities are decimal.
PRESETS: dict[str, int] = {"fat32": 2**32 - 1, "dvd": 4_700_000_000, "bd25": 25_000_000_000}
UNITS: dict[str, int] = {
    "b": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}
SIZE_FORMS = ("fat32 (4 GiB − 1 byte), dvd (4.7 GB), bd25 (25 GB), or a number with a unit: "
              "KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024), e.g. 700MB or 4GiB")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")


def parse_size(text: str, *, option: str = named("split_size")) -> int:
    """Bytes for a preset (``fat32``) or a number with an explicit unit (``4GB``, ``4GiB``); rounds down."""
    hint = f"give {SIZE_FORMS}"
    preset = PRESETS.get(text.strip().lower())
    if preset is not None:
        return preset
    match = _SIZE.match(text)
    if match is None:
        raise UsageError(f"{option} {text!r} is not a size", hint=hint)
    number, unit = match.groups()
    if not unit:
        raise UsageError(f"{option} {text}: a bare number is ambiguous (bytes? MB? MiB?)", hint=hint)
    factor = UNITS.get(unit.lower())
    if factor is None:
        raise UsageError(f"{option} {text}: unknown unit {unit!r}", hint=hint)
    try:
        value = int(Decimal(number) * factor)  # int() truncates: a part never exceeds what was asked
    except InvalidOperation:  # pragma: no cover - the pattern admits only plain decimals
        raise UsageError(f"{option} {text!r} is not a size", hint=hint) from None
    if value < 1:
        raise UsageError(f"{option} {text}: a part must hold at least one byte", hint=hint)
    return value


# -- names -----------------------------------------------------------------------------------------------


def part_name(bundle_name: str, number: int) -> str:
    """``NAME.001``, ``NAME.002``, … (more digits past 999)."""
    return f"{bundle_name}.{number:03d}"


def sidecar_name(bundle_name: str) -> str:
    return bundle_name + SIDECAR_SUFFIX


def split_part_name(file_name: str) -> tuple[str, int] | None:
    """``("NAME", 3)`` for ``NAME.003``; None for any other name."""
    match = PART_SUFFIX.search(file_name)
    if match is None or match.start() == 0:
        return None
    return file_name[: match.start()], int(match.group(1))


# -- the sidecar -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PartEntry:
    name: str  # a file name next to the sidecar, never a path
    size: int
    sha256: str  # hex, as sha256sum prints it


@dataclass(frozen=True)
class BundleIdentity:
    """Which bundle the parts hold: the sha256 of its ``arcgap.yaml`` bytes and a few fields for people."""

    manifest_sha256: str
    format_version: int
    arcgap_version: str
    created: str
    images: int
    blobs: int
    content_bytes: int


@dataclass(frozen=True)
class PartsIndex:
    """``NAME.parts.yaml``: every part in order with its size and sha256, and the whole stream's."""

    bundle_name: str
    identity: BundleIdentity
    parts: tuple[PartEntry, ...]
    total_size: int
    total_sha256: str
    split_bytes: int | None  # None: written unsplit (one part, the bundle file itself)

    @property
    def file_name(self) -> str:
        return sidecar_name(self.bundle_name)

    def to_yaml(self) -> bytes:
        ident = self.identity
        doc: dict[str, Any] = {
            "format": SIDECAR_FORMAT,
            "format_version": SIDECAR_VERSION,
            "bundle": {
                "name": self.bundle_name,
                "manifest_sha256": ident.manifest_sha256,
                "format_version": ident.format_version,
                "arcgap_version": ident.arcgap_version,
                "created": ident.created,
                "images": ident.images,
                "blobs": ident.blobs,
                "content_bytes": ident.content_bytes,
            },
            "split_bytes": self.split_bytes,
            "total": {"size": self.total_size, "sha256": self.total_sha256},
            "parts": [{"name": p.name, "size": p.size, "sha256": p.sha256} for p in self.parts],
        }
        what = f"{len(self.parts)} parts" if self.split_bytes is not None else "the bundle file"
        header = safeyaml.comment(f"arcgap: {what} of {self.bundle_name}; check them with "
                                  f"'arcgap verify {self.file_name}', import with 'arcgap import {self.file_name}'")
        return (header + safeyaml.dump(doc)).encode()

    @classmethod
    def from_yaml(cls, data: bytes, *, origin: str) -> PartsIndex:
        doc = _DOC.load(data, origin)
        return _parse(doc, origin)


_DOC = YamlDoc(hint="copy the .parts.yaml file again from the original, or give a part instead",
               max_bytes=MAX_SIDECAR_BYTES, nonnegative=True)
_bad = _DOC.fail
_field = _DOC.get


def _sha256(obj: Any, key: str, origin: str, where: str) -> str:
    value = _field(obj, key, str, origin, where)
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise _bad(origin, f"{where}.{key}: not a sha256 hex digest")
    return str(value)


def _parse(doc: Any, origin: str) -> PartsIndex:
    if not isinstance(doc, dict) or doc.get("format") != SIDECAR_FORMAT:
        raise BundleFormatError(f"{origin}: not an arcgap parts file",
                                hint="give the NAME.parts.yaml written by 'arcgap export', or a part")
    version = _field(doc, "format_version", int, origin, "top")
    if version != SIDECAR_VERSION:
        raise BundleFormatError(f"{origin}: parts file version {version} is not supported",
                                hint="install a newer arcgap on this side")
    bundle = _field(doc, "bundle", dict, origin, "top")
    name = _field(bundle, "name", str, origin, "bundle")
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise _bad(origin, f"bundle.name {name[:80]!r} is not a plain file name")
    identity = BundleIdentity(
        manifest_sha256=_sha256(bundle, "manifest_sha256", origin, "bundle"),
        format_version=_field(bundle, "format_version", int, origin, "bundle"),
        arcgap_version=str(bundle.get("arcgap_version", "")),
        created=str(bundle.get("created", "")),
        images=_field(bundle, "images", int, origin, "bundle"),
        blobs=_field(bundle, "blobs", int, origin, "bundle"),
        content_bytes=_field(bundle, "content_bytes", int, origin, "bundle"),
    )
    split = doc.get("split_bytes")
    if split is not None and (not isinstance(split, int) or isinstance(split, bool) or split < 1):
        raise _bad(origin, "split_bytes: wrong type")
    total = _field(doc, "total", dict, origin, "top")
    listed = _field(doc, "parts", list, origin, "top")
    if not listed:
        raise _bad(origin, "parts: empty")
    if len(listed) > limits.MAX_PARTS:
        raise _bad(origin, f"parts: more than {limits.MAX_PARTS}")
    parts: list[PartEntry] = []
    for n, item in enumerate(listed, start=1):
        where = f"parts[{n - 1}]"
        expected = part_name(name, n) if split is not None else name
        part = PartEntry(_field(item, "name", str, origin, where), _field(item, "size", int, origin, where),
                         _sha256(item, "sha256", origin, where))
        if part.name != expected:  # parts are found next to the sidecar by these names only
            raise _bad(origin, f"{where}.name is {part.name[:80]!r}, expected {expected!r}")
        if split is not None and part.size > split:
            raise _bad(origin, f"{where}: {part.size} bytes, more than split_bytes {split}")
        parts.append(part)
    if split is None and len(parts) != 1:
        raise _bad(origin, "parts: an unsplit bundle has exactly one part")
    total_size = _field(total, "size", int, origin, "total")
    if total_size != sum(p.size for p in parts):
        raise _bad(origin, "total.size is not the sum of the parts' sizes")
    return PartsIndex(bundle_name=name, identity=identity, parts=tuple(parts), total_size=total_size,
                      total_sha256=_sha256(total, "sha256", origin, "total"), split_bytes=split)
