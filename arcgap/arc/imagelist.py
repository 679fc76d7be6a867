"""Image lists (format ``arcgap-images/v1``): parsing with file:line errors, the shipped release lists, and
the ordering of release tags (``vMAJOR.MINOR.PATCH_YYYY-MM-DD``). No network I/O."""

from __future__ import annotations

import datetime
import importlib.resources
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import yaml

from arcgap.errors import LocalIOError, UsageError, option
from arcgap.oci.reference import (
    Reference,
    join_repository,
    parse_reference,
    validate_registry,
    validate_repository,
    validate_tag,
)
from arcgap.util.regularfile import read_regular_text

FORMAT = "arcgap-images/v1"
_TOP_KEYS = ("format", "release", "registry", "repository", "images")
_ITEM_KEYS = ("name", "tag")
_RELEASE_RE = re.compile(r"v(\d+)\.(\d+)\.(\d+)_(\d{4})-(\d{2})-(\d{2})")
_FORMAT_HINT = "see manifests/README.md for the image list format"
_NAME_HINT = (
    "give a name relative to the source repository (arc-controller), in a list the long form "
    "(- name: arc-controller / tag: TAG) for another tag, or a full reference "
    "(registry.example.com/repo/name:tag)"
)


@dataclass(frozen=True)
class ImageEntry:
    """One image of a list: a name relative to the list's registry/repository, or a full reference."""

    name: str  # repository path relative to registry/repository ("arc-controller"); for a reference its path
    tag: str | None  # explicit tag (long form or full reference); None: use the source tag
    reference: str | None  # the full reference as written, else None

    def source(self, *, registry: str, repository: str, tag: str) -> Reference:
        """Where to pull from, given the source registry, repository and tag in force for the list.

        A full reference keeps its own registry, path and digest; an explicit tag beats ``tag``.
        """
        if self.reference is not None:
            ref = parse_reference(self.reference)
            return replace(ref, tag=self.tag or (None if ref.digest else validate_tag(tag)))
        return Reference(
            validate_registry(registry), join_repository(repository, self.name), validate_tag(self.tag or tag)
        )


@dataclass(frozen=True)
class ImageList:
    """The images of one list, in order, with the list's defaults for the source."""

    images: tuple[ImageEntry, ...]
    release: str | None  # default source tag
    registry: str | None  # default source registry
    repository: str | None  # default source repository
    origin: str  # the file, "release v1.29.0_2024-04-09" or "command line", for messages


# --- release tags -------------------------------------------------------------------------------------------


def is_release_tag(tag: str) -> bool:
    """True for a release tag such as ``v1.29.0_2024-04-09`` (not a preview or a dev build)."""
    return _RELEASE_RE.fullmatch(tag) is not None


def release_sort_key(tag: str) -> tuple[int, int, int, int, int, str]:
    """``sorted(tags, key=release_sort_key)`` puts releases newest first (by version, then date), then dev
    builds (a release tag with a suffix), then every other tag in alphabetical order."""
    m = _RELEASE_RE.match(tag)
    if m is None:
        return (2, 0, 0, 0, 0, tag)
    major, minor, patch, year, month, day = (int(g) for g in m.groups())
    group = 0 if m.end() == len(tag) else 1
    return (group, -major, -minor, -patch, -(year * 10000 + month * 100 + day), tag)


# --- shipped lists ------------------------------------------------------------------------------------------


def _shipped_files() -> dict[str, Any]:
    """Release tag → Traversable (or Path) of its list: from the installed package, else the source tree."""
    try:
        root: Any = importlib.resources.files("arcgap.manifests")
    except ModuleNotFoundError:  # running from a source tree that is not installed
        root = Path(__file__).resolve().parents[2] / "manifests"
        if not root.is_dir():
            return {}
    files: dict[str, Any] = {}
    for entry in root.iterdir():
        if entry.name.endswith(".yaml"):
            files[entry.name[: -len(".yaml")]] = entry
    return files


def shipped_releases() -> list[str]:
    """Release tags with a shipped image list, newest first."""
    return sorted(_shipped_files(), key=release_sort_key)


def default_release_tag() -> str:
    """The newest shipped release: the default source tag."""
    releases = shipped_releases()
    if not releases:
        raise UsageError("no image lists are shipped with this arcgap", hint="reinstall arcgap")
    return releases[0]


