"""Wheels for another machine: install targets (CPython version × Linux platform), and a small resolver that
fetches every runtime dependency with ``pip download --no-deps --only-binary=:all:``, evaluating environment
markers for the *target* — pip evaluates them for the machine it runs on, so a wheelhouse for Python 3.9 built on
3.11 would miss ``exceptiongroup``, and one built on Windows would ask for ``pywin32``.
"""

from __future__ import annotations

import email.message
import email.parser
import platform as host_platform
import re
import subprocess
import sys
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arcgap.errors import ArcgapError, NetworkError, NotFoundError, RegistryError, UsageError, option

try:  # the standalone library when present; pip (which this module drives anyway) always vendors it
    from packaging import markers, tags, utils
    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version
except ImportError:  # pragma: no cover - depends on the environment
    from pip._vendor.packaging import markers, tags, utils  # type: ignore[no-redef]
    from pip._vendor.packaging.requirements import Requirement  # type: ignore[no-redef]
    from pip._vendor.packaging.specifiers import SpecifierSet  # type: ignore[no-redef]
    from pip._vendor.packaging.version import Version  # type: ignore[no-redef]

PLATFORMS = ("manylinux2014_x86_64", "manylinux2014_aarch64")
PYTHONS = ("3.9", "3.10", "3.11", "3.12", "3.13")
MAX_ROUNDS = 12  # dependency depth is ~4 here; a loop beyond this means versions keep changing
_PIP_TAIL_LINES = 6

Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


def _manylinux2014(arch: str) -> list[str]:
    """manylinux2014 (glibc 2.17) and every older manylinux, in both spellings (PEP 600 and legacy), so a
    wheel tagged only ``manylinux_2_17_x86_64`` counts as much as one tagged ``manylinux2014_x86_64``."""
    modern = [f"manylinux_2_{minor}_{arch}" for minor in range(17, 4, -1)]
    legacy = [f"manylinux2014_{arch}"] + ([f"manylinux2010_{arch}", f"manylinux1_{arch}"] if arch == "x86_64" else [])
    return modern + legacy


@dataclass(frozen=True)
class Target:
    """One machine to install on: CPython ``python`` ("3.11") on ``platform`` (None: this machine's)."""

    python: str
    platform: str | None

    @property
    def native(self) -> bool:
        return self.platform is None and self.python == host_python()

    @property
    def machine(self) -> str | None:
        """``uname -m`` of the target (for install.sh's check); None when not known to be Linux."""
        if self.platform is not None:
            return self.platform.split("_", 1)[1]
        return host_platform.machine() if sys.platform.startswith("linux") else None

    @property
    def python_full(self) -> str:
        """The version ``Requires-Python`` is checked against (pip takes X.Y as X.Y.0 too)."""
        return host_platform.python_version() if self.native else f"{self.python}.0"

    @property
    def label(self) -> str:
        return f"cp{self.python.replace('.', '')}-{self.platform or host_platform_tag()}"

    def platform_tags(self) -> list[str]:
        if self.platform is None:
            return list(tags.platform_tags())
        return _manylinux2014(self.platform.split("_", 1)[1])

    def pip_args(self) -> list[str]:
        if self.native:
            return []
        args = ["--python-version", self.python, "--implementation", "cp"]  # pip derives the ABIs from these
        if self.platform is not None:
            for plat in self.platform_tags():
                args += ["--platform", plat]
        return args

    def supported(self) -> frozenset[str]:
        """Every wheel tag this target installs, as strings (``cp39-cp39-manylinux_2_17_x86_64``)."""
        if self.native:
            return frozenset(str(t) for t in tags.sys_tags())
        version = tuple(int(p) for p in self.python.split("."))
        plats = self.platform_tags()
        found = list(tags.cpython_tags(python_version=version, platforms=plats))
        found += tags.compatible_tags(python_version=version, interpreter=f"cp{self.python.replace('.', '')}",
                                      platforms=plats)
        return frozenset(str(t) for t in found)

    def environment(self) -> dict[str, str]:
        """PEP 508 marker variables of the target."""
        env = dict(markers.default_environment())
        if self.native:
            return env
        env.update(python_version=self.python, python_full_version=f"{self.python}.0",
                   implementation_name="cpython", implementation_version=f"{self.python}.0",
                   platform_python_implementation="CPython")
        if self.platform is not None:
            env.update(os_name="posix", sys_platform="linux", platform_system="Linux", platform_release="",
                       platform_version="", platform_machine=self.machine or "")
        return env

    def to_dict(self) -> dict[str, Any]:
        return {"python": self.python, "platform": self.platform or host_platform_tag(), "label": self.label}


