"""Load untrusted YAML with explicit limits: a size cap before parsing, no anchors or aliases, bounded nodes
and nesting, then PyYAML's safe constructor (the C parser when libyaml is present) refusing a key repeated in
any mapping (PyYAML would silently keep the last one; another reader may keep the first).

The refusal is :class:`YamlRefused`; each caller words it for its own file.
"""

from __future__ import annotations

from typing import Any

import yaml

from arcgap.util.safetext import safe

_Base: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class YamlRefused(ValueError):
    """The document is over a limit or uses anchors/aliases; ``line`` is 1-based when known."""

    def __init__(self, why: str, line: int | None = None) -> None:
        super().__init__(why)
        self.why = why
        self.line = line


class SafeLimitedLoader(_Base):  # type: ignore[misc,valid-type]
    """PyYAML's safe loader that refuses anchors and aliases (checked again here for the pure-Python parser)."""

    def compose_node(self, parent: Any, index: Any) -> Any:  # only the pure-Python composer calls this
        if self.check_event(yaml.AliasEvent):
            raise YamlRefused("YAML aliases are not allowed", _line(self.peek_event()))
        event = self.peek_event()
        if getattr(event, "anchor", None):
            raise YamlRefused("YAML anchors are not allowed", _line(event))
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        """PyYAML's mapping, refusing a key that appears twice (``a: 1`` then ``a: 2``; also ``yes`` and ``true``)."""
        if isinstance(node, yaml.MappingNode):
            first: dict[Any, int | None] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    earlier = key in first
                except TypeError:  # an unhashable key: PyYAML's own error says so
                    break
                line = _line(key_node)
                if earlier:
                    at = f" (lines {first[key]} and {line})" if first[key] is not None and line is not None else ""
                    raise YamlRefused(f"key {_shown(key)} appears twice in one mapping{at}", line)
                first[key] = line
        return super().construct_mapping(node, deep=deep)


def _shown(key: Any) -> str:
    text = repr(key)
    return text if len(text) <= 80 else text[:77] + "..."


def _line(event: Any) -> int | None:
    mark = getattr(event, "start_mark", None)
    return mark.line + 1 if mark is not None else None


def load(data: bytes | str, *, max_bytes: int, max_nodes: int, max_depth: int) -> Any:
    """Parse ``data`` or raise :class:`YamlRefused` (a limit) or ``yaml.YAMLError`` (not YAML)."""
    size = len(data.encode() if isinstance(data, str) else data)
    if size > max_bytes:
        raise YamlRefused(f"{size} bytes, more than the {max_bytes} allowed")
    nodes = depth = 0
    for event in yaml.parse(data, Loader=_Base):  # events only: cheap, and nothing is built yet
        if isinstance(event, yaml.AliasEvent):
            raise YamlRefused("YAML aliases are not allowed", _line(event))
        if isinstance(event, yaml.NodeEvent):
            if event.anchor:
                raise YamlRefused("YAML anchors are not allowed", _line(event))
            nodes += 1
            if nodes > max_nodes:
                raise YamlRefused(f"more than {max_nodes} YAML nodes", _line(event))
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > max_depth:
                raise YamlRefused(f"nested deeper than {max_depth} levels", _line(event))
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
    return yaml.load(data, Loader=SafeLimitedLoader)  # noqa: S506 - a SafeLoader subclass


class _NoAliasDumper(yaml.SafeDumper):
    """Writes a shared object out again instead of an anchor and alias: arcgap's readers refuse aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump(doc: Any) -> str:
    """``yaml.safe_dump`` as arcgap writes its files: key order kept, block style, never an anchor or alias."""
    return yaml.dump(doc, Dumper=_NoAliasDumper, sort_keys=False, default_flow_style=False, width=200)


def comment(text: str) -> str:
    """``text`` as one YAML comment line (``# …`` and a line feed): every control, format and separator
    character escaped, so no value in it (a bundle's file name, a created time) ends the comment early and
    adds a line of YAML: PyYAML breaks lines at CR, NEL, LS and PS as well as at LF."""
    return f"# {safe(text)}\n"
