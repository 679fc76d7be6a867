"""The last steps shared by import and mirror: manifests by digest, then tags, then every tag re-read."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from arcgap.digest import Digest
from arcgap.errors import TargetMismatchError
from arcgap.plan import TargetImage
from arcgap.progress import Reporter
from arcgap.registry.client import RegistryClient


@dataclass(frozen=True)
class Publication:
    """One image ready to publish: the top manifest's raw bytes and its children (digest, raw, media type)."""

    target: TargetImage
    top_raw: bytes
    children: tuple[tuple[Digest, bytes, str], ...]


def push_manifests_and_tags(
    client: RegistryClient, images: Sequence[Publication], current: Sequence[Digest | None], reporter: Reporter
) -> None:
    """Children before their index, all by digest, then the tags; a tag already at its digest is left alone."""
    reporter.phase("pushing manifests")
    moving = [p for p, now in zip(images, current) if now != p.target.entry.digest]
    for pub in moving:
        entry = pub.target.entry
        for digest, raw, media_type in pub.children:
            client.put_manifest(pub.target.repository, str(digest), raw, media_type)
        client.put_manifest(pub.target.repository, str(entry.digest), pub.top_raw, entry.media_type)
    reporter.phase("moving tags")
    for pub in moving:
        entry = pub.target.entry
        client.put_manifest(pub.target.repository, pub.target.tag, pub.top_raw, entry.media_type)
        reporter.item_done(f"{pub.target.reference} → {entry.digest.short}")
    for pub, now in zip(images, current):
        if now == pub.target.entry.digest:
            reporter.item_done(f"{pub.target.reference} already at {now.short}")


def verify_tags(client: RegistryClient, targets: Sequence[TargetImage]) -> None:
    """Re-read every tag after the push; a different digest is an error of its own (exit 10)."""
    for target in targets:
        got = client.head_manifest(target.repository, target.tag)
        if got != target.entry.digest:
            raise TargetMismatchError(
                f"{target.reference} resolves to {got} after the push, expected {target.entry.digest}",
                hint="another writer changed the tag, or the registry rewrote the manifest",
            )