def host_python() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def host_platform_tag() -> str:
    """This machine's most specific platform tag, for labels (``manylinux_2_36_x86_64``, ``win_amd64``)."""
    return next(iter(tags.platform_tags()), "unknown")


def targets_for(platforms: Sequence[str], pythons: Sequence[str]) -> list[Target]:
    """Every (python, platform) pair asked for; none given means this machine's Python and platform."""
    for plat in platforms:
        if plat not in PLATFORMS:
            raise UsageError(f"unsupported installer platform {plat!r}", hint=f"choose from {', '.join(PLATFORMS)}")
    for py in pythons:
        if py not in PYTHONS:
            raise UsageError(f"unsupported installer Python {py!r}", hint=f"choose from {', '.join(PYTHONS)}")
    plats: list[str | None] = list(dict.fromkeys(platforms)) or [None]
    pys = list(dict.fromkeys(pythons)) or [host_python()]
    return [Target(py, plat) for py in pys for plat in plats]


# --- wheels on disk ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Wheel:
    path: Path
    name: str  # canonical project name
    version: Version
    tags: frozenset[str]

    @property
    def requires_python(self) -> SpecifierSet:
        return SpecifierSet(_metadata(self.path).get("Requires-Python") or "")

    def installs_on(self, target: Target, supported: frozenset[str]) -> bool:
        """Tags and ``Requires-Python`` both admit the target (a py3-none-any wheel may still need 3.10)."""
        return bool(self.tags & supported) and self.requires_python.contains(target.python_full, True)


def read_wheel(path: Path) -> Wheel:
    name, version, _build, wheel_tags = utils.parse_wheel_filename(path.name)
    return Wheel(path, utils.canonicalize_name(name), version, frozenset(str(t) for t in wheel_tags))


def _metadata(path: Path) -> email.message.Message:
    with zipfile.ZipFile(path) as zf:
        meta = next((n for n in zf.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n)), None)
        if meta is None:
            raise RegistryError(f"{path.name} has no METADATA", hint="the wheel is damaged: delete it and retry")
        text = zf.read(meta).decode("utf-8")
    return email.parser.HeaderParser().parsestr(text)


def wheel_requirements(path: Path) -> list[Requirement]:
    """``Requires-Dist`` of a wheel's METADATA."""
    return [Requirement(value) for value in _metadata(path).get_all("Requires-Dist") or []]


def applies(req: Requirement, env: dict[str, str], extras: frozenset[str]) -> bool:
    if req.marker is None:
        return True
    return any(req.marker.evaluate({**env, "extra": extra}) for extra in ("", *sorted(extras)))


# --- resolving -----------------------------------------------------------------------------------------------


@dataclass
class _Wants:
    spec: SpecifierSet
    extras: set[str]
    text: str  # the name as first written, for pip and messages


