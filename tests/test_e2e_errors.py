"""What a user sees when things go wrong: exact error lines, exit codes, and no tag moved."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
import zstandard

from arcgap.bundle import tarstream
from devtools.registries import Registry
from devtools.synth import SmallSet
from tests.e2e_helpers import arcgap, flip_byte, source_args, target_args
from tests.test_e2e_roundtrip import ROLES, clean_env, export_small  # noqa: F401 (autouse fixture)


@pytest.fixture(scope="module")
def small_bundle(tmp_path_factory: pytest.TempPathFactory, synth_small: SmallSet) -> Path:
    """One exported bundle shared by this module's tests (they copy it before damaging it)."""
    from tests.e2e_helpers import run

    out = tmp_path_factory.mktemp("bundle") / "small.tar.zst"
    names = [synth_small[r].repository.split("/", 1)[1] for r in ROLES]
    code = run(["export", *names, *source_args(synth_small.registry), "--source-repository", "synth",
                "--source-tag", "v1", "-o", str(out), "-q"])
    assert code == 0
    return out


def no_tags(target: Registry) -> bool:
    client = target.raw_client()
    try:
        return all(client.list_tags(repo) == [] for repo in client.catalog())
    finally:
        client.close()


def blob_offsets(bundle: Path) -> list[tuple[str, int, int]]:
    """(member, start, end) of each member in the *uncompressed* tar, for aiming damage."""
    raw = zstandard.ZstdDecompressor().stream_reader(bundle.open("rb")).read()
    out, pos = [], 0
    while pos + 512 <= len(raw):
        block = raw[pos : pos + 512]
        if block == b"\0" * 512:
            break
        size = int(block[124:136].rstrip(b"\0 ") or b"0", 8)
        name = block[:100].split(b"\0", 1)[0].decode()
        pos += 512
        out.append((name, pos, pos + size))
        pos += size + (-size % 512)
    return out


def test_flipped_byte_in_a_layer_fails_naming_the_blob_and_moves_no_tag(
    capsys: pytest.CaptureFixture[str], small_bundle: Path, fresh_registry, tmp_path: Path
) -> None:
    # Rewrite the bundle uncompressed-then-recompressed? No: damage the real file. Layers are gzip data that
    # zstd stores nearly verbatim, so a flip late in the file lands inside the last layer.
    damaged = tmp_path / "damaged.tar.zst"
    shutil.copy(small_bundle, damaged)
    size = damaged.stat().st_size
    flip_byte(damaged, size - 3000)
    target: Registry = fresh_registry()
    res = arcgap(capsys, "import", str(damaged), *target_args(target), "--target-repository", "arc")
    assert res.code == 7, res.err
    assert res.error_lines[0].startswith(f"error: {damaged}: blob sha256:")
    assert res.error_lines[1] == ("hint: the bundle is damaged: copy it again from the original, "
                                  "then run 'arcgap verify'")
    assert no_tags(target)
    verify = arcgap(capsys, "verify", str(damaged))
    assert verify.code == 7 and "blob sha256:" in verify.err


