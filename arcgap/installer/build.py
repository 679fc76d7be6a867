"""The offline installer (``NAME.installer/``): arcgap's own wheel, every runtime dependency as a wheel for the
far side's platform and Python, ``install.sh`` and ``SHA256SUMS``. Built in a hidden sibling directory and
renamed into place only when complete, so a failed build never leaves half an installer behind."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from arcgap import __version__
from arcgap.errors import LocalIOError, RegistryError, UsageError, option
from arcgap.installer.script import INSTALL_SCRIPT, SUMS_FILE, ListedFile, install_script, list_files, sums_text
from arcgap.installer.wheelhouse import (
    Requirement,
    Runner,
    Target,
    pip_download,
    pip_error,
    read_wheel,
    resolve,
    run_quiet,
)

# What building arcgap's wheel needs from a checkout (pyproject.toml names the packages and their folders).
SOURCE_ENTRIES = ("pyproject.toml", "README.md", "LICENSE", "arcgap", "manifests")
MAX_PASSES = 4


@dataclass(frozen=True)
class InstallerResult:
    directory: Path
    arcgap_wheel: str
    targets: tuple[Target, ...]
    files: tuple[ListedFile, ...]  # every file but SHA256SUMS, as listed in it

    @property
    def total_bytes(self) -> int:
        return sum(f.size_bytes for f in self.files)

    def to_dict(self) -> dict[str, Any]:
        return {
            "directory": str(self.directory),
            "install_script": str(self.directory / INSTALL_SCRIPT),
            "sums_file": str(self.directory / SUMS_FILE),
            "arcgap_wheel": self.arcgap_wheel,
            "targets": [t.to_dict() for t in self.targets],
            "files": [f.to_dict() for f in self.files],
            "total_bytes": self.total_bytes,
        }


def installer_dir(bundle: Path) -> Path:
    """``arc-v1.29.0.tar.zst`` → ``arc-v1.29.0.installer`` next to it."""
    name = bundle.name
    for suffix in (".tar.zst", ".zst", ".tar"):
        if name.endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
            break
    return bundle.with_name(f"{name}.installer")


@dataclass
class StagedInstaller:
    """A complete installer in ``staging``; :meth:`publish` moves it to ``result.directory``."""

    staging: Path
    result: InstallerResult
    overwrite: bool
    _done: bool = field(default=False, repr=False)

    def publish(self) -> InstallerResult:
        final = self.result.directory
        try:
            if final.exists() or final.is_symlink():
                if not self.overwrite:
                    raise LocalIOError(f"{final} already exists", hint=f"pass {option('force')} to replace it")
                shutil.rmtree(final) if final.is_dir() and not final.is_symlink() else final.unlink()
            self.staging.rename(final)
        except OSError as exc:
            raise LocalIOError(f"cannot move the installer to {final}: {exc.strerror}",
                               hint="check the directory's permissions") from None
        self._done = True
        return self.result

    def discard(self) -> None:
        if not self._done:
            shutil.rmtree(self.staging, ignore_errors=True)
            self._done = True


def check_destination(directory: Path, *, overwrite: bool) -> None:
    """Fail before any download when the installer directory is there already."""
    if (directory.exists() or directory.is_symlink()) and not overwrite:
        raise LocalIOError(f"{directory} already exists", hint=f"pass {option('force')} to replace it, or choose "
                                                               "another name")


def stage_installer(
    directory: Path, *, targets: Sequence[Target], overwrite: bool, python: str | None = None,
    run: Runner | None = None,
) -> StagedInstaller:
    """Build the installer for ``directory`` in a hidden sibling; nothing at ``directory`` changes yet."""
    check_destination(directory, overwrite=overwrite)
    python = python or sys.executable
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
        staging.chmod(0o755)  # mkdtemp's 0700 would follow the installer to the far side
    except OSError as exc:
        raise LocalIOError(f"cannot create {directory}: {exc.strerror}", hint="check the directory's permissions") \
            from None
    try:
        wheel = arcgap_wheel(staging, python=python, run=run)
        version = str(read_wheel(wheel).version)  # the checkout's pyproject.toml has the last word
        root = [Requirement(f"arcgap=={version}")]
        download = pip_download(python, staging, run=run)
        keep = _resolve_all(staging, targets, root, download, arcgap=wheel)
        for stray in set(staging.glob("*.whl")) - keep:  # a version replaced during resolution
            stray.unlink()
        machines = sorted({t.machine for t in targets if t.machine}) if all(t.machine for t in targets) else []
        script = install_script(version=version, pythons=sorted({t.python for t in targets}), machines=machines)
        (staging / INSTALL_SCRIPT).write_bytes(script.encode())  # LF line endings, also when built on Windows
        (staging / INSTALL_SCRIPT).chmod(0o755)
        files = list_files(staging, [p.name for p in staging.iterdir() if p.name != SUMS_FILE])
        (staging / SUMS_FILE).write_bytes(sums_text(files).encode())
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    result = InstallerResult(directory, wheel.name, tuple(targets), tuple(files))
    return StagedInstaller(staging, result, overwrite)


def _resolve_all(
    staging: Path, targets: Sequence[Target], root: list[Requirement], download: Callable[[list[str], Target], None],
    *, arcgap: Path,
) -> set[Path]:
    """Every target's wheels. pip on the far side takes the newest wheel here that installs, whichever target
    fetched it: so resolve again until no target brings a new file, each then choosing among all of them."""
    for _ in range(MAX_PASSES):
        before = set(staging.glob("*.whl"))
        keep: set[Path] = {arcgap}
        for target in targets:
            keep.update(resolve(staging, target, root, download))
        if set(staging.glob("*.whl")) == before:
            return keep
    raise RegistryError(f"the wheels for {', '.join(t.label for t in targets)} did not settle",
                        hint="build one installer per target instead")


def build_installer(
    directory: Path, *, targets: Sequence[Target], overwrite: bool, python: str | None = None,
    run: Runner | None = None,
) -> InstallerResult:
    """``arcgap wheelhouse``: build and publish in one go."""
    staged = stage_installer(directory, targets=targets, overwrite=overwrite, python=python, run=run)
    try:
        return staged.publish()
    finally:
        staged.discard()


# --- arcgap's own wheel ---------------------------------------------------------------------------------------


def arcgap_wheel(dest: Path, *, python: str, run: Runner | None = None) -> Path:
    """arcgap's wheel in ``dest``: built from the source it runs from, else copied from the wheel it was
    installed from."""
    source = source_dir()
    if source is not None:
        return _build_wheel(source, dest, python=python, run=run)
    wheel = installed_wheel()
    if wheel is not None:
        return Path(shutil.copy2(wheel, dest / wheel.name))
    raise UsageError(
        f"cannot find arcgap {__version__}'s source or wheel to put in the installer",
        hint="run arcgap from a git checkout (pip install -e .), or install it from its wheel file "
             "(pip install ./arcgap-*.whl) and keep that file where it was",
    )


def _direct_url() -> dict[str, Any]:
    with contextlib.suppress(metadata.PackageNotFoundError, ValueError, TypeError):
        text = metadata.distribution("arcgap").read_text("direct_url.json")
        doc = json.loads(text) if text else {}
        return doc if isinstance(doc, dict) else {}
    return {}


def _file_url_path(url: object) -> Path | None:
    if not isinstance(url, str):
        return None
    parsed = urlparse(url)
    return Path(unquote(parsed.path)) if parsed.scheme == "file" else None


def _is_arcgap_project(folder: Path) -> bool:
    try:
        text = (folder / "pyproject.toml").read_text(encoding="utf-8")
    except OSError:
        return False
    return re.search(r'(?m)^name\s*=\s*"arcgap"\s*$', text) is not None and (folder / "arcgap").is_dir()


def source_dir() -> Path | None:
    """The project folder arcgap runs from: the imported package's parent (a checkout, or an editable or
    folder install recorded in direct_url.json) when it holds arcgap's pyproject.toml."""
    here = Path(__file__).resolve().parents[2]
    candidates = [here]
    doc = _direct_url()
    if "dir_info" in doc:
        found = _file_url_path(doc.get("url"))
        if found is not None:
            candidates.append(found)
    return next((c for c in candidates if _is_arcgap_project(c)), None)


