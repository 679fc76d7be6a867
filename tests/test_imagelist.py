"""Image lists: the arcgap-images/v1 schema, errors with file and line, the shipped release lists."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from arcgap.arc.imagelist import (
    ImageEntry,
    ImageList,
    default_release_tag,
    images_from_names,
    is_release_tag,
    load_image_list,
    load_shipped_release,
    parse_image_list,
    release_sort_key,
    shipped_releases,
)
from arcgap.errors import ExitCode, UsageError
from arcgap.oci.digest import Digest
from arcgap.oci.reference import Reference

ROOT = Path(__file__).resolve().parent.parent
DIGEST = "sha256:" + "ab" * 32

HEAD = (
    "format: arcgap-images/v1\nrelease: v1.29.0_2024-04-09\n"
    "registry: mcr.microsoft.com\nrepository: arcdata\n"
)

# fmt: off
ARC_22 = {
    "arc-bootstrapper", "arc-ci-launcher", "arc-controller", "arc-controller-db", "arc-dns",
    "arc-ha-orchestrator", "arc-ha-supervisor", "arc-kafka", "arc-monitor-collectd", "arc-monitor-opensearch",
    "arc-monitor-opensearch-dashboards", "arc-monitor-fluentbit", "arc-monitor-grafana",
    "arc-monitor-influxdb", "arc-monitor-opentelemetry-collector", "arc-monitor-telegraf", "arc-postgres-14",
    "arc-postgresql-agent", "arc-sb-plugin", "arc-security-support", "arc-service-proxy", "arc-sqlmi",
}
ARC_1_5 = {
    "arc-bootstrapper", "arc-controller", "arc-controller-db", "arc-monitor-collectd",
    "arc-monitor-elasticsearch", "arc-monitor-fluentbit", "arc-monitor-grafana", "arc-monitor-influxdb",
    "arc-monitor-kibana", "arc-monitor-telegraf", "arc-service-proxy", "arc-sqlmi", "arc-ha-orchestrator",
    "arc-ha-supervisor", "arc-postgres-11", "arc-postgres-12",
}
# fmt: on


def parse(text: str) -> ImageList:
    return parse_image_list(textwrap.dedent(text), origin="lists/x.yaml")


# --- good lists ---------------------------------------------------------------------------------------------

GOOD = [
    (
        "the documented example",
        HEAD
        + textwrap.dedent(
            """\
            images:
              - arc-bootstrapper
              - name: arc-controller
                tag: v1.28.0_2024-03-12
              - docker.io/library/busybox:1.36
            """
        ),
        [
            ImageEntry("arc-bootstrapper", None, None),
            ImageEntry("arc-controller", "v1.28.0_2024-03-12", None),
            ImageEntry("library/busybox", "1.36", "docker.io/library/busybox:1.36"),
        ],
    ),
    (
        "only format and images; nested names; long form without tag; quoted date tag",
        """\
        # comment
        format: arcgap-images/v1
        images:
          - sql/arc-sqlmi
          - name: arc-dns
          - name: arc-kafka
            tag: "2024-04-09"
        """,
        [
            ImageEntry("sql/arc-sqlmi", None, None),
            ImageEntry("arc-dns", None, None),
            ImageEntry("arc-kafka", "2024-04-09", None),
        ],
    ),
    (
        "full references: port, localhost, IPv6, digest, Hub shorthand, long form tag",
        """\
        format: arcgap-images/v1
        images:
          - 127.0.0.1:5102/tools/jq
          - localhost/x/y:t
          - "[::1]:5000/ipv6/img:v1"
          - quay.io/org/pinned@DIGEST
          - docker.io/nginx
          - name: registry.example.com/a/b
            tag: "1.0"
        """.replace("DIGEST", DIGEST),
        [
            ImageEntry("tools/jq", None, "127.0.0.1:5102/tools/jq"),
            ImageEntry("x/y", "t", "localhost/x/y:t"),
            ImageEntry("ipv6/img", "v1", "[::1]:5000/ipv6/img:v1"),
            ImageEntry("org/pinned", None, f"quay.io/org/pinned@{DIGEST}"),
            ImageEntry("library/nginx", None, "docker.io/nginx"),
            ImageEntry("a/b", "1.0", "registry.example.com/a/b"),
        ],
    ),
    (
        "null defaults are absent; flow style",
        "format: arcgap-images/v1\nrelease:\nregistry: ~\nimages: [a, b]\n",
        [ImageEntry("a", None, None), ImageEntry("b", None, None)],
    ),
]


@pytest.mark.parametrize(("text", "entries"), [(t, e) for _, t, e in GOOD], ids=[c[0] for c in GOOD])
def test_good_lists(text: str, entries: list[ImageEntry]) -> None:
    result = parse(text)
    assert list(result.images) == entries
    assert result.origin == "lists/x.yaml"


def test_defaults_read() -> None:
    result = parse(HEAD + "images: [arc-dns]\n")
    assert (result.release, result.registry, result.repository) == (
        "v1.29.0_2024-04-09",
        "mcr.microsoft.com",
        "arcdata",
    )
    bare = parse("format: arcgap-images/v1\nimages: [arc-dns]\n")
    assert (bare.release, bare.registry, bare.repository) == (None, None, None)


# --- bad lists: (id, text, exact message) -------------------------------------------------------------------

BAD = [
    (
        "empty file",
        "",
        "lists/x.yaml: expected a mapping with the keys format, release, registry, repository, "
        "images, not nothing",
    ),
    (
        "a list at the top",
        "- a\n",
        "lists/x.yaml:1: expected a mapping with the keys format, release, registry, "
        "repository, images, not a list",
    ),
    (
        "yaml syntax",
        "format: arcgap-images/v1\nimages:\n  - a\n - b\n",
        "lists/x.yaml:4: invalid YAML: expected <block end>, but found '<block sequence start>'",
    ),
    (
        "tab indentation",
        "format: arcgap-images/v1\nimages:\n\t- a\n",
        "lists/x.yaml:3: invalid YAML: found character '\\t' that cannot start any token",
    ),
    ("missing format", "images: [a]\n", "lists/x.yaml:1: missing 'format: arcgap-images/v1'"),
    (
        "unknown format",
        "# c\nformat: arcgap-images/v2\nimages: [a]\n",
        "lists/x.yaml:2: format: unsupported format 'arcgap-images/v2'",
    ),
    ("unknown top key", HEAD + "imgs: [a]\n", "lists/x.yaml:5: unknown key 'imgs'"),
    ("duplicate top key", HEAD + "images: [a]\nrelease: v2\n", "lists/x.yaml:6: duplicate key 'release'"),
    ("missing images", HEAD, "lists/x.yaml:1: missing 'images', the list of images"),
    ("null images", HEAD + "images:\n", "lists/x.yaml:5: images: missing 'images', the list of images"),
    (
        "images not a list",
        HEAD + "images: arc-dns\n",
        "lists/x.yaml:5: images: expected a list of images, not str",
    ),
    ("empty images", HEAD + "images: []\n", "lists/x.yaml:5: images: the list is empty"),
    (
        "bad release tag",
        "format: arcgap-images/v1\nrelease: bad tag\nimages: [a]\n",
        "lists/x.yaml:2: release: invalid tag 'bad tag'",
    ),
    (
        "release read as a number",
        "format: arcgap-images/v1\nrelease: 1.10\nimages: [a]\n",
        "lists/x.yaml:2: release must be a string, not a number",
    ),
    (
        "registry with scheme",
        "format: arcgap-images/v1\nregistry: https://mcr.microsoft.com\nimages: [a]\n",
        "lists/x.yaml:2: registry: invalid registry 'https://mcr.microsoft.com'",
    ),
    (
        "upper-case repository",
        "format: arcgap-images/v1\nrepository: ArcData\nimages: [a]\n",
        "lists/x.yaml:2: repository: invalid repository name 'ArcData'",
    ),
    (
        "line break in a quoted tag",
        'format: arcgap-images/v1\nrelease: "v1\\n"\nimages: [a]\n',
        "lists/x.yaml:2: release: invalid tag 'v1\\n'",
    ),
    (
        "bad long-form tag",
        HEAD + "images:\n  - a\n  - b\n  - c\n  - name: d\n    tag: bad tag\n",
        "lists/x.yaml:10: images[3]: invalid tag 'bad tag'",
    ),
    (
        "date tag",
        HEAD + "images:\n  - name: d\n    tag: 2024-04-09\n",
        "lists/x.yaml:7: images[0]: tag must be a string, not a date",
    ),
    (
        "upper-case name",
        HEAD + "images:\n  - arc-dns\n  - Arc-Kafka\n",
        "lists/x.yaml:7: images[1]: invalid image name 'Arc-Kafka'",
    ),
    (
        "relative name with a tag",
        HEAD + "images:\n  - arc-dns:v1\n",
        "lists/x.yaml:6: images[0]: invalid image name 'arc-dns:v1': a name relative to the source "
        "repository takes no tag or digest",
    ),
    (
        "relative name with a digest",
        HEAD + f"images:\n  - arc-dns@{DIGEST}\n",
        f"lists/x.yaml:6: images[0]: invalid image name 'arc-dns@{DIGEST}': a name relative to the source "
        "repository takes no tag or digest",
    ),
    (
        "name with a space",
        HEAD + "images:\n  - arc dns\n",
        "lists/x.yaml:6: images[0]: invalid image name 'arc dns'",
    ),
    (
        "bad full reference",
        HEAD + "images:\n  - a\n  - docker.io/Library/busybox\n",
        "lists/x.yaml:7: images[1]: invalid image reference 'docker.io/Library/busybox': "
        "invalid repository name 'Library/busybox'",
    ),
    (
        "bad digest",
        HEAD + "images:\n  - quay.io/a/b@sha256:abc\n",
        "lists/x.yaml:6: images[0]: invalid digest 'sha256:abc'",
    ),
    (
        "scheme in reference",
        HEAD + "images:\n  - https://quay.io/a/b\n",
        "lists/x.yaml:6: images[0]: invalid image reference 'https://quay.io/a/b': a reference has no scheme",
    ),
    (
        "unknown item key",
        HEAD + "images:\n  - name: a\n    tags: v1\n",
        "lists/x.yaml:7: images[0]: unknown key 'tags'",
    ),
    ("item without name", HEAD + "images:\n  - tag: v1\n", "lists/x.yaml:6: images[0]: missing 'name'"),
    (
        "item is a number",
        HEAD + "images:\n  - a\n  - 42\n",
        "lists/x.yaml:7: images[1]: expected an image name or a mapping with name and tag, not a number",
    ),
    (
        "name is a list",
        HEAD + "images:\n  - name: [a]\n",
        "lists/x.yaml:6: images[0]: name must be a string, not a list",
    ),
    (
        "tag given twice",
        HEAD + 'images:\n  - name: quay.io/a/b:1\n    tag: "2"\n',
        "lists/x.yaml:6: images[0]: tag given twice ('1' in the name, '2' as tag)",
    ),
    (
        "duplicate name",
        HEAD + "images:\n  - arc-dns\n  - arc-kafka\n  - name: arc-dns\n    tag: v2\n",
        "lists/x.yaml:8: images[2]: duplicate image 'arc-dns' (first at line 6)",
    ),
    (
        "duplicate through a full reference",
        HEAD + "images:\n  - library/busybox\n  - docker.io/busybox:1.36\n",
        "lists/x.yaml:7: images[1]: duplicate image 'library/busybox' (first at line 6)",
    ),
    (
        "duplicate key in an item",
        HEAD + "images:\n  - name: a\n    name: b\n",
        "lists/x.yaml:7: images[0]: duplicate key 'name'",
    ),
    (
        "two documents",
        HEAD + "images: [a]\n---\nformat: x\n",
        "lists/x.yaml:6: invalid YAML: but found another document",
    ),
]


@pytest.mark.parametrize(("text", "message"), [(t, m) for _, t, m in BAD], ids=[c[0] for c in BAD])
def test_bad_lists(text: str, message: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_image_list(text, origin="lists/x.yaml")
    assert info.value.message == message
    assert info.value.hint
    assert info.value.exit_code == ExitCode.USAGE


def test_hints() -> None:
    with pytest.raises(UsageError) as info:
        parse(HEAD + "images:\n  - name: d\n    tag: 2024-04-09\n")
    assert info.value.hint == 'quote it: tag: "2024-04-09"'
    with pytest.raises(UsageError) as info:
        parse(HEAD + "imgs: [a]\n")
    assert info.value.hint == "known keys: format, release, registry, repository, images"
    with pytest.raises(UsageError) as info:
        parse("format: arcgap-images/v2\nimages: [a]\n")
    assert info.value.hint == "this arcgap reads format arcgap-images/v1"


def test_alias_bomb_and_recursion_stay_cheap() -> None:
    # Aliases are shared by reference: indexing the node tree must not expand them.
    lines = ["format: arcgap-images/v1", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    with pytest.raises(UsageError, match=r"^lists/x.yaml:2: unknown key 'a0'$"):
        parse_image_list("\n".join(lines) + "\n", origin="lists/x.yaml")
    with pytest.raises(UsageError, match=r"images\[0\]: expected an image name"):
        parse_image_list("format: arcgap-images/v1\nimages: &l [*l]\n", origin="lists/x.yaml")


# --- files --------------------------------------------------------------------------------------------------


def test_load_image_list_from_file(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(HEAD + "images:\n  - arc-dns\n  - arc-dns\n", encoding="utf-8")
    with pytest.raises(
        UsageError, match=rf"^{path}:7: images\[1\]: duplicate image 'arc-dns' \(first at line 6\)$"
    ):
        load_image_list(path)
    path.write_text(HEAD + "images:\n  - arc-dns\n", encoding="utf-8")
    assert load_image_list(path) == ImageList(
        (ImageEntry("arc-dns", None, None),), "v1.29.0_2024-04-09", "mcr.microsoft.com", "arcdata", str(path)
    )


def test_load_image_list_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="image list .*missing.yaml not found"):
        load_image_list(tmp_path / "missing.yaml")
    with pytest.raises(UsageError, match="not found"):
        load_image_list(tmp_path)
    (tmp_path / "latin1.yaml").write_bytes(b"format: arcgap-images/v1\n# caf\xe9\n")
    with pytest.raises(UsageError, match="is not UTF-8 text"):
        load_image_list(tmp_path / "latin1.yaml")


# --- shipped lists ------------------------------------------------------------------------------------------

EXPECTED_SHIPPED = [
    "v1.29.0_2024-04-09",
    "v1.25.0_2023-11-14",
    "v1.20.0_2023-06-13",
    "v1.14.0_2022-12-13",
    "v1.5.0_2022-04-05",
]


def test_shipped_releases_newest_first() -> None:
    assert shipped_releases() == EXPECTED_SHIPPED
    assert default_release_tag() == "v1.29.0_2024-04-09"


@pytest.mark.parametrize("tag", EXPECTED_SHIPPED)
def test_every_shipped_list_loads(tag: str) -> None:
    images = load_shipped_release(tag)
    assert images.release == tag
    assert (images.registry, images.repository) == ("mcr.microsoft.com", "arcdata")
    assert images.origin == f"release {tag}"
    assert all(e.tag is None and e.reference is None for e in images.images)
    # The file also documents the format in its header.
    text = (ROOT / "manifests" / f"{tag}.yaml").read_text(encoding="utf-8")
    assert text.startswith(f"# arcgap image list — Azure Arc data services {tag}\n")
    assert "format: arcgap-images/v1" in text and "- name: arc-controller" in text


@pytest.mark.parametrize("tag", ["v1.29.0_2024-04-09", "v1.25.0_2023-11-14", "v1.20.0_2023-06-13"])
def test_the_22_images(tag: str) -> None:
    names = [e.name for e in load_shipped_release(tag).images]
    assert len(names) == 22 and set(names) == ARC_22


def test_v1_14_has_elasticsearch_and_kibana() -> None:
    names = {e.name for e in load_shipped_release("v1.14.0_2022-12-13").images}
    assert len(names) == 22
    assert {"arc-monitor-elasticsearch", "arc-monitor-kibana"} <= names
    assert not any("opensearch" in n for n in names)
    assert names == (ARC_22 - {"arc-monitor-opensearch", "arc-monitor-opensearch-dashboards"}) | {
        "arc-monitor-elasticsearch",
        "arc-monitor-kibana",
    }


def test_v1_5_has_16_plus_kafka_and_dns() -> None:
    names = [e.name for e in load_shipped_release("v1.5.0_2022-04-05").images]
    assert len(names) == 18
    assert set(names) == ARC_1_5 | {"arc-kafka", "arc-dns"}
    text = (ROOT / "manifests" / "v1.5.0_2022-04-05.yaml").read_text(encoding="utf-8")
    assert "registry had both" in text  # the two additions are explained


def test_unknown_release_lists_the_available_ones() -> None:
    with pytest.raises(UsageError) as info:
        load_shipped_release("v9.9.9_2099-01-01")
    assert info.value.message == "no shipped image list for release 'v9.9.9_2099-01-01'"
    assert ", ".join(EXPECTED_SHIPPED) in info.value.hint


def test_shipped_lists_found_without_the_package_installed() -> None:
    # Without site-packages (-S) the installed/editable 'arcgap.manifests' is gone: the source tree's
    # manifests/ directory must be found next to the package.
    yaml_dir = str(Path(yaml.__file__).resolve().parent.parent)
    code = (
        f"import sys; sys.path[:0] = [{str(ROOT)!r}, {yaml_dir!r}]\n"
        "import importlib.util\n"
        "assert importlib.util.find_spec('arcgap.manifests') is None\n"
        "from arcgap.arc.imagelist import shipped_releases, load_shipped_release\n"
        "print(','.join(shipped_releases()), len(load_shipped_release('v1.14.0_2022-12-13').images))\n"
    )
    out = subprocess.run(
        [sys.executable, "-S", "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd="/",
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert out.stdout.strip() == ",".join(EXPECTED_SHIPPED) + " 22"


# --- release tags -------------------------------------------------------------------------------------------


def test_release_sort_key() -> None:
    tags = [
        "latest",
        "v1.5.0_2022-04-05",
        "public-preview-sep-2020",
        "v1.14.0_2022-12-13",
        "v1.5.0_2022-03-26_master_51c82cae7",
        "v1.41.0_2025-09-09",
        "v1.29.0_2024-04-09",
        "v1.29.0_2024-05-01",
        "v1.36.0_2025-02-11",
        "v2.0.0_2020-01-01",
    ]
    assert sorted(tags, key=release_sort_key) == [
        "v2.0.0_2020-01-01",  # version first, not the date (the date is not always the release date)
        "v1.41.0_2025-09-09",
        "v1.36.0_2025-02-11",
        "v1.29.0_2024-05-01",
        "v1.29.0_2024-04-09",
        "v1.14.0_2022-12-13",
        "v1.5.0_2022-04-05",  # v1.5 < v1.14: numbers, not text
        "v1.5.0_2022-03-26_master_51c82cae7",  # dev builds after releases
        "latest",  # other tags last, alphabetically
        "public-preview-sep-2020",
    ]
    assert is_release_tag("v1.29.0_2024-04-09")
    assert not is_release_tag("v1.5.0_2022-03-26_master_51c82cae7")
    assert not is_release_tag("public-preview-sep-2020")


# --- command-line names -------------------------------------------------------------------------------------


def test_images_from_names() -> None:
    result = images_from_names(["arc-dns", "sql/arc-sqlmi", "docker.io/library/busybox:1.36"])
    assert result == ImageList(
        (
            ImageEntry("arc-dns", None, None),
            ImageEntry("sql/arc-sqlmi", None, None),
            ImageEntry("library/busybox", "1.36", "docker.io/library/busybox:1.36"),
        ),
        None,
        None,
        None,
        "command line",
    )


@pytest.mark.parametrize(
    ("names", "message"),
    [
        ([], "no images given"),
        (["arc-dns", "arc-dns"], "image 'arc-dns' given twice"),
        (
            ["arc-dns:v1"],
            "invalid image name 'arc-dns:v1': a name relative to the source repository takes no tag "
            "or digest",
        ),
        (["Arc-Dns"], "invalid image name 'Arc-Dns'"),
        ([""], "invalid image name ''"),
        (["localhost:5000/A"], "invalid image reference 'localhost:5000/A': invalid repository name 'A'"),
    ],
)
def test_images_from_names_errors(names: list[str], message: str) -> None:
    with pytest.raises(UsageError) as info:
        images_from_names(names)
    assert info.value.message == message


# --- where an entry pulls from ------------------------------------------------------------------------------


def test_entry_source() -> None:
    kw = {"registry": "mcr.microsoft.com", "repository": "arcdata", "tag": "v1.29.0_2024-04-09"}
    assert ImageEntry("arc-dns", None, None).source(**kw) == Reference(
        "mcr.microsoft.com", "arcdata/arc-dns", "v1.29.0_2024-04-09"
    )
    assert ImageEntry("arc-dns", "v1.28.0_2024-03-12", None).source(**kw).tag == "v1.28.0_2024-03-12"
    assert str(ImageEntry("library/busybox", "1.36", "docker.io/busybox:1.36").source(**kw)) == (
        "docker.io/library/busybox:1.36"
    )
    pinned = ImageEntry("org/pinned", None, f"quay.io/org/pinned@{DIGEST}").source(**kw)
    assert pinned == Reference("quay.io", "org/pinned", None, Digest.parse(DIGEST))
    untagged = ImageEntry("a/b", None, "registry.example.com/a/b").source(**kw)
    assert str(untagged) == "registry.example.com/a/b:v1.29.0_2024-04-09"
    long_form = parse(HEAD + "images:\n  - name: registry.example.com/a/b\n    tag: '1.0'\n").images[0]
    assert str(long_form.source(**kw)) == "registry.example.com/a/b:1.0"
