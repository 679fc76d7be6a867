"""The one copy routine: images from a :class:`~arcgap.transfer.source.Source` into a
:class:`~arcgap.transfer.sink.Sink`; import and mirror are compositions of it, and export is
:func:`copy_stream` into a :class:`~arcgap.transfer.sink.StreamSink` (a bundle has nothing to place or publish).

Order of events, whatever the pair: the source's manifests are read and checked as a graph; the sink is asked
which blobs each repository holds (in the background, the source's order first); blobs the source relies on the
sink holding must be there or mountable before anything is sent; every blob is placed (present, mounted, or
uploaded, verified on the way; a refused mount falls back to an upload) with bounded parallelism; only then are
manifests pushed by digest (children before their index), then tags, then every tag re-read. The first failure,
or Ctrl-C, stops the run before any manifest moves.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

from arcgap.bundle.format import MANIFEST_KINDS, BlobEntry
from arcgap.errors import Fault, IntegrityError, MissingBaseError, option
from arcgap.oci.digest import Digest
from arcgap.transfer.background import BackgroundUploads, background_slots
from arcgap.transfer.placement import Placements
from arcgap.transfer.plan import TargetImage
from arcgap.transfer.publish import Publication, push_manifests_and_tags, verify_tags
from arcgap.transfer.referrerplace import place_referrers
from arcgap.transfer.sink import Sink, StreamSink
from arcgap.transfer.source import Contents, Meter, Source
from arcgap.transfer.tally import ImageOutcome, Tally
from arcgap.util.parallel import DEFAULT_JOBS, each
from arcgap.util.progress import Reporter

TallyT = TypeVar("TallyT", bound=Tally)


@dataclass(frozen=True)
class CopyOptions:
    jobs: int = DEFAULT_JOBS  # blobs placed at once (a random-access source), questions and publications in flight
    dry_run: bool = False  # plan, ask the sink, report; change nothing
    label: str = "copying"  # the progress line, e.g. "importing into 10.0.0.5:5000"
    where: str = ""  # the target named in hints, registry/repository
    background_max_bytes: int | None = None  # blobs held to upload beside a sequential read (None: the default)


def copy_images(source: Source, sink: Sink, targets: Sequence[TargetImage], tally: TallyT, *,
                options: CopyOptions, reporter: Reporter) -> tuple[TallyT, Contents]:
    """Copy the images ``targets`` name (one per image of the source, in order); returns the tally and contents."""
    copy = _Copy(source, sink, list(targets), tally, options=options, reporter=reporter)
    contents = copy.run()
    return tally, contents


def copy_stream(source: Source, sink: StreamSink, *, meter: Meter) -> Contents:
    """Every blob of ``source`` into ``sink``, in the source's order (a random-access source reads ahead)."""
    try:
        contents = source.contents(meter)
        stream = source.stream(meter)
        try:
            sink.write(contents, stream)
        finally:
            _close(stream)  # stops the read-ahead now, not when the traceback lets go of it
    finally:
        _close(source)  # also when the source's manifests were refused
    return contents


def _close(closable: object) -> None:
    """Close a stream or a source that can be closed (a bundle's read-ahead thread stops)."""
    close = getattr(closable, "close", None)
    if close is not None:
        close()


