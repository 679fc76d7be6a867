"""One validating reader for the YAML documents from the other side: ``arcgap.yaml``, import receipts and
parts sidecars.

A :class:`YamlDoc` describes one kind of document: the hint its errors carry, its size cap and the bounds its
fields must keep. It parses under the limits of :mod:`arcgap.util.safeyaml` (no anchors or aliases, no
repeated keys, bounded nodes and depth) and reads typed fields; every failure is a
:class:`~arcgap.errors.BundleFormatError` (exit 8) ``ORIGIN: WHERE.KEY: PROBLEM``. The document's own checks
(what its fields mean) stay in its module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from arcgap.bundle import limits
from arcgap.errors import BundleFormatError, UsageError
from arcgap.oci.digest import Digest
from arcgap.util import safeyaml


def shown_number(value: int) -> str:
    """A number from the input for a message: absurd ones (10**400) shortened."""
    return str(value) if abs(value) < 10**30 else f"a number of {value.bit_length()} bits"


@dataclass(frozen=True)
class YamlDoc:
    """The reader of one kind of YAML document (see the module docstring)."""

    hint: str  # on every error about the document's content
    max_bytes: int
    refused_hint: str | None = None  # a limit, an anchor or a repeated key (default: ``hint``)
    invalid_hint: str | None = None  # not YAML at all (default: ``hint``)
    max_text: int | None = None  # longest string field
    max_int: int | None = None  # integer fields in 0 … max_int ("out of range")
    nonnegative: bool = False  # integer fields ≥ 0 ("negative"), when there is no max_int
    max_items: int | None = None  # longest list field

    def fail(self, origin: str, text: str) -> BundleFormatError:
        return BundleFormatError(f"{origin}: {text}", hint=self.hint)

    def load(self, data: bytes, origin: str) -> Any:
        """The parsed document, or the error naming the line when it is known."""
        try:
            return safeyaml.load(data, max_bytes=self.max_bytes, max_nodes=limits.MAX_YAML_NODES,
                                 max_depth=limits.MAX_YAML_DEPTH)
        except safeyaml.YamlRefused as exc:
            where = f"{origin}:{exc.line}" if exc.line is not None else origin
            raise BundleFormatError(f"{where}: refused: {exc.why}", hint=self.refused_hint or self.hint) from None
        except (yaml.YAMLError, RecursionError, ValueError) as exc:  # deep nesting: recursion; an int of 5,000 digits
            mark = getattr(exc, "problem_mark", None)
            where = f"{origin}:{mark.line + 1}" if mark is not None else origin
            raise BundleFormatError(f"{where}: not valid YAML", hint=self.invalid_hint or self.hint) from None

    def get(self, obj: Any, key: str, typ: type | tuple[type, ...], origin: str, where: str) -> Any:
        """``obj[key]``, present and of type ``typ`` (a bool is not an int), within the document's bounds."""
        if not isinstance(obj, dict) or key not in obj:
            raise self.fail(origin, f"{where}: missing '{key}'")
        value = obj[key]
        if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
            raise self.fail(origin, f"{where}.{key}: wrong type")
        if self.max_text is not None and isinstance(value, str) and len(value) > self.max_text:
            raise self.fail(origin, f"{where}.{key}: longer than {self.max_text} characters")
        if typ is int and self.max_int is not None and not 0 <= value <= self.max_int:
            raise self.fail(origin, f"{where}.{key}: {shown_number(value)} is out of range (0 to {self.max_int})")
        if typ is int and self.nonnegative and value < 0:
            raise self.fail(origin, f"{where}.{key}: negative")
        if self.max_items is not None and isinstance(value, list) and len(value) > self.max_items:
            raise self.fail(origin, f"{where}.{key}: more than {self.max_items} entries")
        return value

    def digest(self, text: str, origin: str, where: str) -> Digest:
        try:
            return Digest.parse(text)
        except UsageError:
            raise self.fail(origin, f"{where}: invalid digest {text[:80]!r}") from None
