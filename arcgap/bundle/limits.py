"""Every limit on what an (untrusted) bundle, its sidecar or a receipt can make arcgap hold or do.

Within these, memory and time stay flat whatever the input declares; beyond them arcgap refuses the input
(exit 8, a malformed bundle) before it allocates or reads what was asked for. README: "Limits".
"""

from __future__ import annotations

KiB = 1024
MiB = 1024 * KiB

# -- the tar layer ------------------------------------------------------------------------------------------
MAX_PAX_BYTES = 64 * KiB  # one PAX extended header (arcgap writes at most a few hundred bytes)
MAX_PAX_HEADERS = 2  # PAX extended headers in front of one member (arcgap writes at most one)
MAX_PAX_RECORDS = 32  # key=value records in the PAX headers of one member
MAX_MEMBER_NAME = 1024  # characters in a member name ("blobs/sha512/" + 128 hex digits is 141)
MAX_TRAILING_BYTES = 1 * MiB  # zero padding after the end-of-archive marker

# -- the zstd layer -----------------------------------------------------------------------------------------
ZSTD_WINDOW_LOG_MAX = 27  # a frame may ask for a window of at most 2**27 bytes (zstd's own default limit)
MAX_WINDOW_BYTES = 1 << ZSTD_WINDOW_LOG_MAX

# -- YAML: arcgap.yaml, NAME.parts.yaml, receipts -------------------------------------------------------------
MAX_YAML_BYTES = 4 * MiB  # arcgap.yaml (about 170 bytes per blob: 10,000 blobs take 1.7 MB)
MAX_SIDECAR_BYTES = 4 * MiB  # NAME.parts.yaml
MAX_RECEIPT_BYTES = 16 * MiB  # a receipt (given to export --since)
# scalars, lists and mappings in one YAML document (9 per blob, ~15 per image); 150,000 nodes take ~2 s and
# ~90 MiB to load on a loaded 2-core machine, 400,000 took 13 s and 190 MiB
MAX_YAML_NODES = 150_000
MAX_YAML_DEPTH = 32  # nesting of lists and mappings
# anchors and aliases: refused (arcgap never writes them)

# -- small members read whole: arcgap.yaml.sig, oci-layout, index.json, manifest.json ------------------------
MAX_SIGNATURE_BYTES = 64 * KiB
MAX_LAYOUT_MEMBER_BYTES = 16 * MiB
MAX_OCI_LAYOUT_BYTES = 4 * KiB  # oci-layout: arcgap writes 30 bytes
# JSON in members and manifests is also bounded by its objects and arrays before it is parsed
# (arcgap.oci.strictjson.MAX_CONTAINERS): 16 MiB of "[{},{},...]" would take ~450 MiB to parse

# -- counts in arcgap.yaml --------------------------------------------------------------------------------------
MAX_IMAGES = 1_000  # an Arc release has a few dozen
MAX_BLOBS = 10_000  # in the bundle, and again relied on (relies_on); a release has a few hundred
MAX_BASES = 64  # relies_on entries
MAX_PARTS = 10_000  # parts in NAME.parts.yaml (10,000 × 4 GiB DVDs is 40 TiB)
MAX_BLOB_BYTES = 1 << 50  # one blob's declared size (1 PiB)
MAX_TEXT = 4 * KiB  # a free-text field (created, arcgap_version, source, platform, media type)

# -- the manifest graph -------------------------------------------------------------------------------------
MAX_MANIFEST_BYTES = 4 * MiB  # one manifest or index (distribution's own limit for a manifest PUT)
MAX_MANIFESTS_TOTAL_BYTES = 64 * MiB  # all manifests and indexes of a bundle, held in memory until tags move
MAX_GRAPH_DEPTH = 2  # an index of image manifests; nested indexes are refused (export refuses them too)
MAX_INDEX_CHILDREN = 256  # platform manifests in one index
MAX_LAYERS = 1_024  # layers in one image manifest
