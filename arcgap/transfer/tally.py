"""The tally of one copy: what happened to each image and blob; the summary, ``--json`` and the receipt read it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arcgap.bundle.format import BlobEntry
from arcgap.oci.digest import Digest
from arcgap.transfer.plan import TargetImage


@dataclass(frozen=True)
class ImageOutcome:
    """What a copy did for one target reference (see :data:`arcgap.transfer.receipt.ACTIONS`)."""

    target: TargetImage
    action: str  # pushed | mounted | skipped
    uploaded_blobs: int
    mounted_blobs: int
    present_blobs: int
    held: Digest | None = None  # what the sink holds under the tag, where it rewrote the manifest (Docker Engine)
    notes: Mapping[str, str | None] = field(default_factory=dict)  # what a sink adds (the engine's image ID)

    def to_dict(self, *, dry_run: bool) -> dict[str, Any]:
        entry = self.target.entry
        action = self.action
        if self.held is not None and self.held != entry.digest and action != "skipped":
            action += " (digest changed)"
        doc: dict[str, Any] = {
            "source": entry.source,
            "target": self.target.reference,
            "digest": str(self.held or entry.digest),  # what the target holds under the tag
            "media_type": entry.media_type,
            "platforms": [p.platform for p in entry.platforms],
            "action": action,
            "pushed": not dry_run and self.action != "skipped",  # this run wrote the tag
            "blobs": {"uploaded": self.uploaded_blobs, "mounted": self.mounted_blobs,
                      "present": self.present_blobs},
        }
        if self.held is not None:
            doc["bundle_digest"] = str(entry.digest)
        doc.update(self.notes)
        return doc


@dataclass
class Tally:
    """Counts kept by :func:`arcgap.transfer.engine.copy_images`; commands add what they report on top."""

    dry_run: bool
    outcomes: list[ImageOutcome] = field(default_factory=list)
    held_blobs: list[BlobEntry] = field(default_factory=list)  # every blob the target holds for these images
    blobs: int = 0  # blobs in the source (manifests, configs, layers)
    uploaded_blobs: int = 0  # (repository, blob) placements by upload
    uploaded_bytes: int = 0
    mounted_blobs: int = 0
    skipped_blobs: int = 0  # blobs no bytes were sent for: the target held them (mounted where a repository lacked one)
    skipped_bytes: int = 0
    verified_bytes: int = 0  # bytes read from the source and verified
    relied_on_blobs: int = 0
    skipped_tags: int = 0  # tags already at their digest, left alone
    seconds: float = 0.0
    content_bytes: int = 0  # configs and layers the images need, each once
    missing_bytes: int = 0  # of those, bytes no repository of the target held: what must move
    present_bytes: int = 0  # bytes every repository needing them already held
    lacking_placements: int = 0  # (repository, blob) pairs the target lacked (a dry run reports them)
    lacking_bytes: int = 0  # bytes of the blobs some repository lacked
    referrers: dict[str, Any] | None = None  # arcgap.transfer.referrerplace.Placed.to_dict(): how they were placed

    @property
    def images(self) -> list[dict[str, Any]]:
        return [o.to_dict(dry_run=self.dry_run) for o in self.outcomes]


@dataclass
class ImportResult(Tally):
    receipt_file: Path | None = None  # set by the caller once the receipt is written
    receipt: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # what a sink adds to --json (the engine, its warnings)

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "command": "import",
            "dry_run": self.dry_run,
            "images": self.images,
            "blobs": self.blobs,
            "uploaded_blobs": self.uploaded_blobs,
            "uploaded_bytes": self.uploaded_bytes,
            "mounted_blobs": self.mounted_blobs,
            "skipped_blobs": self.skipped_blobs,
            "skipped_bytes": self.skipped_bytes,
            "verified_bytes": self.verified_bytes,
            "relied_on_blobs": self.relied_on_blobs,
            "skipped_tags": self.skipped_tags,
            "seconds": round(self.seconds, 3),
        }
        if self.referrers is not None:
            doc["referrers"] = self.referrers
        doc.update(self.extra)
        if self.receipt_file is not None:
            doc["receipt_file"] = str(self.receipt_file)
            doc["receipt"] = self.receipt
        return doc