def load_shipped_release(tag: str) -> ImageList:
    """The shipped image list of release ``tag``."""
    files = _shipped_files()
    if tag not in files:
        available = ", ".join(sorted(files, key=release_sort_key)) or "none"
        raise UsageError(
            f"no shipped image list for release {tag!r}",
            hint=f"shipped releases: {available}; for another release give your own list ({option('images')} FILE)",
        )
    images = parse_image_list(files[tag].read_text(encoding="utf-8"), origin=f"manifests/{tag}.yaml")
    return replace(images, origin=f"release {tag}")


# --- parsing ------------------------------------------------------------------------------------------------


def load_image_list(path: Path) -> ImageList:
    """Read and check the image list in ``path``."""
    try:
        text = read_regular_text(path)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise UsageError(f"image list {path} not found", hint="check the file name") from None
    except UnicodeDecodeError:
        raise UsageError(f"image list {path} is not UTF-8 text", hint=_FORMAT_HINT) from None
    except OSError as exc:
        raise LocalIOError(
            f"cannot read image list {path}: {exc.strerror}", hint="check its permissions"
        ) from None
    return parse_image_list(text, origin=str(path))


def parse_image_list(text: str, *, origin: str) -> ImageList:
    """Parse the text of an image list; errors say ``origin:line: where: problem``."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)  # node tree: only for line numbers
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = exc.problem or exc.context or "not valid YAML"
        raise UsageError(
            f"{origin}{line}: invalid YAML: {problem}", hint="check indentation and quoting"
        ) from None
    except (yaml.YAMLError, RecursionError) as exc:
        raise UsageError(f"{origin}: invalid YAML: {exc}", hint="check indentation and quoting") from None
    return _Checker(origin, root).image_list(data)


def images_from_names(names: Sequence[str]) -> ImageList:
    """An image list from command-line arguments: names relative to the source repository, or references."""
    if not names:
        raise UsageError("no images given", hint=_NAME_HINT)
    entries: list[ImageEntry] = []
    seen: set[str] = set()
    for text in names:
        entry = _entry_from_text(text)
        if entry.name in seen:
            raise UsageError(f"image {entry.name!r} given twice", hint="give each image once")
        seen.add(entry.name)
        entries.append(entry)
    return ImageList(tuple(entries), release=None, registry=None, repository=None, origin="command line")


def _checked(kind: str, validate: Callable[[str], str], value: str) -> str:
    # reference.py's patterns end in '$', which also matches before a final newline: refuse line breaks here.
    if "\n" in value or "\r" in value:
        raise UsageError(f"invalid {kind} {value!r}", hint="remove the line break")
    return validate(value)


def _looks_like_host(component: str) -> bool:
    # docker's rule (as in reference.py): a first component with '.' or ':', or 'localhost', is a registry.
    return "." in component or ":" in component or component == "localhost" or component.startswith("[")


def _entry_from_text(text: str) -> ImageEntry:
    if not text or any(ch.isspace() for ch in text):
        raise UsageError(f"invalid image name {text!r}", hint=_NAME_HINT)
    first, slash, _ = text.partition("/")
    if slash and _looks_like_host(first):
        ref = parse_reference(text)
        return ImageEntry(name=ref.repository, tag=ref.tag, reference=text)
    if ":" in text or "@" in text:
        raise UsageError(
            f"invalid image name {text!r}: a name relative to the source repository takes no tag or digest",
            hint=_NAME_HINT,
        )
    try:
        validate_repository(text)
    except UsageError as exc:
        raise UsageError(f"invalid image name {text!r}", hint=exc.hint) from None
    return ImageEntry(name=text, tag=None, reference=None)


_Path = tuple[Any, ...]


def _describe(value: object) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, (datetime.date, datetime.datetime)):
        return "a date"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return "nothing" if value is None else type(value).__name__


class _Checker:
    """Checks the loaded data against the schema, using the node tree to name the line of each problem."""

    def __init__(self, origin: str, root: yaml.Node | None) -> None:
        self.origin = origin
        self.nodes: dict[_Path, yaml.Node] = {}
        self.key_nodes: dict[_Path, yaml.Node] = {}
        if root is not None:
            self._index(root, (), set())

    def _index(self, node: yaml.Node, path: _Path, seen: set[int]) -> None:
        if id(node) in seen:  # an alias: index each node once (also stops recursion and alias bombs)
            return
        seen.add(id(node))
        self.nodes[path] = node
        if isinstance(node, yaml.MappingNode):
            keys: set[str] = set()
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    continue
                if key_node.value in keys:  # safe_load would silently keep the last one
                    raise self._error(path, f"duplicate key {key_node.value!r}", node=key_node)
                keys.add(key_node.value)
                self.key_nodes[(*path, key_node.value)] = key_node
                self._index(value_node, (*path, key_node.value), seen)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._index(item, (*path, i), seen)

    def _error(
        self, path: _Path, problem: str, *, node: yaml.Node | None = None, hint: str = _FORMAT_HINT
    ) -> UsageError:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")
        lookup = path
        while node is None and lookup:
            node = self.nodes.get(lookup)
            lookup = lookup[:-1]
        node = node or self.nodes.get(())
        line = f":{node.start_mark.line + 1}" if node is not None else ""
        prefix = f"{where}: " if where else ""
        return UsageError(f"{self.origin}{line}: {prefix}{problem}", hint=hint)

    def _value(self, path: _Path, value: object, kind: str, validate: Callable[[str], str]) -> str:
        if not isinstance(value, str):
            node = self.nodes.get(path)
            shown = node.value if isinstance(node, yaml.ScalarNode) else ""
            hint = f'quote it: {path[-1]}: "{shown}"' if shown else _FORMAT_HINT
            problem = f"{path[-1]} must be a string, not {_describe(value)}"
            raise self._error(path[:-1], problem, node=node, hint=hint)
        try:
            return _checked(kind, validate, value)
        except UsageError as exc:
            raise self._error(
                path[:-1] or path, exc.message, node=self.nodes.get(path), hint=exc.hint
            ) from None

    def _unknown_keys(self, path: _Path, mapping: Mapping[Any, Any], known: Iterable[str]) -> None:
        for key in mapping:
            if key not in known:
                raise self._error(
                    path,
                    f"unknown key {key!r}",
                    node=self.key_nodes.get((*path, str(key))),
                    hint=f"known keys: {', '.join(known)}",
                )

    def image_list(self, data: object) -> ImageList:
        if not isinstance(data, dict):
            raise self._error(
                (), f"expected a mapping with the keys {', '.join(_TOP_KEYS)}, not {_describe(data)}"
            )
        self._unknown_keys((), data, _TOP_KEYS)
        if "format" not in data:
            raise self._error((), f"missing 'format: {FORMAT}'")
        if data["format"] != FORMAT:
            raise self._error(
                ("format",),
                f"unsupported format {data['format']!r}",
                hint=f"this arcgap reads format {FORMAT}",
            )
        optional = {}
        for key, kind, validate in (
            ("release", "tag", validate_tag),
            ("registry", "registry", validate_registry),
            ("repository", "repository name", validate_repository),
        ):
            value = data.get(key)
            optional[key] = None if value is None else self._value((key,), value, kind, validate)
        images = data.get("images")
        if images is None:
            raise self._error(("images",) if "images" in data else (), "missing 'images', the list of images")
        if not isinstance(images, list):
            raise self._error(("images",), f"expected a list of images, not {_describe(images)}")
        if not images:
            raise self._error(("images",), "the list is empty")
        entries: list[ImageEntry] = []
        first_line: dict[str, int] = {}
        for i, item in enumerate(images):
            entry = self._entry(("images", i), item)
            if entry.name in first_line:
                raise self._error(
                    ("images", i),
                    f"duplicate image {entry.name!r} (first at line {first_line[entry.name]})",
                    hint="list each image once",
                )
            node = self.nodes.get(("images", i))
            first_line[entry.name] = node.start_mark.line + 1 if node is not None else 0
            entries.append(entry)
        return ImageList(
            tuple(entries), optional["release"], optional["registry"], optional["repository"], self.origin
        )

    def _entry(self, path: _Path, item: object) -> ImageEntry:
        if isinstance(item, str):
            try:
                return _entry_from_text(item)
            except UsageError as exc:
                raise self._error(path, exc.message, hint=exc.hint) from None
        if not isinstance(item, dict):
            raise self._error(
                path, f"expected an image name or a mapping with name and tag, not {_describe(item)}"
            )
        self._unknown_keys(path, item, _ITEM_KEYS)
        if item.get("name") is None:
            raise self._error(path, "missing 'name'", hint=_NAME_HINT)
        name = self._value((*path, "name"), item["name"], "image name", lambda s: s)
        try:
            entry = _entry_from_text(name)
        except UsageError as exc:
            raise self._error(
                path, exc.message, node=self.nodes.get((*path, "name")), hint=exc.hint
            ) from None
        if item.get("tag") is None:
            return entry
        tag = self._value((*path, "tag"), item["tag"], "tag", validate_tag)
        if entry.tag is not None:
            raise self._error(
                path, f"tag given twice ({entry.tag!r} in the name, {tag!r} as tag)", hint=_NAME_HINT
            )
        return replace(entry, tag=tag)
