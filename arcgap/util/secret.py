"""A string wrapper that never shows its value in reprs, logs or tracebacks."""

from __future__ import annotations


class Secret:
    """Holds a password or token; ``str()``/``repr()`` print a mask, ``reveal()`` gives the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __reduce__(self) -> object:  # refuse pickling, which would write the value out
        raise TypeError("Secret cannot be pickled")