def installed_wheel() -> Path | None:
    """The wheel file arcgap was installed from (``pip install ./arcgap-….whl``), if it is still there."""
    doc = _direct_url()
    path = _file_url_path(doc.get("url")) if "archive_info" in doc else None
    if path is not None and path.suffix == ".whl" and path.is_file() and path.name.startswith(f"arcgap-{__version__}-"):
        return path
    return None


def _build_wheel(source: Path, dest: Path, *, python: str, run: Runner | None) -> Path:
    """``pip wheel --no-deps`` of a copy of the source: a build never writes into the checkout."""
    runner = run or run_quiet
    with tempfile.TemporaryDirectory(prefix="arcgap-wheel-") as tmp:
        copy = Path(tmp) / "src"
        copy.mkdir()
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
        for name in SOURCE_ENTRIES:
            entry = source / name
            if entry.is_dir():
                shutil.copytree(entry, copy / name, ignore=ignore)
            elif entry.is_file():
                shutil.copy2(entry, copy / name)
        out = Path(tmp) / "out"
        done = runner([python, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "--no-input",
                       "--wheel-dir", str(out), str(copy)])
        if done.returncode != 0:
            raise pip_error(done, f"building arcgap's wheel from {source}")
        built = sorted(out.glob("arcgap-*.whl"))
        if len(built) != 1:
            raise UsageError(f"building arcgap's wheel from {source} gave {len(built)} wheels",
                             hint="check pyproject.toml")
        return Path(shutil.copy2(built[0], dest / built[0].name))

