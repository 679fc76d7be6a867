"""Read a bundle in one streaming pass without extracting it: manifest first, then verified blobs.

Input is untrusted: member names and order must be exactly what ``arcgap.yaml`` declares, sizes must
match, and every blob is checked by size and digest before its last chunk is handed on. The layout members are
checked against the digests ``arcgap.yaml`` records (format version 3) or, in a signed bundle of version 2,
against what ``arcgap.yaml`` derives; every limit is in :mod:`arcgap.bundle.limits`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import zstandard

from arcgap.bundle import tarstream
from arcgap.bundle.dockercompat import DOCKER_LOAD_INDEX_NAME
from arcgap.bundle.format import (
    INDEX_NAME,
    LAYOUT_NAME,
    MAX_YAML_BYTES,
    TOC_NAME,
    BlobEntry,
    TableOfContents,
)
from arcgap.bundle.limits import MAX_LAYOUT_MEMBER_BYTES, MAX_OCI_LAYOUT_BYTES, MAX_TRAILING_BYTES, MAX_WINDOW_BYTES
from arcgap.bundle.partstream import PartSet, PartStream, check_present, locate
from arcgap.bundle.signature import MAX_SIGNATURE_BYTES, SIGNATURE_NAME, BundleSignature
from arcgap.bundle.zstdframes import FrameTracker, is_frame_start
from arcgap.errors import ArcgapError, BundleFormatError, IntegrityError, SignatureError
from arcgap.oci.digest import Digest, Verifier, verified_chunks
from arcgap.oci.mediatypes import OCI_INDEX
from arcgap.oci.strictjson import (
    CONFIG_MEDIA_TYPES,
    LAYOUT_FIELDS,
    MAX_CONFIG_BYTES,
    StrictJSONError,
    check_config,
    check_fields,
    check_manifest,
    loads,
)

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
READ_CHUNK = 1024 * 1024
OPTIONAL_MEMBERS = (DOCKER_LOAD_INDEX_NAME,)  # docker-load compatibility (written by later versions)
MAX_SMALL_MEMBER = MAX_LAYOUT_MEMBER_BYTES
__all__ = ["MAX_TRAILING_BYTES", "BundleReader", "open_bundle"]


class _ZstdErrors:
    """Wraps the decompressing stream so zstd failures surface as IntegrityError."""

    def __init__(self, inner: BinaryIO, origin: str) -> None:
        self._inner = inner
        self._origin = origin

    def read(self, n: int = -1) -> bytes:
        try:
            return self._inner.read(n)
        except BundleFormatError as exc:  # from the frame tracker (a window over the limit): name the bundle
            raise BundleFormatError(f"{self._origin}: {exc.message}", hint=exc.hint) from None
        except zstandard.ZstdError as exc:
            if "too much memory" in str(exc):  # the frame tracker names the window first; this is a backstop
                raise BundleFormatError(f"a zstd frame asks for a decoding window over {MAX_WINDOW_BYTES} bytes",
                                        hint="recompress the tar with zstd --long=27 or less") from None
            raise IntegrityError(f"compressed data is damaged ({exc})") from None


class BundleReader:
    """Iterate a bundle. ``manifest`` is available right after construction."""

    parts: PartSet | None = None  # where the bytes come from, when opened with open_bundle
    finished = False  # every byte read and checked (blobs, zstd checksum, end of archive)

    def __init__(self, stream: BinaryIO, *, origin: str) -> None:
        self.origin = origin
        head = stream.read(4)
        if not is_frame_start(head):  # a zstd frame, or a skippable frame in front of one
            raise BundleFormatError(
                f"{origin} is not an arcgap bundle (not zstd-compressed)",
                hint="give the .tar.zst file written by 'arcgap export'",
            )
        dctx = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW_BYTES)
        self._frames = FrameTracker()
        raw = self._raw = _Tracked(_Prepend(head, stream), self._frames)
        self._zr = dctx.stream_reader(raw, read_size=READ_CHUNK, read_across_frames=True)  # type: ignore[arg-type]
        self._tar = tarstream.TarReader(_ZstdErrors(self._zr, origin))  # type: ignore[arg-type]
        self.current: str = TOC_NAME
        first = self._next()
        if first is None or first.name != TOC_NAME:
            raise BundleFormatError(
                f"{origin} is not an arcgap bundle (first member is {first.name if first else 'missing'!r})",
                hint="give the file written by 'arcgap export'",
            )
        if first.size > MAX_YAML_BYTES:
            raise BundleFormatError(f"{origin}: {TOC_NAME} is implausibly large ({first.size} bytes)")
        self.toc_bytes = self._read_whole(first.size)
        self.toc = TableOfContents.from_yaml(self.toc_bytes, origin=f"{origin}:{TOC_NAME}")
        self.layout_files: dict[str, bytes] = {}
        self._signature: BundleSignature | None = None
        self._after_manifest: list[tarstream.MemberHeader | None] | None = None  # the next member, once read
        self._first_blob: list[tarstream.MemberHeader | None] | None = None  # once the layout has been read
        self.signature_checked = False  # set by arcgap.bundle.signing.check_bundle_signature: changes are forgery

    @property
    def identity(self) -> Digest:
        """The bundle's identity: sha256 of its exact arcgap.yaml bytes (what a signature covers)."""
        return Digest.of(self.toc_bytes)

    def signature(self) -> BundleSignature | None:
        """The ``arcgap.yaml.sig`` member, accepted only right after arcgap.yaml in a version 2 bundle."""
        if self._after_manifest is None:
            member = self._next()
            if member is not None and member.name == SIGNATURE_NAME and self.toc.format_version >= 2:
                if member.size > MAX_SIGNATURE_BYTES:
                    raise BundleFormatError(f"{self.origin}: member {SIGNATURE_NAME} is implausibly large")
                self.current = SIGNATURE_NAME
                self._signature = BundleSignature.from_bytes(self._read_whole(member.size), origin=self.origin)
                self._after_manifest = []  # the next header is read when the layout is
            else:
                self._after_manifest = [member]
        return self._signature

    def _next(self) -> tarstream.MemberHeader | None:
        try:
            return self._tar.next_member()
        except IntegrityError as exc:
            raise IntegrityError(f"{self.origin}: {exc.message} (after {self.current})") from None
        except BundleFormatError as exc:
            if exc.message.startswith(self.origin):
                raise
            raise BundleFormatError(f"{self.origin}: {exc.message} (after {self.current})", hint=exc.hint) from None

    def _read_whole(self, size: int) -> bytes:
        try:
            return b"".join(self._tar.iter_member(READ_CHUNK))
        except IntegrityError as exc:
            raise IntegrityError(f"{self.origin}: {exc.message} (in {self.current})") from None

    def read_layout(self) -> None:
        """Read and check the members between arcgap.yaml (and its signature) and the first blob (idempotent)."""
        if self._first_blob is None:
            self._first_blob = [self._read_layout()]

    def _read_layout(self) -> tarstream.MemberHeader | None:
        """Read oci-layout, index.json and optional members; return the first blob member header."""
        expected = [LAYOUT_NAME, INDEX_NAME]
        recorded = {m.name: m for m in self.toc.members}
        self.signature()
        held = self._after_manifest or []  # the first member after arcgap.yaml and its signature
        while True:
            member = held.pop() if held else self._next()
            if member is None or member.name.startswith("blobs/"):
                break
            name = member.name
            if expected and name == expected[0]:
                expected.pop(0)
            elif not expected and name in OPTIONAL_MEMBERS and name not in self.layout_files:
                pass
            else:
                raise self._changed(f"unexpected member {name[:200]!r}", format_error=True)
            if recorded and name not in recorded:
                raise self._changed(f"member {name} is not among the members {TOC_NAME} records")
            if member.size > (MAX_OCI_LAYOUT_BYTES if name == LAYOUT_NAME else MAX_SMALL_MEMBER):
                raise BundleFormatError(f"{self.origin}: member {name} is implausibly large")
            if recorded and member.size != recorded[name].size:
                raise self._changed(f"member {name} is {member.size} bytes, not the {recorded[name].size} "
                                    f"{TOC_NAME} records")
            self.current = name
            self.layout_files[name] = data = self._read_whole(member.size)
            if recorded and Digest.of(data) != recorded[name].digest:
                raise self._changed(f"member {name} differs from the sha256 {TOC_NAME} records")
        if expected:
            if member is None:
                raise IntegrityError(f"{self.origin}: bundle truncated: {expected[0]} missing")
            raise BundleFormatError(f"{self.origin}: {expected[0]} missing before the blobs")
        absent = [name for name in recorded if name not in self.layout_files]
        if absent:
            raise self._changed(f"member {absent[0]} that {TOC_NAME} records is missing")
        self._check_layout()
        if self.signature_checked and not recorded:
            self._check_derived_layout()
        return member

    def _changed(self, what: str, *, format_error: bool = False) -> ArcgapError:
        """A layout member that differs from what arcgap.yaml records: forgery once the signature checked out."""
        if self.signature_checked:
            return SignatureError(f"{self.origin}: {what}: the bundle was changed after it was signed",
                                  hint="copy the bundle again from the original; do not import this one")
        if format_error:
            return BundleFormatError(f"{self.origin}: {what}")
        return IntegrityError(f"{self.origin}: {what}")

    def _check_derived_layout(self) -> None:
        """A signed bundle of format version 2 records no member digests: its oci-layout and index.json must be
        exactly what arcgap.yaml derives, and its manifest.json must name the images arcgap.yaml names."""
        from arcgap.bundle.dockercompat import check_docker_load_index

        toc = self.toc
        for name, derived in ((LAYOUT_NAME, toc.oci_layout()), (INDEX_NAME, toc.oci_index())):
            if self.layout_files[name] != derived:
                raise self._changed(f"member {name} is not what the signed {TOC_NAME} describes")
        docker = self.layout_files.get(DOCKER_LOAD_INDEX_NAME)
        if docker is not None:
            problem = check_docker_load_index(toc, docker)
            if problem:
                raise self._changed(f"member {DOCKER_LOAD_INDEX_NAME}: {problem}")

    def _check_layout(self) -> None:
        name = LAYOUT_NAME
        try:  # read as strictly as the manifests: bounded before parsing, the same under every JSON reader
            layout = loads(self.layout_files[LAYOUT_NAME])
            if isinstance(layout, dict):
                check_fields(layout, LAYOUT_FIELDS, "")
            name = INDEX_NAME
            index = loads(self.layout_files[INDEX_NAME])
            check_manifest(index, OCI_INDEX, index=True)
        except StrictJSONError as exc:
            raise BundleFormatError(f"{self.origin}: {name} refused: {exc}") from None
        if not isinstance(layout, dict) or "imageLayoutVersion" not in layout:
            raise BundleFormatError(f"{self.origin}: oci-layout lacks imageLayoutVersion")
        listed: set[tuple[object, object]] = set()
        entries = index.get("manifests") if isinstance(index, dict) else None
        for m in entries if isinstance(entries, list) else []:
            annotations = m.get("annotations") if isinstance(m, dict) else None
            if not isinstance(annotations, dict):
                raise BundleFormatError(f"{self.origin}: index.json does not match {TOC_NAME}")
            listed.add((str(m.get("digest")), str(annotations.get("org.opencontainers.image.ref.name"))))
        declared = {(str(i.digest), i.ref_name) for i in self.toc.images}
        if listed != declared:
            raise BundleFormatError(f"{self.origin}: index.json does not match {TOC_NAME}")

    def blobs(self) -> Iterator[tuple[BlobEntry, Iterator[bytes]]]:
        """Yield each blob with an iterator of its verified bytes; consume it before asking for the next."""
        self.read_layout()
        assert self._first_blob is not None
        member = self._first_blob.pop()
        expected = list(self.toc.blobs)
        for n, entry in enumerate(expected):
            if member is None:
                missing = len(expected) - n
                raise IntegrityError(
                    f"{self.origin}: bundle truncated: blob {entry.digest} missing"
                    + (f" (and {missing - 1} more)" if missing > 1 else "")
                )
            if member.name != entry.member:
                raise BundleFormatError(
                    f"{self.origin}: unexpected member {member.name[:200]!r} where {entry.member} belongs"
                )
            if member.size != entry.size:
                raise IntegrityError(
                    f"{self.origin}: blob {entry.digest}: size {member.size} differs from the declared {entry.size}"
                )
            self.current = f"blob {entry.digest}"
            verifier = Verifier(entry.digest, entry.size, what=f"blob {entry.digest}")
            chunks = self._verified(verifier)
            if entry.kind == "config" and entry.media_type in CONFIG_MEDIA_TYPES:
                chunks = self._checked_config(entry, chunks)
            yield entry, chunks
            if self._tar._remaining:
                raise RuntimeError("blob iterator not consumed")
            member = self._next()
        if member is not None:
            raise BundleFormatError(f"{self.origin}: unexpected member {member.name[:200]!r} after the last blob")
        self._drain()

    def _checked_config(self, entry: BlobEntry, chunks: Iterator[bytes]) -> Iterator[bytes]:
        """An image config, read whole and checked the strict way before any of it is handed on."""
        if entry.size > MAX_CONFIG_BYTES:
            raise BundleFormatError(f"{self.origin}: config {entry.digest.short} of {entry.size} bytes is "
                                    f"implausibly large (over {MAX_CONFIG_BYTES})")
        data = b"".join(chunks)
        try:
            check_config(loads(data))
        except StrictJSONError as exc:
            raise BundleFormatError(f"{self.origin}: config {entry.digest.short} refused: {exc}") from None
        yield data

    def _verified(self, verifier: Verifier) -> Iterator[bytes]:
        """The member's bytes; any failure inside it names the bundle and the blob."""
        try:
            yield from verified_chunks(self._tar.iter_member(READ_CHUNK), verifier)
        except IntegrityError as exc:
            detail = exc.message.removeprefix(f"{verifier.what}: ")
            raise IntegrityError(f"{self.origin}: {verifier.what}: {detail}") from None

    def _drain(self) -> None:
        """Read to the end of the zstd stream so its checksum is checked; only zero padding may follow."""
        self.current = "the end of the archive"
        padding = 0
        while True:
            try:
                data = self._tar.read_trailing(READ_CHUNK)
            except IntegrityError as exc:
                raise IntegrityError(f"{self.origin}: {exc.message} (at the end of the archive)") from None
            padding += len(data)
            if padding > MAX_TRAILING_BYTES:  # a few compressed bytes can expand to terabytes of zeros
                raise BundleFormatError(
                    f"{self.origin}: more than {MAX_TRAILING_BYTES} bytes of padding after the end of the archive"
                )
            if not data:
                if not self._frames.complete:
                    raise IntegrityError(f"{self.origin}: bundle truncated: the compressed stream ends mid-frame")
                if self._raw.read(READ_CHUNK):  # reads the input to its end, so the last part is checked too
                    raise BundleFormatError(f"{self.origin}: unexpected data after the end of the archive")
                self.finished = True
                return
            if data.strip(b"\0"):
                raise BundleFormatError(f"{self.origin}: unexpected data after the end of the archive")


