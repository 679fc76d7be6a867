"""Checks that a bundle's manifests, its ``arcgap.yaml`` and its blobs form one complete graph (pure).

The whole graph: every index child and every config and layer is listed, with its size; an index's children
are image manifests (a nested index is over the depth limit, as export refuses it too); the media type each
manifest's own bytes declare is the one arcgap.yaml and its parent declare; every manifest blob is used, and no
config or layer is labelled a manifest. ``verify`` and ``import`` call this at the same point, so one defect
gets one exit code. A differential bundle's relied-on blobs count as present elsewhere (at the target).
Referrers (format version 5) belong to their image: their bytes must name the recorded ``subject`` and their
configs and layers are among the image's blobs.
"""

from __future__ import annotations

from dataclasses import dataclass

from arcgap.bundle.format import MANIFEST_KINDS, ImageEntry, TableOfContents
from arcgap.bundle.limits import MAX_GRAPH_DEPTH, MAX_INDEX_CHILDREN, MAX_LAYERS
from arcgap.bundle.referrers import ReferrerEntry, subject_of
from arcgap.errors import BundleFormatError, RegistryError
from arcgap.oci.digest import Digest
from arcgap.oci.mediatypes import ParsedManifest, is_index, parse_manifest, sniff_media_type


@dataclass(frozen=True)
class ImageGraph:
    entry: ImageEntry
    children: tuple[tuple[Digest, bytes, str], ...]  # platform manifests of an index: digest, raw, media type
    blobs: frozenset[Digest]  # configs and layers this image needs
    relied: frozenset[Digest] = frozenset()  # those of them the bundle relies on the target holding
    referrers: tuple[tuple[ReferrerEntry, bytes], ...] = ()  # subjects first: the order to place them in


def build_graph(toc: TableOfContents, manifests: dict[Digest, bytes], *, origin: str) -> list[ImageGraph]:
    """``manifests`` holds the verified bytes of every manifest blob. Raises if anything is missing."""
    in_bundle = {b.digest: b for b in toc.blobs}
    elsewhere = {b.digest: b for b in toc.relied_on_blobs}
    declared = {**in_bundle, **elsewhere}  # configs and layers may be either; manifests are always in the bundle
    graphs: list[ImageGraph] = []

    used: set[Digest] = set()
    roles: dict[Digest, set[str]] = {}  # what each config or layer serves as in the manifests

    def parsed(digest: Digest, media_type: str, what: str) -> ParsedManifest:
        raw = manifests.get(digest)
        if raw is None:
            raise BundleFormatError(f"{origin}: {what}: manifest {digest} is not in the bundle")
        entry = in_bundle.get(digest)
        if entry is None or entry.media_type != media_type:
            raise BundleFormatError(f"{origin}: {what}: manifest {digest.short} is listed with another media type "
                                    f"than {media_type[:100]!r}")
        own = sniff_media_type(raw)
        if own is not None and own != media_type:  # the registry would store it as the type its bytes declare
            raise BundleFormatError(f"{origin}: {what}: manifest {digest.short} declares media type {own[:100]!r} "
                                    f"in its bytes, not {media_type[:100]!r}")
        try:
            result = parse_manifest(raw, media_type, what=what)
        except RegistryError as exc:
            raise BundleFormatError(f"{origin}: {exc.message}") from None
        if len(result.children) > MAX_INDEX_CHILDREN or len(result.layers) > MAX_LAYERS:
            raise BundleFormatError(f"{origin}: {what}: more than {MAX_INDEX_CHILDREN} children or {MAX_LAYERS} "
                                    "layers in one manifest")
        used.add(digest)
        return result

    for image in toc.images:
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
                if is_index(child.media_type):
                    raise BundleFormatError(f"{origin}: {what}: index child {child.digest.short} is itself an "
                                            f"index (nested deeper than {MAX_GRAPH_DEPTH} levels)",
                                            hint="arcgap export refuses nested indexes: the bundle was altered "
                                                 "or not written by arcgap")
                entry = in_bundle.get(child.digest)
                if entry is None or entry.size != child.size:
                    raise BundleFormatError(f"{origin}: {what}: child manifest {child.digest} missing or wrong size")
                child_what = f"{what}@{child.digest.short}"
                image_manifests.append((child.digest, parsed(child.digest, child.media_type, child_what)))
                children.append((child.digest, manifests[child.digest], child.media_type))
        else:
            image_manifests.append((image.digest, top))
        mine: list[tuple[ReferrerEntry, bytes]] = []
        for ref in (r for r in toc.referrers if r.image == image.ref_name):
            ref_what = f"{what} referrer {ref.digest.short}"
            if is_index(ref.media_type):
                raise BundleFormatError(f"{origin}: {ref_what}: a referrer that is an index is not carried")
            image_manifests.append((ref.digest, parsed(ref.digest, ref.media_type, ref_what)))
            if ref.tag is None and subject_of(manifests[ref.digest]) != ref.subject:
                raise BundleFormatError(f"{origin}: {ref_what}: its subject is not {ref.subject.short}")
            mine.append((ref, manifests[ref.digest]))
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
                if entry.kind not in ("config", "layer"):
                    raise BundleFormatError(f"{origin}: {what}: blob {d.digest.short} is used as a config or layer "
                                            f"but listed as a {entry.kind}")
                roles.setdefault(d.digest, set()).add("config" if d is m.config else "layer")
                needed.add(d.digest)
        graphs.append(ImageGraph(image, tuple(children), frozenset(needed), frozenset(needed.intersection(elsewhere)),
                                 tuple(mine)))
    unused = [b for b in toc.blobs if b.kind in MANIFEST_KINDS and b.digest not in used]
    if unused:
        raise BundleFormatError(f"{origin}: {unused[0].kind} {unused[0].digest.short} is listed but no image uses it")
    for b in toc.blobs:  # a blob may serve as both (OCI's empty descriptor): its kind must be one of its uses
        if b.kind in ("config", "layer") and b.kind not in roles.get(b.digest, ()):
            use = " and ".join(sorted(roles.get(b.digest, ()))) or "nothing"
            raise BundleFormatError(f"{origin}: blob {b.digest.short} is listed as a {b.kind} but used as {use}")
    return graphs