def resolve(
    dest: Path, target: Target, roots: Sequence[Requirement], download: Callable[[list[str], Target], None]
) -> list[Path]:
    """Make ``dest`` hold a wheel for ``target`` of every requirement in the closure of ``roots``; returns the
    chosen wheels. ``download(requirements, target)`` puts wheels for requirement strings into ``dest``."""
    env = target.environment()
    supported = target.supported()
    wants: dict[str, _Wants] = {}
    chosen: dict[str, Wheel] = {}
    processed: dict[str, tuple[Path, frozenset[str]]] = {}
    local = {utils.canonicalize_name(r.name) for r in roots}  # the roots' wheels are in dest already
    pending = list(roots)
    for _ in range(MAX_ROUNDS):
        for req in pending:
            key = utils.canonicalize_name(req.name)
            want = wants.setdefault(key, _Wants(SpecifierSet(), set(), req.name))
            want.spec &= req.specifier
            want.extras |= set(req.extras)
        need = [k for k, w in wants.items() if k not in chosen or not w.spec.contains(chosen[k].version, True)]
        if need:
            on_disk = [read_wheel(p) for p in sorted(dest.glob("*.whl"))]
            fetch = [k for k in need if k not in local and not _pick(on_disk, k, wants[k].spec, target, supported)]
            if fetch:  # what is here already is never fetched again (nor arcgap itself, which no index has)
                download([f"{wants[k].text}{wants[k].spec}" for k in fetch], target)
                on_disk = [read_wheel(p) for p in sorted(dest.glob("*.whl"))]
            for key in need:
                best = _pick(on_disk, key, wants[key].spec, target, supported)
                if best is None:
                    raise NotFoundError(f"no wheel of {wants[key].text}{wants[key].spec} for {target.label}",
                                        hint=f"pick another {option('installer_python')} or "
                                             f"{option('installer_platform')}")
                chosen[key] = best
        pending = []
        for key, wheel in chosen.items():
            extras = frozenset(wants[key].extras)
            if processed.get(key) != (wheel.path, extras):
                processed[key] = (wheel.path, extras)
                pending += [r for r in wheel_requirements(wheel.path) if applies(r, env, extras)]
        if not need and not pending:
            return [w.path for w in chosen.values()]
    raise RegistryError(f"dependencies for {target.label} did not settle after {MAX_ROUNDS} rounds",
                        hint="report this with the output of 'pip download' for the same requirements")


def _pick(
    wheels: Sequence[Wheel], name: str, spec: SpecifierSet, target: Target, supported: frozenset[str]
) -> Wheel | None:
    fits = [w for w in wheels if w.name == name and spec.contains(w.version, True) and w.installs_on(target, supported)]
    return max(fits, key=lambda w: w.version) if fits else None


def pip_download(python: str, dest: Path, *, run: Runner | None = None) -> Callable[[list[str], Target], None]:
    """A ``download`` for :func:`resolve`: ``pip download --no-deps --only-binary=:all:`` into ``dest``."""

    def download(requirements: list[str], target: Target) -> None:
        argv = [python, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
                "--no-input", "--dest", str(dest), *target.pip_args(), *requirements]
        done = (run or run_quiet)(argv)
        if done.returncode != 0:
            raise pip_error(done, f"downloading {', '.join(requirements)} for {target.label}")

    return download


def run_quiet(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(list(argv), capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
    except OSError as exc:
        raise UsageError(f"cannot run {argv[0]}: {exc.strerror}", hint="install pip for this Python") from None


def pip_error(done: subprocess.CompletedProcess[str], what: str) -> ArcgapError:
    """pip's failure as an ArcgapError: its last lines, and the class its text points to."""
    text = (done.stderr or "") + "\n" + (done.stdout or "")
    lines = [re.sub(r"\(from versions: [^)]*\)", "(from versions: …)", ln.strip()) for ln in text.splitlines()
             if ln.strip().startswith("ERROR")] or [ln.strip() for ln in text.splitlines() if ln.strip()]
    tail = " / ".join(lines[-_PIP_TAIL_LINES:]) or f"exit status {done.returncode}"
    message = f"{what}: pip failed: {tail}"
    if "No module named pip" in text:
        return UsageError(message, hint=f"install pip for {sys.executable}")
    if "No matching distribution" in text or "Could not find a version" in text:
        return NotFoundError(message, hint="the package index has no wheel for that target: try another "
                             f"{option('installer_python')} or {option('installer_platform')} (nothing is ever built "
                             "from source)")
    if any(s in text for s in ("NewConnectionError", "Failed to establish", "ConnectTimeout", "Max retries",
                               "Temporary failure in name resolution", "Network is unreachable")):
        return NetworkError(message, hint="the connected side needs the package index (PyPI or your mirror, "
                            "as pip is configured) to build the installer")
    return RegistryError(message, hint="run the same 'pip download' by hand to see everything it says")


def foreign_host_warning(targets: Sequence[Target], *, host: str | None = None) -> str | None:
    """A warning when the installer targets this machine and this machine is not Linux (a Windows laptop);
    ``host``: this machine's ``sys.platform`` (None: asked)."""
    if (host or sys.platform).startswith("linux") or all(t.platform is not None for t in targets):
        return None
    return (f"the installer holds wheels for this machine ({host_platform_tag()}); for a Linux far side pass "
            f"{option('installer_platform')} manylinux2014_x86_64 (or _aarch64) and {option('installer_python')} X.Y")