class _Tracked:
    """Passes compressed bytes through to the decompressor while the frame tracker watches them."""

    def __init__(self, inner: _Prepend, tracker: FrameTracker) -> None:
        self._inner = inner
        self._tracker = tracker

    def read(self, n: int = -1) -> bytes:
        data = self._inner.read(n)
        self._tracker.feed(data)
        return data


class _Prepend:
    """A stream with some bytes put back in front."""

    def __init__(self, head: bytes, stream: BinaryIO) -> None:
        self._head = head
        self._stream = stream

    def read(self, n: int = -1) -> bytes:
        if self._head:
            if n < 0:
                data, self._head = self._head + self._stream.read(), b""
                return data
            data, self._head = self._head[:n], self._head[n:]
            if len(data) < n:
                data += self._stream.read(n - len(data))
            return data
        return self._stream.read(n)


@contextmanager
def open_bundle(path: Path, *, hash_parts: bool = True) -> Iterator[BundleReader]:
    """Open a bundle by its file, its ``NAME.parts.yaml`` or any of its parts; parts are read as one stream.

    Every part is checked for presence (and, with the sidecar, size) before a byte is read. A bundle error
    raised after a part that does not match the sidecar was read is reported as that part's damage.
    ``hash_parts=False`` (import) leaves each part's sha256 to that error path: see :class:`PartStream`.
    """
    parts = locate(path)
    check_present(parts)
    stream = PartStream(parts, hash_parts=hash_parts)
    reader: BundleReader | None = None
    try:
        reader = BundleReader(stream, origin=parts.origin)  # type: ignore[arg-type]
        reader.parts = parts
        _check_identity(reader, parts)
        yield reader
    except (IntegrityError, BundleFormatError):
        if reader is None or not reader.finished:  # after the whole bundle checked out, no part is to blame
            stream.blame()
        raise
    except ArcgapError:
        if stream.failure is not None:  # a part failed its check, and the error was re-worded on its way up
            raise stream.failure from None
        raise
    finally:
        stream.close()


def _check_identity(reader: BundleReader, parts: PartSet) -> None:
    """The sidecar must describe this bundle: its arcgap.yaml bytes hash to what the sidecar records."""
    if parts.index is None:
        return
    expected = parts.index.identity
    if hashlib.sha256(reader.toc_bytes).hexdigest() != expected.manifest_sha256:
        raise IntegrityError(
            f"{parts.sidecar} describes another bundle (created {expected.created}) than "
            f"{parts.files[0].path} holds (created {reader.toc.created})",
            hint="copy the parts and the .parts.yaml file of the same export",
        )
