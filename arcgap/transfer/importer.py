"""``arcgap import``: one streaming pass over a bundle into a registry, tags last.

A composition of the engine: :class:`~arcgap.transfer.bundlesource.BundleSource` into a registry as the sink
(see :mod:`arcgap.transfer.engine` for the order of events). A differential bundle's relied-on blobs must all be
at the target, or mountable there, before anything is sent.
"""

from __future__ import annotations

from arcgap.bundle.reader import BundleReader
from arcgap.transfer.bundlesource import BundleSource
from arcgap.transfer.engine import CopyOptions, copy_images
from arcgap.transfer.plan import map_targets
from arcgap.transfer.sink import Sink
from arcgap.transfer.tally import ImageOutcome, ImportResult
from arcgap.util.parallel import DEFAULT_JOBS
from arcgap.util.progress import Reporter, human_bytes

__all__ = ["ImageOutcome", "ImportResult", "import_bundle"]


def import_bundle(
    reader: BundleReader,
    client: Sink,
    *,
    target_repository: str,
    target_tag: str | None,
    jobs: int = DEFAULT_JOBS,
    reporter: Reporter | None = None,
    dry_run: bool = False,
    background_max_bytes: int | None = None,
) -> ImportResult:
    """Copy the bundle's images into ``client``; blobs up to ``background_max_bytes`` (None: the default) are
    held and uploaded beside the read."""
    reporter = reporter or Reporter()
    targets = map_targets(reader.toc, registry=client.registry, repository=target_repository, tag=target_tag)
    client.ping()
    options = CopyOptions(jobs=jobs, dry_run=dry_run, label=f"importing into {client.registry}",
                          where=f"{client.registry}/{target_repository}", background_max_bytes=background_max_bytes)
    result, _ = copy_images(BundleSource(reader), client, targets, ImportResult(dry_run=dry_run), options=options,
                            reporter=reporter)
    if dry_run:
        reporter.phase(f"dry run: {result.lacking_placements} blob placements missing at the target "
                       f"({human_bytes(result.lacking_bytes)} to send); nothing changed")
    return result
