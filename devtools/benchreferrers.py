"""``python -m devtools.bench --signed``: give each generated image a referrer, as a signed release has.

Each image's top manifest gets one SBOM (an OCI artifact manifest whose ``subject`` is the image, with a small
unique layer) behind its fallback tag ``sha256-<hex>`` (the way cosign 3 and ``oras attach`` store them on a
registry without the referrers API), so ``--referrers both`` measures discovery that finds something and an
import that places it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from arcgap.oci.digest import Digest
from arcgap.registry.referrers import fallback_tag
from devtools.images import ImageInfo, Pusher, sha256_digest
from devtools.registries import Registry

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
SBOM_TYPE = "application/spdx+json"
EMPTY = b"{}"


def attach_sboms(registry: Registry, infos: Mapping[str, ImageInfo]) -> int:
    """One SBOM referrer per image (top manifest), findable by its fallback tag; returns how many."""
    empty = {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256_digest(EMPTY), "size": len(EMPTY)}
    with Pusher(registry) as p:
        for name, info in infos.items():
            repo = info.repository
            payload = json.dumps({"spdxVersion": "SPDX-2.3", "name": name, "subject": info.digest}).encode()
            p.push_blob(repo, EMPTY)
            layer = p.push_blob(repo, payload)
            doc = {
                "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": SBOM_TYPE, "config": empty,
                "layers": [{"mediaType": SBOM_TYPE, "digest": layer, "size": len(payload)}],
                "subject": {"mediaType": info.media_type, "digest": info.digest, "size": len(info.manifest)},
            }
            raw = json.dumps(doc, separators=(",", ":")).encode()
            digest = p.push_manifest(repo, sha256_digest(raw), raw, OCI_MANIFEST)
            index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
                {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(raw), "artifactType": SBOM_TYPE}]}
            p.push_manifest(repo, fallback_tag(Digest.parse(info.digest)),
                            json.dumps(index, separators=(",", ":")).encode(), OCI_INDEX)
    return len(infos)