def test_truncated_bundle_fails_and_moves_no_tag(
    capsys: pytest.CaptureFixture[str], small_bundle: Path, fresh_registry, tmp_path: Path
) -> None:
    target: Registry = fresh_registry()
    data = small_bundle.read_bytes()
    for keep in (len(data) - 1, len(data) * 3 // 4, len(data) // 2, 200):
        cut = tmp_path / f"cut-{keep}.tar.zst"
        cut.write_bytes(data[:keep])
        res = arcgap(capsys, "import", str(cut), *target_args(target), "--target-repository", "arc")
        assert res.code == 7, (keep, res.err)
        assert res.error_lines[0].startswith(f"error: {cut}: "), res.err
        assert "truncated" in res.err or "damaged" in res.err
        assert no_tags(target)


def test_random_damage_never_moves_a_tag(
    capsys: pytest.CaptureFixture[str], small_bundle: Path, synth_small: SmallSet, fresh_registry, tmp_path: Path
) -> None:
    """Each damaged copy either fails (exit 7/8, no tag under its prefix) or, where the flip is one zstd
    ignores (a few header bits are don't-care), imports with every digest identical."""
    import random

    from tests.e2e_helpers import oracle_digest

    target: Registry = fresh_registry()
    rng = random.Random(7)
    size = small_bundle.stat().st_size
    for n in range(12):
        damaged = tmp_path / f"r{n}.tar.zst"
        shutil.copy(small_bundle, damaged)
        flip_byte(damaged, rng.randrange(4, size))
        res = arcgap(capsys, "import", str(damaged), *target_args(target), "--target-repository", f"arc{n}")
        client = target.raw_client()
        repos = [r for r in client.catalog() if r.startswith(f"arc{n}/")]
        if res.code == 0:
            for role in ROLES:
                info = synth_small[role]
                repo = f"arc{n}/" + info.repository.split("/", 1)[1]
                assert oracle_digest(target, repo, "v1") == info.digest
        else:
            assert res.code in (7, 8), res.err
            assert len(res.error_lines) == 2 and "Traceback" not in res.err
            assert all(client.list_tags(r) == [] for r in repos)
        client.close()


def test_not_a_bundle(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar.zst"
    junk.write_bytes(b"this is not a bundle\n")
    res = arcgap(capsys, "import", str(junk), "--target-registry", "127.0.0.1:9", "--target-repository", "a")
    assert res.code == 8
    assert res.error_lines == [
        f"error: {junk} is not an arcgap bundle (not zstd-compressed)",
        "hint: give the .tar.zst file written by 'arcgap export'",
    ]


def test_missing_bundle_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    res = arcgap(capsys, "verify", str(tmp_path / "nope.tar.zst"))
    assert res.code == 9
    assert res.error_lines == [f"error: {tmp_path / 'nope.tar.zst'}: no such file", "hint: check the bundle path"]


def _rewrite_manifest(src: Path, dst: Path, edit: dict[str, object]) -> None:
    """Copy ``src`` with arcgap.yaml edited (recompressed; later members copied verbatim)."""
    raw = zstandard.ZstdDecompressor().stream_reader(src.open("rb")).read()
    size = int(raw[124:136].rstrip(b"\0 "), 8)
    doc = yaml.safe_load(raw[512 : 512 + size])
    doc.update(edit)
    body = yaml.safe_dump(doc, sort_keys=False).encode()
    rest = raw[512 + size + (-size % 512) :]
    out = tarstream.member_header("arcgap.yaml", len(body)) + body + tarstream.padding(len(body)) + rest
    dst.write_bytes(zstandard.ZstdCompressor().compress(out))


def test_bundle_from_a_newer_format_version(capsys: pytest.CaptureFixture[str], small_bundle: Path,
                                             tmp_path: Path) -> None:
    newer = tmp_path / "newer.tar.zst"
    _rewrite_manifest(small_bundle, newer, {"format_version": 99, "arcgap_version": "9.0.0"})
    res = arcgap(capsys, "verify", str(newer))
    assert res.code == 8
    assert res.error_lines == [
        "error: bundle format version 99 is newer than this arcgap supports (5)",
        "hint: install a newer arcgap on this side (the bundle was written by arcgap 9.0.0)",
    ]


def test_import_without_target_registry(capsys: pytest.CaptureFixture[str], small_bundle: Path) -> None:
    res = arcgap(capsys, "import", str(small_bundle))
    assert res.code == 2
    assert res.error_lines == [
        "error: TARGET_DOCKER_REGISTRY is not set",
        "hint: pass --target-registry or set TARGET_DOCKER_REGISTRY",
    ]


def test_export_unknown_image_names_it(capsys: pytest.CaptureFixture[str], synth_small: SmallSet,
                                       tmp_path: Path) -> None:
    out = tmp_path / "x.tar.zst"
    res = arcgap(capsys, "export", "docker-image", "no-such-image", *source_args(synth_small.registry),
                 "--source-repository", "synth", "--source-tag", "v1", "-o", str(out))
    assert res.code == 4
    assert res.error_lines == [
        f"error: image {synth_small.registry.host}/synth/no-such-image:v1 not found at the source",
        "hint: check the image name and SOURCE_DOCKER_TAG (or the image list); or pass --skip-missing to export "
        "the others and record the gap in the bundle",
    ]
    assert not out.exists() and not Path(str(out) + ".partial").exists()


def test_export_unknown_tag(capsys: pytest.CaptureFixture[str], synth_small: SmallSet, tmp_path: Path) -> None:
    res = arcgap(capsys, "export", "docker-image", *source_args(synth_small.registry), "--source-repository",
                 "synth", "--source-tag", "v9", "-o", str(tmp_path / "x.tar.zst"))
    assert res.code == 4
    host = synth_small.registry.host
    assert res.error_lines[0] == f"error: image {host}/synth/docker-image:v9 not found at the source"


def test_wrong_password_is_one_line_without_the_secret(
    capsys: pytest.CaptureFixture[str], small_bundle: Path, tls_registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TARGET_DOCKER_USERNAME", "arcuser")
    monkeypatch.setenv("TARGET_DOCKER_PASSWORD", "definitely-wrong-Pa55")
    res = arcgap(capsys, "import", str(small_bundle), *target_args(tls_registry), "--target-repository", "arc")
    assert res.code == 3, res.err
    assert res.error_lines[0].startswith("error: ") and "401" in res.error_lines[0]
    assert res.error_lines[1] == "hint: check TARGET_DOCKER_USERNAME and TARGET_DOCKER_PASSWORD"
    assert "definitely-wrong-Pa55" not in res.err + res.out


def test_tls_without_the_ca_says_which_option(
    capsys: pytest.CaptureFixture[str], small_bundle: Path, tls_registry: Registry
) -> None:
    res = arcgap(capsys, "import", str(small_bundle), "--target-registry", tls_registry.host,
                 "--target-repository", "arc")
    assert res.code == 5, res.err
    assert res.error_lines[0] == (f"error: connecting to {tls_registry.host}: the TLS certificate of "
                                  f"{tls_registry.host} is issued by an authority that is not trusted "
                                  "(CN=arcgap test CA,O=arcgap tests)")
    assert "--target-ca-file" in res.error_lines[1]


def test_ca_option_wins_over_environment_bundles(
    capsys: pytest.CaptureFixture[str], small_bundle: Path, fresh_registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    target: Registry = fresh_registry(tls=True, auth="htpasswd")
    for var in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE"):
        monkeypatch.setenv(var, "/etc/ssl/certs/ca-certificates.crt")  # does not hold the test CA
    monkeypatch.setenv("TARGET_DOCKER_USERNAME", target.username or "")
    monkeypatch.setenv("TARGET_DOCKER_PASSWORD", target.password or "")
    res = arcgap(capsys, "import", str(small_bundle), *target_args(target), "--target-repository", "arc", "-q")
    assert res.code == 0, res.err


def test_unreachable_registry(capsys: pytest.CaptureFixture[str], small_bundle: Path) -> None:
    from devtools.procs import free_port

    host = f"127.0.0.1:{free_port()}"
    res = arcgap(capsys, "import", str(small_bundle), "--target-registry", host, "--target-plain-http",
                 "--target-repository", "arc")
    assert res.code == 5
    assert res.error_lines[0].startswith(f"error: connecting to {host}: cannot reach http://{host}: ConnectError")
    assert res.error_lines[1] == "hint: check TARGET_DOCKER_REGISTRY and the network path to it"


def test_output_exists(capsys: pytest.CaptureFixture[str], synth_small: SmallSet, small_bundle: Path) -> None:
    res = arcgap(capsys, "export", "docker-image", *source_args(synth_small.registry), "--source-repository",
                 "synth", "--source-tag", "v1", "-o", str(small_bundle))
    assert res.code == 9
    assert res.error_lines == [
        f"error: {small_bundle} already exists",
        "hint: remove it, choose another --output, or pass --force",
    ]


def test_no_terminal_no_password_for_a_username(capsys: pytest.CaptureFixture[str], synth_small: SmallSet,
                                                 monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SOURCE_DOCKER_USERNAME", "someone")
    res = arcgap(capsys, "export", "docker-image", *source_args(synth_small.registry), "-o",
                 str(tmp_path / "x.tar.zst"))
    assert res.code == 2
    assert res.error_lines == [
        "error: SOURCE_DOCKER_PASSWORD is not set for user 'someone'",
        "hint: set SOURCE_DOCKER_PASSWORD, pipe it with --password-stdin, or run on a terminal",
    ]


def test_disk_full_removes_the_partial_file(capsys: pytest.CaptureFixture[str], synth_small: SmallSet,
                                            tmp_path: Path) -> None:
    small = tmp_path / "tiny"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12k", "tmpfs", str(small)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        out = small / "b.tar.zst"
        names = [synth_small[r].repository.split("/", 1)[1] for r in ROLES]
        res = arcgap(capsys, "export", *names, *source_args(synth_small.registry), "--source-repository", "synth",
                     "--source-tag", "v1", "-o", str(out), "--no-space-check")  # past the estimate: a real ENOSPC
        assert res.code == 9, res.err
        assert res.error_lines[0] == f"error: disk full while writing {out}; the partial file was removed"
        assert list(small.iterdir()) == []
    finally:
        subprocess.run(["umount", str(small)], check=False)
