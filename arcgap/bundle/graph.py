"""Checks that a bundle's manifests, its ``arcgap.yaml`` and its blobs form one complete graph (pure).

A differential bundle's relied-on blobs count as present elsewhere (at the target); the importer checks them.
"""

from __future__ import annotations

from dataclasses import dataclass

from arcgap.bundle.format import BundleManifest, ImageEntry
from arcgap.errors import BundleFormatError, RegistryError
from arcgap.oci.digest import Digest
from arcgap.oci.mediatypes import ParsedManifest, is_index, parse_manifest


@dataclass(frozen=True)
class ImageGraph:
    entry: ImageEntry
    children: tuple[tuple[Digest, bytes, str], ...]  # platform manifests of an index: digest, raw, media type
    blobs: frozenset[Digest]  # configs and layers this image needs
    relied: frozenset[Digest] = frozenset()  # those of them the bundle relies on the target holding


def build_graph(manifest: BundleManifest, manifests: dict[Digest, bytes], *, origin: str) -> list[ImageGraph]:
    """``manifests`` holds the verified bytes of every manifest blob. Raises if anything is missing."""
    in_bundle = {b.digest: b for b in manifest.blobs}
    elsewhere = {b.digest: b for b in manifest.relied_on_blobs}
    declared = {**in_bundle, **elsewhere}  # configs and layers may be either; manifests are always in the bundle
    graphs: list[ImageGraph] = []

    def parsed(digest: Digest, media_type: str, what: str) -> ParsedManifest:
        raw = manifests.get(digest)
        if raw is None:
            raise BundleFormatError(f"{origin}: {what}: manifest {digest} is not in the bundle")
        try:
            return parse_manifest(raw, media_type, what=what)
        except RegistryError as exc:
            raise BundleFormatError(f"{origin}: {exc.message}") from None

    for image in manifest.images:
        what = image.ref_name
        top = parsed(image.digest, image.media_type, what)
        children: list[tuple[Digest, bytes, str]] = []
        needed: set[Digest] = set()
        image_manifests: list[tuple[Digest, ParsedManifest]] = []
        if is_index(image.media_type):
            listed = {(c.digest, c.media_type) for c in top.children}
            recorded = {(p.digest, p.media_type) for p in image.platforms}
            if listed != recorded:
                raise BundleFormatError(f"{origin}: {what}: platforms in arcgap.yaml differ from the index")
            for child in top.children:
                if child.digest in {c[0] for c in children}:
                    continue
                entry = in_bundle.get(child.digest)
                if entry is None or entry.size != child.size:
                    raise BundleFormatError(f"{origin}: {what}: child manifest {child.digest} missing or wrong size")
                child_what = f"{what}@{child.digest.short}"
                image_manifests.append((child.digest, parsed(child.digest, child.media_type, child_what)))
                children.append((child.digest, manifests[child.digest], child.media_type))
        else:
            image_manifests.append((image.digest, top))
        for _digest, m in image_manifests:
            for d in m.blobs:
                entry = declared.get(d.digest)
                if entry is None:
                    raise BundleFormatError(
                        f"{origin}: {what}: blob {d.digest} is referenced but not in the bundle",
                        hint="the bundle is incomplete; export it again",
                    )
                if entry.size != d.size:
                    raise BundleFormatError(f"{origin}: {what}: blob {d.digest} size differs from its manifest")
                needed.add(d.digest)
        graphs.append(ImageGraph(image, tuple(children), frozenset(needed), frozenset(needed.intersection(elsewhere))))
    return graphs
