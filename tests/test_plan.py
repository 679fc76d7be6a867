"""arcgap.transfer.plan: the transfer plan from hand-built resolved images, and the mapping to target references."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from arcgap.bundle.format import BaseBundle, BlobEntry, ImageEntry, PlatformEntry, TableOfContents
from arcgap.cli.hints import words
from arcgap.errors import ExitCode, UsageError
from arcgap.oci.digest import Digest
from arcgap.oci.mediatypes import DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, parse_manifest
from arcgap.oci.reference import Reference
from arcgap.registry.client import FetchedManifest
from arcgap.registry.resolve import PlatformManifest, ResolvedImage, Wanted
from arcgap.transfer.plan import ExportPlan, TargetImage, build_plan, map_targets

REGISTRY = "src.example:5000"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
CREATED = "2024-04-09T10:00:00Z"


def _blob(label: str, size: int) -> tuple[Digest, int]:
    """A layer we never hold in memory: only its digest and size matter to the plan."""
    return Digest.of(label.encode()), size


def _config(arch: str, variant: str = "") -> bytes:
    doc = {"architecture": arch, "os": "linux"}
    if variant:
        doc["variant"] = variant
    return json.dumps(doc, sort_keys=True).encode()


def _fetched(raw: bytes, media_type: str) -> FetchedManifest:
    return FetchedManifest(raw=raw, media_type=media_type, digest=Digest.of(raw))


def _manifest_bytes(config: bytes, layers: list[tuple[Digest, int]], media_type: str = OCI_MANIFEST) -> bytes:
    doc = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {"mediaType": CONFIG_TYPE, "digest": str(Digest.of(config)), "size": len(config)},
        "layers": [{"mediaType": LAYER_TYPE, "digest": str(d), "size": s} for d, s in layers],
    }
    return json.dumps(doc).encode()


def _platform(platform: str, config: bytes, layers: list[tuple[Digest, int]]) -> PlatformManifest:
    fetched = _fetched(_manifest_bytes(config, layers), OCI_MANIFEST)
    return PlatformManifest(platform, fetched, parse_manifest(fetched.raw, fetched.media_type, what="test"))


def _wanted(name: str, tag: str | None, repository: str = "arcdata") -> Wanted:
    return Wanted(name, Reference(REGISTRY, f"{repository}/{name}", tag, None))


def _single(name: str, tag: str, config: bytes, layers: list[tuple[Digest, int]], **kw: str) -> ResolvedImage:
    p = _platform("linux/amd64", config, layers)
    return ResolvedImage(_wanted(name, tag, **kw), p.manifest, (p,), {Digest.of(config): config})


def _index_image(name: str, tag: str, platforms: list[tuple[str, bytes, list[tuple[Digest, int]]]]) -> ResolvedImage:
    children = [_platform(plat, cfg, layers) for plat, cfg, layers in platforms]
    index_doc = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": c.manifest.media_type,
                "digest": str(c.manifest.digest),
                "size": len(c.manifest.raw),
                "platform": dict(zip(("os", "architecture", "variant"), c.platform.split("/"))),
            }
            for c in children
        ],
    }
    top = _fetched(json.dumps(index_doc).encode(), OCI_INDEX)
    parsed = parse_manifest(top.raw, top.media_type, what="index")
    assert [c.platform for c in parsed.children] == [plat for plat, _, _ in platforms]
    configs = {Digest.of(cfg): cfg for _, cfg, _ in platforms}
    return ResolvedImage(_wanted(name, tag), top, tuple(children), configs)


BASE = _blob("base", 30_000_000)
APP_A = _blob("app-a", 1_000)
APP_B = _blob("app-b", 2_000)
ARM_BASE = _blob("arm-base", 28_000_000)
CFG_A = _config("amd64") + b" "  # distinct configs for the two single-platform images
CFG_B = _config("amd64") + b"  "
CFG_AMD = _config("amd64")
CFG_ARM = _config("arm64", "v8")


def _two_sharing_a_base() -> tuple[ResolvedImage, ResolvedImage]:
    return (
        _single("arc-controller", "v1.29.0_2024-04-09", CFG_A, [BASE, APP_A]),
        _single("arc-dns", "v1.29.0_2024-04-09", CFG_B, [BASE, APP_B]),
    )


def _plan(*images: ResolvedImage) -> ExportPlan:
    return build_plan(list(images), source_registry=REGISTRY, source_repository="arcdata", created=CREATED)


def test_shared_layer_appears_once() -> None:
    a, b = _two_sharing_a_base()
    plan = _plan(a, b)
    man_a, man_b = a.top, b.top
    assert plan.toc.blobs == (
        BlobEntry(man_a.digest, len(man_a.raw), OCI_MANIFEST, "manifest"),
        BlobEntry(man_b.digest, len(man_b.raw), OCI_MANIFEST, "manifest"),
        BlobEntry(Digest.of(CFG_A), len(CFG_A), CONFIG_TYPE, "config"),
        BlobEntry(BASE[0], BASE[1], LAYER_TYPE, "layer"),
        BlobEntry(APP_A[0], APP_A[1], LAYER_TYPE, "layer"),
        BlobEntry(Digest.of(CFG_B), len(CFG_B), CONFIG_TYPE, "config"),
        BlobEntry(APP_B[0], APP_B[1], LAYER_TYPE, "layer"),
    )
    assert [b.digest for b in plan.toc.blobs].count(BASE[0]) == 1
    assert plan.dedupe_saved_bytes == BASE[1]
    assert plan.referenced_bytes == plan.toc.total_bytes + BASE[1]
    assert plan.toc.total_bytes == (
        len(man_a.raw) + len(man_b.raw) + len(CFG_A) + len(CFG_B) + BASE[1] + APP_A[1] + APP_B[1]
    )


def test_small_blobs_and_sources() -> None:
    a, b = _two_sharing_a_base()
    plan = _plan(a, b)
    assert plan.small_blobs == {
        a.top.digest: a.top.raw,
        b.top.digest: b.top.raw,
        Digest.of(CFG_A): CFG_A,
        Digest.of(CFG_B): CFG_B,
    }
    assert plan.blob_source[BASE[0]] == (REGISTRY, "arcdata/arc-controller")  # first image that needs it
    assert plan.blob_source[APP_B[0]] == (REGISTRY, "arcdata/arc-dns")
    assert set(plan.blob_source) == {Digest.of(CFG_A), Digest.of(CFG_B), BASE[0], APP_A[0], APP_B[0]}


def test_image_entries() -> None:
    a, b = _two_sharing_a_base()
    plan = _plan(a, b)
    assert plan.toc.images[0] == ImageEntry(
        name="arc-controller",
        tag="v1.29.0_2024-04-09",
        source="src.example:5000/arcdata/arc-controller:v1.29.0_2024-04-09",
        digest=a.top.digest,
        media_type=OCI_MANIFEST,
        size=len(a.top.raw),
        platforms=(PlatformEntry("linux/amd64", a.top.digest, OCI_MANIFEST),),
    )
    assert (plan.toc.source_registry, plan.toc.source_repository, plan.toc.created) == (
        REGISTRY, "arcdata", CREATED
    )


def test_blob_order_is_first_seen() -> None:
    a, b = _two_sharing_a_base()
    forward = [e.digest for e in _plan(a, b).toc.blobs]
    backward = [e.digest for e in _plan(b, a).toc.blobs]
    assert forward[:2] == [a.top.digest, b.top.digest]
    assert backward[:2] == [b.top.digest, a.top.digest]
    assert backward[2:] == [Digest.of(CFG_B), BASE[0], APP_B[0], Digest.of(CFG_A), APP_A[0]]
    assert _plan(b, a).blob_source[BASE[0]] == (REGISTRY, "arcdata/arc-dns")


def test_same_images_same_plan() -> None:
    assert _plan(*_two_sharing_a_base()) == _plan(*_two_sharing_a_base())
    assert _plan(*_two_sharing_a_base()).toc.to_yaml() == _plan(*_two_sharing_a_base()).toc.to_yaml()


def test_index_image_lists_its_platforms() -> None:
    idx = _index_image("arc-bootstrapper", "v1", [
        ("linux/amd64", CFG_AMD, [BASE, APP_A]),
        ("linux/arm64/v8", CFG_ARM, [ARM_BASE, APP_A]),
    ])
    single = _single("arc-dns", "v1", CFG_B, [BASE, APP_B])
    plan = _plan(idx, single)
    amd, arm = idx.platforms
    entry = plan.toc.images[0]
    assert (entry.media_type, entry.digest, entry.size) == (OCI_INDEX, idx.top.digest, len(idx.top.raw))
    assert entry.platforms == (
        PlatformEntry("linux/amd64", amd.manifest.digest, OCI_MANIFEST),
        PlatformEntry("linux/arm64/v8", arm.manifest.digest, OCI_MANIFEST),
    )
    kinds = [(b.digest, b.kind) for b in plan.toc.blobs]
    assert kinds == [
        (idx.top.digest, "index"),
        (amd.manifest.digest, "manifest"),
        (arm.manifest.digest, "manifest"),
        (single.top.digest, "manifest"),
        (Digest.of(CFG_AMD), "config"),
        (BASE[0], "layer"),
        (APP_A[0], "layer"),
        (Digest.of(CFG_ARM), "config"),
        (ARM_BASE[0], "layer"),
        (Digest.of(CFG_B), "config"),
        (APP_B[0], "layer"),
    ]
    # APP_A (both platforms) and BASE (amd64 and arc-dns) are each stored once.
    assert plan.dedupe_saved_bytes == APP_A[1] + BASE[1]
    assert plan.small_blobs[amd.manifest.digest] == amd.manifest.raw
    assert plan.small_blobs[idx.top.digest] == idx.top.raw


def test_manifests_come_before_configs_and_layers() -> None:
    idx = _index_image("x", "v1", [("linux/amd64", CFG_AMD, [APP_A]), ("linux/arm64/v8", CFG_ARM, [ARM_BASE])])
    a, b = _two_sharing_a_base()
    plan = _plan(a, idx, b)
    kinds = [e.kind for e in plan.toc.blobs]
    last_manifest = max(i for i, k in enumerate(kinds) if k in ("index", "manifest"))
    first_data = min(i for i, k in enumerate(kinds) if k in ("config", "layer"))
    assert last_manifest < first_data
    assert kinds[:5] == ["manifest", "index", "manifest", "manifest", "manifest"]


def test_plan_manifest_survives_the_bundle_schema() -> None:
    idx = _index_image("arc-bootstrapper", "v1", [("linux/amd64", CFG_AMD, [BASE]), ("linux/arm64/v8", CFG_ARM,
                                                                                       [ARM_BASE])])
    a, b = _two_sharing_a_base()
    toc = _plan(idx, a, b).toc
    assert TableOfContents.from_yaml(toc.to_yaml()) == toc


def test_docker_media_types_kept() -> None:
    raw = _manifest_bytes(CFG_A, [APP_A], DOCKER_MANIFEST)
    fetched = _fetched(raw, DOCKER_MANIFEST)
    p = PlatformManifest("linux/amd64", fetched, parse_manifest(raw, DOCKER_MANIFEST, what="t"))
    img = ResolvedImage(_wanted("a", "v1"), fetched, (p,), {Digest.of(CFG_A): CFG_A})
    plan = _plan(img)
    assert plan.toc.blobs[0] == BlobEntry(fetched.digest, len(raw), DOCKER_MANIFEST, "manifest")
    assert plan.toc.images[0].media_type == DOCKER_MANIFEST


# -- map_targets ---------------------------------------------------------------------------------------


def _bundle(*name_tags: tuple[str, str]) -> TableOfContents:
    images = []
    for name, tag in name_tags:
        raw = f"{name}:{tag}".encode()
        d = Digest.of(raw)
        images.append(ImageEntry(name, tag, f"{REGISTRY}/arcdata/{name}:{tag}", d, OCI_MANIFEST, len(raw),
                                 (PlatformEntry("linux/amd64", d, OCI_MANIFEST),)))
    return TableOfContents(REGISTRY, "arcdata", tuple(images), (), CREATED)


@pytest.mark.parametrize(
    ("repository", "tag", "expected"),
    [
        pytest.param("mirror/arcdata", None, ["10.0.0.5:5000/mirror/arcdata/arc-controller:v1.29.0_2024-04-09",
                                              "10.0.0.5:5000/mirror/arcdata/sub/arc-dns:v1.29.0_2024-04-09",
                                              "10.0.0.5:5000/mirror/arcdata/arc-bootstrapper:v1.28.0"],
                     id="nested-repository-own-tags"),
        pytest.param("/mirror/arcdata/", None, ["10.0.0.5:5000/mirror/arcdata/arc-controller:v1.29.0_2024-04-09",
                                                "10.0.0.5:5000/mirror/arcdata/sub/arc-dns:v1.29.0_2024-04-09",
                                                "10.0.0.5:5000/mirror/arcdata/arc-bootstrapper:v1.28.0"],
                     id="slashes-stripped"),
        pytest.param("arcdata", "v2", ["10.0.0.5:5000/arcdata/arc-controller:v2",
                                       "10.0.0.5:5000/arcdata/sub/arc-dns:v2",
                                       "10.0.0.5:5000/arcdata/arc-bootstrapper:v2"],
                     id="tag-override"),
        pytest.param("", "", ["10.0.0.5:5000/arc-controller:v1.29.0_2024-04-09",
                              "10.0.0.5:5000/sub/arc-dns:v1.29.0_2024-04-09",
                              "10.0.0.5:5000/arc-bootstrapper:v1.28.0"],
                     id="no-repository-empty-tag"),
    ],
)
def test_map_targets(repository: str, tag: str | None, expected: list[str]) -> None:
    bundle = _bundle(("arc-controller", "v1.29.0_2024-04-09"), ("sub/arc-dns", "v1.29.0_2024-04-09"),
                     ("arc-bootstrapper", "v1.28.0"))
    targets = map_targets(bundle, registry="10.0.0.5:5000", repository=repository, tag=tag)
    assert [t.reference for t in targets] == expected
    assert [t.entry for t in targets] == list(bundle.images)


def test_target_image_fields() -> None:
    bundle = _bundle(("sub/arc-dns", "v1"))
    (target,) = map_targets(bundle, registry="10.0.0.5:5000", repository="mirror/arcdata", tag=None)
    assert target == TargetImage(bundle.images[0], "10.0.0.5:5000", "mirror/arcdata/sub/arc-dns", "v1")


def test_tag_override_collision() -> None:
    bundle = _bundle(("arc-controller", "v1"), ("arc-controller", "v2"))
    with pytest.raises(UsageError) as info:
        map_targets(bundle, registry="r:5000", repository="mirror", tag="latest")
    assert info.value.message == (
        f"{REGISTRY}/arcdata/arc-controller:v2 and {REGISTRY}/arcdata/arc-controller:v1 "
        "would both become r:5000/mirror/arc-controller:latest"
    )
    assert words(info.value.hint) == "leave TARGET_DOCKER_TAG empty so each image keeps its own tag"
    assert info.value.exit_code == ExitCode.USAGE


def test_same_name_different_tags_without_override() -> None:
    bundle = _bundle(("arc-controller", "v1"), ("arc-controller", "v2"))
    targets = map_targets(bundle, registry="r:5000", repository="mirror", tag=None)
    assert [t.reference for t in targets] == ["r:5000/mirror/arc-controller:v1", "r:5000/mirror/arc-controller:v2"]


@pytest.mark.parametrize(
    ("repository", "tag", "message"),
    [
        ("mirror", "-v2", "invalid tag '-v2'"),
        ("Mirror", None, "invalid repository name 'Mirror'"),
    ],
)
def test_map_targets_invalid(repository: str, tag: str | None, message: str) -> None:
    with pytest.raises(UsageError) as info:
        map_targets(_bundle(("arc-controller", "v1")), registry="r:5000", repository=repository, tag=tag)
    assert info.value.message == message


# -- export --since: bases ------------------------------------------------------------------------------


def _base(name: str, *blobs: tuple[Digest, int], via: str = "bundle") -> BaseBundle:
    return BaseBundle(name, Digest.of(name.encode()), via, "2024-03-01T00:00:00Z",
                      tuple(BlobEntry(d, s, LAYER_TYPE, "layer") for d, s in blobs))


def test_blobs_a_base_holds_are_left_out_and_recorded() -> None:
    a, b = _two_sharing_a_base()
    full = _plan(a, b)
    old = _base("arc-v1.28.tar.zst", BASE, _blob("gone-since", 5))
    plan = build_plan([a, b], source_registry=REGISTRY, source_repository="arcdata", created=CREATED, bases=[old])
    m = plan.toc
    assert [x.digest for x in m.blobs] == [x.digest for x in full.toc.blobs if x.digest != BASE[0]]
    assert m.format_version == 2
    # the base is narrowed to what this bundle actually leaves out, with this bundle's own entries
    assert m.relies_on == (replace(old, blobs=(BlobEntry(BASE[0], BASE[1], LAYER_TYPE, "layer"),)),)
    assert plan.dedupe_saved_bytes == full.dedupe_saved_bytes  # sharing and leaving out are counted apart
    assert m.total_bytes == full.toc.total_bytes - BASE[1]
    assert BASE[0] not in plan.blob_source
    assert all(BASE[0] not in digests for digests in plan.image_blobs.values())
    assert TableOfContents.from_yaml(m.to_yaml()) == m


def test_manifests_and_configs_are_never_relied_on_unless_held() -> None:
    a, b = _two_sharing_a_base()
    # a base "holding" a manifest digest does not make the bundle leave the manifest out
    holds_manifest = BaseBundle("weird", Digest.of(b"w"), "receipt", "",
                                (BlobEntry(a.top.digest, len(a.top.raw), OCI_MANIFEST, "layer"),
                                 BlobEntry(Digest.of(CFG_A), len(CFG_A), CONFIG_TYPE, "config")))
    plan = build_plan([a, b], source_registry=REGISTRY, source_repository="arcdata", created=CREATED,
                      bases=[holds_manifest])
    digests = [x.digest for x in plan.toc.blobs]
    assert a.top.digest in digests and Digest.of(CFG_A) not in digests
    assert Digest.of(CFG_A) not in plan.small_blobs
    assert [x.kind for x in plan.toc.relied_on_blobs] == ["config"]


def test_each_blob_is_attributed_to_the_first_base_and_empty_bases_drop() -> None:
    a, b = _two_sharing_a_base()
    first = _base("v1.tar.zst", BASE)
    second = _base("v2.tar.zst", BASE, APP_B)
    unrelated = _base("v0.tar.zst", _blob("nothing-shared", 1))
    plan = build_plan([a, b], source_registry=REGISTRY, source_repository="arcdata", created=CREATED,
                      bases=[unrelated, first, second])
    assert [(x.name, [e.digest for e in x.blobs]) for x in plan.toc.relies_on] == [
        ("v1.tar.zst", [BASE[0]]), ("v2.tar.zst", [APP_B[0]])]


def test_no_base_blob_needed_gives_a_plain_bundle_and_signing_needs_version_2() -> None:
    a, b = _two_sharing_a_base()
    plan = build_plan([a, b], source_registry=REGISTRY, source_repository="arcdata", created=CREATED,
                      bases=[_base("v0.tar.zst", _blob("nothing-shared", 1))])
    assert plan.toc.relies_on == () and plan.toc.format_version == 1
    signed = build_plan([a, b], source_registry=REGISTRY, source_repository="arcdata", created=CREATED,
                        signed=True)
    assert signed.toc.format_version == 3 and signed.toc.blobs == plan.toc.blobs
