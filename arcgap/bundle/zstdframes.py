"""Track zstd frame boundaries in the compressed bytes, to tell a complete stream from a truncated one.

The decompressor returns end-of-data quietly when the input stops inside a frame (even before the content
checksum), so the reader feeds every compressed byte through this small parser of the frame format
(RFC 8878 §3.1) and asks ``complete`` at the end.
"""

from __future__ import annotations

from arcgap.bundle.limits import MAX_WINDOW_BYTES
from arcgap.errors import BundleFormatError, IntegrityError

ZSTD_MAGIC = 0xFD2FB528
_SKIPPABLE_MASK = 0xFFFFFFF0
_SKIPPABLE_MAGIC = 0x184D2A50


def is_frame_start(head: bytes) -> bool:
    """True when ``head`` (4 bytes) starts a zstd frame or a skippable frame (RFC 8878 §3.1.2)."""
    magic = int.from_bytes(head[:4], "little") if len(head) >= 4 else -1
    return magic == ZSTD_MAGIC or (magic & _SKIPPABLE_MASK) == _SKIPPABLE_MAGIC


def _window_bytes(descriptor: int) -> int:
    """The window size a Window_Descriptor byte asks for (RFC 8878 §3.1.1.1.2)."""
    log = 10 + (descriptor >> 3)
    base = 1 << log
    return base + (base // 8) * (descriptor & 7)


def _too_large(window: int) -> BundleFormatError:
    return BundleFormatError(
        f"a zstd frame asks for a {_mib(window)} decoding window; arcgap allows at most {_mib(MAX_WINDOW_BYTES)}",
        hint=f"recompress the tar with a window of at most {_mib(MAX_WINDOW_BYTES)} "
             "(zstd --long=27 or less); arcgap export never goes over it",
    )


def _mib(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB" if n < 2**40 else f"{n / 2**40:,.0f} TiB"


class FrameTracker:
    def __init__(self) -> None:
        self._buf = bytearray()
        self._skip = 0  # payload bytes to pass over
        self._state = "magic"
        self._checksum = False
        self.frames = 0

    @property
    def complete(self) -> bool:
        """True when the bytes seen so far end exactly at the end of a frame."""
        return self._state == "magic" and not self._buf and self._skip == 0 and self.frames > 0

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self._skip:
                n = min(self._skip, len(view))
                self._skip -= n
                view = view[n:]
                if not self._skip and self._state == "after_block":
                    self._state = self._next_state
                continue
            need = self._need()
            take = min(need - len(self._buf), len(view))
            self._buf += view[:take]
            view = view[take:]
            if len(self._buf) == need:
                self._advance()

    def _need(self) -> int:
        if self._state == "magic":
            return 4
        if self._state == "fhd":
            return 1
        if self._state == "header_rest":
            return self._header_rest
        if self._state == "skippable_size":
            return 4
        if self._state == "block":
            return 3
        if self._state == "checksum":
            return 4
        raise AssertionError(self._state)

    def _advance(self) -> None:
        buf = bytes(self._buf)
        self._buf.clear()
        state = self._state
        if state == "magic":
            magic = int.from_bytes(buf, "little")
            if magic == ZSTD_MAGIC:
                self._state = "fhd"
            elif magic & _SKIPPABLE_MASK == _SKIPPABLE_MAGIC:
                self._state = "skippable_size"
            else:
                raise IntegrityError("compressed data is damaged (bad zstd frame magic)")
        elif state == "skippable_size":
            self._skip = int.from_bytes(buf, "little")
            self._state = "after_block"
            self._next_state = "magic"
            self._end_frame_if_done()
        elif state == "fhd":
            fhd = buf[0]
            fcs_flag, single, self._checksum, dict_flag = fhd >> 6, (fhd >> 5) & 1, bool((fhd >> 2) & 1), fhd & 3
            if (fhd >> 3) & 1:
                raise IntegrityError("compressed data is damaged (reserved bit set in a zstd frame header)")
            fcs = {0: 1 if single else 0, 1: 2, 2: 4, 3: 8}[fcs_flag]
            self._header_rest = (0 if single else 1) + (0, 1, 2, 4)[dict_flag] + fcs
            self._single, self._fcs_bytes = bool(single), fcs
            self._state = "header_rest" if self._header_rest else "block"
        elif state == "header_rest":
            if self._single:  # the window is the whole content (RFC 8878 §3.1.1.1.2)
                window = int.from_bytes(buf[len(buf) - self._fcs_bytes:], "little") + (256 if self._fcs_bytes == 2
                                                                                        else 0)
            else:
                window = _window_bytes(buf[0])
            if window > MAX_WINDOW_BYTES:
                raise _too_large(window)
            self._state = "block"
        elif state == "block":
            header = int.from_bytes(buf, "little")
            last, kind, size = header & 1, (header >> 1) & 3, header >> 3
            if kind == 3:
                raise IntegrityError("compressed data is damaged (reserved zstd block type)")
            self._skip = 1 if kind == 1 else size
            self._next_state = ("checksum" if self._checksum else "magic") if last else "block"
            if last and not self._checksum:
                self.frames += 1
            self._state = "after_block"
            self._end_frame_if_done()
        elif state == "checksum":
            self.frames += 1
            self._state = "magic"

    def _end_frame_if_done(self) -> None:
        if not self._skip:
            self._state = self._next_state