class _Copy:
    def __init__(self, source: Source, sink: Sink, targets: list[TargetImage], tally: Tally, *,
                 options: CopyOptions, reporter: Reporter) -> None:
        self.source = source
        self.sink = sink
        self.targets = targets
        self.tally = tally
        self.options = options
        self.reporter = reporter
        self.placements = Placements(sink)  # also updated by background uploads
        self._lock = threading.Lock()  # the tally and the reporter are shared by workers
        self._in_source: dict[Digest, int] = {}
        self._rewritten: dict[str, Digest] = {}  # what a rewriting sink holds under a tag instead (the Docker Engine)

    def _meter(self, n_bytes: int) -> None:
        with self._lock:
            self.tally.verified_bytes += n_bytes
            self.reporter.advance(n_bytes)

    def run(self) -> Contents:
        t0 = time.monotonic()
        contents = self.source.contents(self._meter)
        toc = contents.toc
        self.tally.blobs = len(toc.blobs)
        self._in_source = {b.digest: b.size for b in toc.blobs}
        for target, graph in zip(self.targets, contents.graphs):
            self.placements.need(target.repository, graph.blobs)
        self.reporter.phase(f"checking which of {len(self.placements.digests)} blobs {self.sink.registry} "
                            "already has")
        try:
            # Answers arrive while the first blobs are placed; each placement waits for its own blob's answers.
            self.placements.start_check(jobs=self.options.jobs, probe=not self.options.dry_run,
                                        order=[b.digest for b in (*toc.relied_on_blobs, *toc.blobs)])
            self._check_relied_on(contents)
            if not self.options.dry_run:
                data_bytes = sum(b.size for b in toc.blobs if b.kind not in MANIFEST_KINDS)
                self.reporter.start(data_bytes, images=len(self.targets), label=self.options.label)
                if self.source.sequential:
                    self._stream(contents)
                else:
                    entries = {b.digest: b for b in toc.blobs}
                    wanted = [entries[d] for d in self.placements.digests if d in entries]
                    each(self._place, wanted, jobs=self.options.jobs, name="arcgap-copy")
            current = each(lambda t: self.sink.head_manifest(t.repository, t.tag), self.targets,
                           jobs=self.options.jobs)
            if not self.options.dry_run:
                # Every blob is verified and present: now manifests by digest, then the tags.
                pubs = [Publication(t, contents.raw(t.entry.digest), g.children)
                        for t, g in zip(self.targets, contents.graphs)]
                self._rewritten = push_manifests_and_tags(self.sink, pubs, current, self.reporter,
                                                          jobs=self.options.jobs, releases=toc.releases)
                verify_tags(self.sink, self.targets, jobs=self.options.jobs, rewritten=self._rewritten)
                self.tally.referrers = place_referrers(self.sink, self.targets, contents.graphs,
                                                       self.reporter, jobs=self.options.jobs).to_dict()
            self._describe(contents, current)
        finally:
            self.placements.close()  # questions still open (a failed run) are dropped
            _close(self.source)  # a run that ends before the stream (refused, a dry run) stops the read-ahead too
        self.reporter.close()
        self.tally.seconds = time.monotonic() - t0
        return contents

    # -- what the source relies on ------------------------------------------------------------------------

    def _check_relied_on(self, contents: Contents) -> None:
        """Every relied-on blob must be in each repository that needs it, or mountable from one that has it.

        Runs before any blob is sent: if the base is missing, nothing at all changes at the target.
        """
        relied = [b.digest for b in contents.toc.relied_on_blobs if b.digest in self.placements]
        self.tally.relied_on_blobs = len(relied)
        if not relied:
            return
        self.reporter.phase(f"checking the {len(relied)} blobs the bundle relies on")
        mounts: list[tuple[Digest, str, str]] = []
        for n, digest in enumerate(relied):
            holder = self.placements.holder(digest)
            if holder is None:
                # Stop asking at the first lacking blob (10,000 lacking ones were 10,000 HEADs before the
                # refusal); those whose answers are already in are counted, without waiting for the rest.
                rest = relied[n + 1:]
                answered = self.placements.answered(rest)
                lacking = [digest, *(d for d in answered if self.placements.holder(d) is None)]
                raise self._missing_base(contents, lacking, asked=n + 1 + len(answered), total=len(relied))
            mounts += [(digest, r, holder) for r in self.placements.missing(digest)]
        if self.options.dry_run:
            return
        refused = {d for d, repo, holder in mounts if not self.placements.mount(repo, d, holder)}
        if refused:
            ordered = sorted(refused)
            raise self._missing_base(contents, ordered, asked=len(relied), total=len(relied), mounting=True)

    def _missing_base(self, contents: Contents, digests: list[Digest], *, asked: int, total: int,
                      mounting: bool = False) -> MissingBaseError:
        toc = contents.toc
        names = list(dict.fromkeys(base.name for d in digests if (base := toc.base_of(d)) is not None))
        named = " and ".join(names) or "an earlier bundle"
        if asked >= total:
            count = f"{len(digests)} of {total} blob{'s' if total != 1 else ''} missing"
        else:  # stopped at the first lacking blob: the others were not all asked about
            count = f"at least {len(digests)} of {total} blobs missing (stopped after asking about {asked})"
        first = f"the first {digests[0]}" if len(digests) > 1 else f"blob {digests[0]}"
        if mounting:
            return MissingBaseError(
                f"the bundle relies on blobs from {named} that the target lacks: {count}, {first} "
                "(the registry refused to mount them from another repository)",
                hint=f"import {named} into these repositories first, or export a full bundle "
                     f"(without {option('since')})",
            )
        return MissingBaseError(
            f"the bundle relies on blobs from {named} that the target lacks: {count}, {first}",
            hint=f"import {named} into {self.options.where} first, or export a full bundle "
                 f"(without {option('since')}); nothing was changed",
        )

    # -- blobs ----------------------------------------------------------------------------------------------

    def _classify(self, digest: Digest) -> list[str]:
        """Count ``digest`` as present, mountable or missing at the sink; the repositories lacking it."""
        missing = self.placements.missing(digest)
        size = self._in_source.get(digest, 0)
        with self._lock:
            if not missing:
                self.tally.present_bytes += size
            else:
                self.tally.lacking_placements += len(missing)
                self.tally.lacking_bytes += size
                if self.placements.holder(digest) is None:
                    self.tally.missing_bytes += size
        return missing

    def _decide(self, digest: Digest) -> list[str]:
        """Classify, then mount from a repository holding it; the repositories that still need the bytes.

        A blob the target already had (in every repository needing it, or in one to mount it from) is skipped.
        """
        missing = self.placements.mount_from_holder(digest) if self._classify(digest) else []
        if not missing:
            with self._lock:
                self.tally.skipped_blobs += 1
                self.tally.skipped_bytes += self._in_source.get(digest, 0)
        return missing

    def _place(self, entry: BlobEntry) -> None:
        """Random-access source: one blob into all its repositories, one task (a mount never races its upload)."""
        missing = self._decide(entry.digest)
        if not missing:
            with self._lock:
                self.reporter.advance(entry.size)
            return
        try:
            self._upload_from_source(entry, missing)
        except IntegrityError as exc:
            # Bytes that failed their digest at the source never reached the target whole (the last chunk is
            # held back until it is verified): fetch the blob once more, a second mismatch stops the run.
            if exc.detail is None or exc.detail.fault != Fault.BAD_CONTENT:
                raise
            self.reporter.warn(f"{exc.message}; fetching it once more")
            missing = self.placements.mount_from_holder(entry.digest)  # a first repository may hold it by now
            if missing:
                try:
                    self._upload_from_source(entry, missing)
                except IntegrityError as again:
                    if again.detail is not None and again.detail.fault == Fault.BAD_CONTENT:
                        again.message += " (the second time it was fetched too)"
                        again.args = (again.message,)
                    raise

    def _upload_from_source(self, entry: BlobEntry, missing: list[str]) -> None:
        counted = [0]  # bytes metered by this attempt, taken back when it fails

        def meter(n_bytes: int) -> None:
            counted[0] += n_bytes
            self._meter(n_bytes)

        try:
            self.placements.upload(entry.digest, entry.size, missing, self.source.open(entry, meter),
                                   copy_from=lambda _first: self.source.open(entry, meter),
                                   reopen=lambda: self.source.open(entry, meter))
        except IntegrityError:
            self._meter(-counted[0])
            raise

    def _stream(self, contents: Contents) -> None:
        """Sequential source: read every blob once, in order; each blob sent while the stream moves on."""
        stream = self.source.stream(self._meter)
        try:
            with BackgroundUploads(self._upload_read, slots=background_slots(self.options.jobs),
                                   max_bytes=self.options.background_max_bytes) as background:
                for entry, chunks in stream:
                    missing = self._decide(entry.digest)
                    if not missing:
                        for _ in chunks:  # still read and verify every byte
                            pass
                        continue
                    background.place(entry, missing, chunks)
        finally:
            _close(stream)

    def _upload_read(self, entry: BlobEntry, missing: list[str], chunks: Iterator[bytes],
                     again: Callable[[], Iterator[bytes]] | None) -> None:
        """The source cannot be read again: a refused mount copies the verified blob back out of the sink; a lost
        upload session starts over from the blob held in memory (``again``), if it is."""
        def copy_from(first: str) -> Iterator[bytes]:
            return self.sink.stream_blob(first, entry.digest, entry.size)

        self.placements.upload(entry.digest, entry.size, missing, chunks, copy_from=copy_from, reopen=again)

    # -- the tally ------------------------------------------------------------------------------------------

    def _describe(self, contents: Contents, current: list[Digest | None]) -> None:
        if self.options.dry_run:
            for digest in self.placements.digests:
                self._classify(digest)
        self.tally.content_bytes = sum(self._in_source.get(d, 0) for d in self.placements.digests)
        self.tally.uploaded_blobs = self.placements.uploaded_blobs
        self.tally.uploaded_bytes = self.placements.uploaded_bytes
        self.tally.mounted_blobs = self.placements.mounted_blobs
        declared = {b.digest: b for b in (*contents.toc.blobs, *contents.toc.relied_on_blobs)}
        held: dict[Digest, BlobEntry] = {}
        for target, graph, now in zip(self.targets, contents.graphs, current):
            summary = self.placements.summary(target.repository, graph.blobs, dry_run=self.options.dry_run)
            action = summary.action
            if now == target.entry.digest:
                action = "skipped"
                self.tally.skipped_tags += 1
            self.tally.outcomes.append(
                ImageOutcome(target, action, summary.uploaded, summary.mounted, summary.present,
                             held=self._rewritten.get(target.reference)))
            for digest in (target.entry.digest, *(c[0] for c in graph.children), *sorted(graph.blobs)):
                held.setdefault(digest, declared[digest])
        self.tally.held_blobs = list(held.values())
