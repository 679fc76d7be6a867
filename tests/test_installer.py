"""The offline installer: wheels for another target hold what pip's own resolution would miss, install.sh refuses
files that do not match SHA256SUMS, and an installer written by ``export --with-installer`` installs inside a
network namespace with no route anywhere, where the installed copy verifies the bundle."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from arcgap.errors import NetworkError, UsageError
from arcgap.installer.build import InstallerResult, build_installer, installer_dir
from arcgap.installer.script import install_script
from arcgap.installer.wheelhouse import Target, read_wheel, targets_for
from devtools.synth import SmallSet
from tests.e2e_helpers import arcgap, source_args
from tests.test_e2e_roundtrip import ROLES

SH_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
needs_index = pytest.mark.services  # these fetch wheels from the package index (PyPI or pip's configured mirror)


def build_or_skip(directory: Path, targets: list[Target]) -> InstallerResult:
    try:
        return build_installer(directory, targets=targets, overwrite=False)
    except NetworkError as exc:  # the connected side needs the package index; say so rather than fail
        pytest.skip(f"package index unreachable: {exc.message}")


@pytest.fixture(scope="module")
def native_installer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("native") / "arcgap.installer"
    build_or_skip(directory, targets_for([], []))
    yield directory


def run_install(installer: Path, venv: Path, *, netns: str | None = None) -> subprocess.CompletedProcess[str]:
    argv = ["sh", str(installer / "install.sh"), str(venv)]
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    env = {**SH_ENV, "HOME": str(venv.parent), "PYTHON": sys.executable}
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=180, cwd=venv.parent)


# --- pure parts -------------------------------------------------------------------------------------------------


def test_installer_dir_sits_next_to_the_bundle(tmp_path: Path) -> None:
    assert installer_dir(tmp_path / "arc-v1.29.0.tar.zst") == tmp_path / "arc-v1.29.0.installer"
    assert installer_dir(Path("bundle")) == Path("bundle.installer")


def test_targets_are_checked() -> None:
    assert targets_for([], []) == [Target(f"{sys.version_info[0]}.{sys.version_info[1]}", None)]
    both = targets_for(["manylinux2014_x86_64", "manylinux2014_aarch64"], ["3.9", "3.13"])
    assert len(both) == 4
    with pytest.raises(UsageError, match="unsupported installer platform 'win_amd64'"):
        targets_for(["win_amd64"], [])
    with pytest.raises(UsageError, match="unsupported installer Python '3.8'"):
        targets_for([], ["3.8"])


def test_a_manylinux_target_accepts_both_spellings_and_only_its_machine() -> None:
    target = Target("3.9", "manylinux2014_aarch64")
    tags = target.supported()
    assert {"cp39-cp39-manylinux_2_17_aarch64", "cp39-cp39-manylinux2014_aarch64", "py3-none-any"} <= tags
    assert not any("x86_64" in t or "cp311" in t for t in tags)
    env = target.environment()
    assert (env["python_version"], env["sys_platform"], env["platform_machine"]) == ("3.9", "linux", "aarch64")
    assert target.machine == "aarch64" and target.label == "cp39-manylinux2014_aarch64"


def test_install_script_refuses_another_python(tmp_path: Path) -> None:
    (tmp_path / "install.sh").write_text(install_script(version="0.1.0", pythons=["3.99"], machines=[]))
    (tmp_path / "SHA256SUMS").write_text("")
    done = run_install(tmp_path, tmp_path / "venv")
    assert done.returncode != 0
    assert "error: this wheelhouse is for CPython 3.99" in done.stderr
    assert not (tmp_path / "venv").exists()


# --- against the package index (connected side) ---------------------------------------------------------------


@needs_index
def test_wheels_for_python_3_9_on_aarch64_hold_what_pip_would_miss(tmp_path: Path) -> None:
    target = Target("3.9", "manylinux2014_aarch64")
    result = build_or_skip(tmp_path / "aarch64.installer", [target])
    wheels = [read_wheel(tmp_path / "aarch64.installer" / f.name) for f in result.files if f.name.endswith(".whl")]
    names = {w.name for w in wheels}
    # anyio needs exceptiongroup below 3.11: pip, running on this newer Python, would leave it out
    assert {"arcgap", "httpx", "zstandard", "pyyaml", "typer", "rich", "docker", "exceptiongroup"} <= names
    assert not names & {"pywin32", "colorama"}
    assert all(w.tags & target.supported() for w in wheels), "a wheel that cannot install on the target"
    zstd = next(w for w in wheels if w.name == "zstandard")
    assert any("aarch64" in t for t in zstd.tags) and any(t.startswith("cp39-") for t in zstd.tags)
    script = (tmp_path / "aarch64.installer" / "install.sh").read_text()
    assert '"3.9" "aarch64"' in script


@needs_index
def test_tampered_or_extra_wheels_are_refused_before_anything_is_installed(
    native_installer: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "copy.installer"
    shutil.copytree(native_installer, copy)
    victim = sorted(copy.glob("httpx-*.whl"))[0]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    shutil.copy2(sorted(copy.glob("rich-*.whl"))[0], copy / "rich-99.0.0-py3-none-any.whl")
    done = run_install(copy, tmp_path / "venv")
    assert done.returncode != 0
    assert "error: the installer does not match SHA256SUMS" in done.stderr
    assert f"{victim.name} (sha256 differs)" in done.stderr
    assert "rich-99.0.0-py3-none-any.whl (not listed)" in done.stderr
    assert not (tmp_path / "venv").exists()


def test_export_with_installer_installs_with_no_network_and_verifies_the_bundle(
    capsys: pytest.CaptureFixture[str], synth_small: SmallSet, netns: str, tmp_path: Path,
) -> None:
    bundle = tmp_path / "small.tar.zst"
    names = [synth_small[r].repository.split("/", 1)[1] for r in ROLES]
    res = arcgap(capsys, "export", *names, *source_args(synth_small.registry), "--source-repository", "synth",
                 "--source-tag", "v1", "-o", str(bundle), "--with-installer", "--json", "-q")
    if res.code == 5 and "package index" in res.err:
        pytest.skip("package index unreachable")
    assert res.code == 0, res.err
    doc = json.loads(res.out)["installer"]
    installer = tmp_path / "small.installer"
    assert doc["directory"] == str(installer) and doc["install_script"] == str(installer / "install.sh")
    listed = {f["name"]: f["sha256"] for f in doc["files"]}
    on_disk = {p.name for p in installer.iterdir()} - {"SHA256SUMS"}
    assert set(listed) == on_disk and doc["arcgap_wheel"] in listed and "install.sh" in listed
    sums = dict(reversed(line.split("  ")) for line in (installer / "SHA256SUMS").read_text().splitlines())
    assert sums == listed
    assert all(hashlib.sha256((installer / n).read_bytes()).hexdigest() == h for n, h in listed.items())
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir()), "staging directory left behind"

    # The far side: a namespace with loopback only, not a single route.
    routes = subprocess.run(["ip", "netns", "exec", netns, "ip", "-4", "route"], capture_output=True, text=True)
    assert routes.stdout.strip() == ""
    venv = tmp_path / "far" / "venv"
    venv.parent.mkdir()
    done = run_install(installer, venv, netns=netns)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"checked {len(listed)} files against SHA256SUMS" in done.stdout
    env = {**SH_ENV, "HOME": str(venv.parent)}
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import arcgap; print(arcgap.__file__)"],
                           env=env, capture_output=True, text=True, cwd=venv.parent)
    assert where.stdout.startswith(str(venv)), "the installed copy must not be this checkout"
    verify = subprocess.run(["ip", "netns", "exec", netns, str(venv / "bin" / "arcgap"), "verify", str(bundle),
                             "--json", "-q"], env=env, capture_output=True, text=True, timeout=120)
    assert verify.returncode == 0, verify.stderr
    assert json.loads(verify.stdout)["images"] == len(ROLES)


@needs_index
def test_wheelhouse_command_and_existing_directory(
    capsys: pytest.CaptureFixture[str], native_installer: Path
) -> None:
    res = arcgap(capsys, "wheelhouse", "-o", str(native_installer))
    assert res.code == 9
    assert res.error_lines[0] == f"error: {native_installer} already exists"
