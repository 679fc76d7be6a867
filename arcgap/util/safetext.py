"""Render untrusted text (from a bundle, receipt, parts file or registry answer) safe for a terminal or a log.

C0 and C1 control characters (ESC, CR, LF, BEL, DEL, ...), Unicode format characters (bidi overrides and
isolates, zero-width characters) and line/paragraph separators become visible escapes (``\\x1b``,
``\\u202e``), so such text can neither forge extra lines nor move the cursor, clear the screen or reorder what
is shown. JSON output needs nothing more: ``json.dumps`` (``ensure_ascii``) escapes all of them already.
"""

from __future__ import annotations

import unicodedata
from typing import Any

_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_cache: dict[str, bool] = {}


def _unsafe(ch: str) -> bool:
    hit = _cache.get(ch)
    if hit is None:
        hit = _cache[ch] = unicodedata.category(ch) in _UNSAFE_CATEGORIES
    return hit


def _escape(ch: str) -> str:
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def safe(text: Any) -> str:
    """``str(text)`` with every control, format and separator character escaped; printable text unchanged."""
    s = text if isinstance(text, str) else str(text)
    if s.isprintable():  # fast path: nothing to escape (printable excludes every category above)
        return s
    return "".join(_escape(ch) if _unsafe(ch) else ch for ch in s)


def safe_lines(text: Any) -> str:
    """Like :func:`safe` but keeps line feeds: for multi-line text arcgap itself composed from parts."""
    return "\n".join(safe(line) for line in str(text).split("\n"))
