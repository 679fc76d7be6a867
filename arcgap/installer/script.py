"""The files that make a wheelhouse installable offline: ``SHA256SUMS`` (sha256sum's format) and ``install.sh``,
which checks every file against it with Python's hashlib (nothing but Python is needed on the far side), then
creates a virtual environment and installs with ``pip install --no-index --find-links``."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

INSTALL_SCRIPT = "install.sh"
SUMS_FILE = "SHA256SUMS"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class ListedFile:
    name: str
    sha256: str
    size_bytes: int

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "sha256": self.sha256, "size_bytes": self.size_bytes}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def list_files(directory: Path, names: Iterable[str]) -> list[ListedFile]:
    return [ListedFile(n, sha256_file(directory / n), (directory / n).stat().st_size) for n in sorted(names)]


def sums_text(files: Sequence[ListedFile]) -> str:
    """``sha256sum -c`` reads this too: two spaces between digest and name."""
    return "".join(f"{f.sha256}  {f.name}\n" for f in files)


_CHECK = r'''
import hashlib, platform, sys
from pathlib import Path

here, pythons, machines = Path(sys.argv[1]), sys.argv[2].split(), sys.argv[3].split()
mine = "%d.%d" % sys.version_info[:2]
if mine not in pythons:
    sys.exit("error: this wheelhouse is for CPython %s, but %s is %s\n"
             "hint: run with PYTHON=/path/to/python%s sh install.sh, or build the installer with "
             "--installer-python %s" % (" or ".join(pythons), sys.executable, mine, pythons[0], mine))
if machines and platform.machine() not in machines:
    sys.exit("error: this wheelhouse is for %s machines, this one is %s\n"
             "hint: build the installer with --installer-platform manylinux2014_%s"
             % (" or ".join(machines), platform.machine(), platform.machine()))
listed = {}
for number, line in enumerate((here / "SHA256SUMS").read_text().splitlines(), 1):
    digest, sep, name = line.partition("  ")
    if not sep or len(digest) != 64 or "/" in name or name in ("", ".", ".."):
        sys.exit("error: SHA256SUMS:%d is malformed\nhint: copy the installer directory again" % number)
    listed[name] = digest
bad = []
for name, digest in sorted(listed.items()):
    h = hashlib.sha256()
    try:
        with open(here / name, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError:
        bad.append(name + " (missing)")
        continue
    if h.hexdigest() != digest:
        bad.append(name + " (sha256 differs)")
bad += [p.name + " (not listed)" for p in sorted(here.glob("*.whl")) if p.name not in listed]
if bad:
    sys.exit("error: the installer does not match SHA256SUMS: %s\n"
             "hint: copy the installer directory again from the original; nothing was installed" % ", ".join(bad))
print("checked %d files against SHA256SUMS" % len(listed))
'''


def install_script(*, version: str, pythons: Sequence[str], machines: Sequence[str]) -> str:
    """``install.sh [VENV]`` for arcgap ``version``; ``machines`` empty: no architecture check."""
    return f"""#!/bin/sh
# Offline installer for arcgap {version}, written by 'arcgap export --with-installer' / 'arcgap wheelhouse'.
# Usage: sh install.sh [VENV]    (default VENV: ./arcgap-venv; PYTHON=python3.X picks the interpreter)
# 1. checks every file of this directory against SHA256SUMS (with Python's hashlib: nothing else is needed);
# 2. creates the virtual environment VENV;
# 3. installs arcgap and its dependencies from the wheels here, never from a network (pip --no-index).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
venv=${{1:-arcgap-venv}}
python=${{PYTHON:-python3}}
if ! command -v "$python" >/dev/null 2>&1; then
    echo "error: $python not found" >&2
    echo "hint: install CPython {' or '.join(pythons)}, or set PYTHON=/path/to/python3" >&2
    exit 1
fi
"$python" - "$here" "{' '.join(pythons)}" "{' '.join(machines)}" <<'CHECK'
{_CHECK.strip()}
CHECK
if ! "$python" -m venv "$venv"; then
    echo "error: cannot create the virtual environment $venv" >&2
    echo "hint: on Debian/Ubuntu the venv module is the package python3-venv" >&2
    exit 1
fi
# No configuration file, environment variable or index can add a package that is not in this directory.
PIP_CONFIG_FILE=/dev/null "$venv/bin/python" -m pip --isolated install --no-index --find-links "$here" \\
    --disable-pip-version-check --no-input --quiet "arcgap=={version}"
"$venv/bin/arcgap" --version
echo "installed: $venv/bin/arcgap (add $venv/bin to PATH, or call it by that path)"
"""
