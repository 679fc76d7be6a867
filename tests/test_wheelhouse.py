"""The wheelhouse resolver without a package index: markers are evaluated for the target, extras are followed,
specifiers from several requirers are combined, wheels already here (arcgap's own) are never fetched."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from arcgap.cli.hints import words
from arcgap.errors import NotFoundError
from arcgap.installer.wheelhouse import Requirement, Target, read_wheel, resolve, wheel_requirements

# name-version-tags → Requires-Dist lines, as an index would offer them
INDEX: dict[str, list[str]] = {
    "dep_a-1.5-py3-none-any.whl": [],
    "dep_a-2.0-py3-none-any.whl": [],
    "dep_win-1.0-py3-none-any.whl": [],
    "dep_old-1.0-py3-none-any.whl": [],
    "dep_x-1.0-py3-none-any.whl": ["dep-y; extra == 'fast'", "dep-a<2"],
    "dep_y-1.0-py3-none-any.whl": [],
    "dep_native-1.0-cp39-cp39-manylinux_2_17_aarch64.whl": [],
    "dep_native-1.0-cp312-cp312-manylinux2014_x86_64.manylinux_2_17_x86_64.whl": [],
}
ROOT = "app-1.0-py3-none-any.whl"
ROOT_REQUIRES = ["dep-a>=1", "dep-win; sys_platform == 'win32'", "dep-old; python_version < '3.11'",
                 "dep-x[fast]", "dep-native"]


def make_wheel(path: Path, requires: list[str]) -> None:
    name, version = path.name.split("-")[:2]
    meta = "Metadata-Version: 2.1\nName: {}\nVersion: {}\n{}".format(
        name, version, "".join(f"Requires-Dist: {r}\n" for r in requires))
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{name}-{version}.dist-info/METADATA", meta)


class FakeIndex:
    """``download`` for :func:`resolve`: the newest matching wheel for the target, as pip would pick."""

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self.asked: list[str] = []

    def __call__(self, requirements: list[str], target: Target) -> None:
        supported = target.supported()
        for text in requirements:
            self.asked.append(text)
            req = Requirement(text)
            offers = []
            for filename, requires in INDEX.items():
                wheel = read_wheel(Path(filename))
                if wheel.name == req.name.replace("_", "-") and wheel.tags & supported \
                        and req.specifier.contains(wheel.version):
                    offers.append((wheel.version, filename, requires))
            if not offers:
                raise NotFoundError(f"no {text}")
            _, filename, requires = max(offers)
            make_wheel(self.dest / filename, requires)


@pytest.fixture()
def dest(tmp_path: Path) -> Path:
    make_wheel(tmp_path / ROOT, ROOT_REQUIRES)
    return tmp_path


def names(paths: list[Path]) -> set[str]:
    return {p.name for p in paths}


def test_markers_follow_the_target_not_this_machine(dest: Path) -> None:
    index = FakeIndex(dest)
    chosen = resolve(dest, Target("3.9", "manylinux2014_aarch64"), [Requirement("app==1.0")], index)
    assert names(chosen) == {ROOT, "dep_a-1.5-py3-none-any.whl", "dep_old-1.0-py3-none-any.whl",
                             "dep_x-1.0-py3-none-any.whl", "dep_y-1.0-py3-none-any.whl",
                             "dep_native-1.0-cp39-cp39-manylinux_2_17_aarch64.whl"}
    assert not any(a.startswith("app") for a in index.asked), "the root wheel is never fetched"


def test_another_target_gets_other_wheels_and_no_backport(dest: Path) -> None:
    chosen = resolve(dest, Target("3.12", "manylinux2014_x86_64"), [Requirement("app==1.0")], FakeIndex(dest))
    got = names(chosen)
    assert "dep_old-1.0-py3-none-any.whl" not in got and "dep_win-1.0-py3-none-any.whl" not in got
    assert "dep_native-1.0-cp312-cp312-manylinux2014_x86_64.manylinux_2_17_x86_64.whl" in got


def test_specifiers_from_several_requirers_are_combined(dest: Path) -> None:
    index = FakeIndex(dest)
    chosen = resolve(dest, Target("3.12", "manylinux2014_x86_64"), [Requirement("app==1.0")], index)
    assert "dep_a-1.5-py3-none-any.whl" in names(chosen)  # 2.0 came first; dep-x's dep-a<2 replaced it
    assert "dep-a<2,>=1" in index.asked or "dep-a>=1,<2" in index.asked


def test_no_wheel_for_the_target_names_it(dest: Path) -> None:
    with pytest.raises(NotFoundError, match="no dep-native"):
        resolve(dest, Target("3.10", "manylinux2014_x86_64"), [Requirement("app==1.0")], FakeIndex(dest))


def test_requirements_are_read_from_metadata(dest: Path) -> None:
    assert [str(r) for r in wheel_requirements(dest / ROOT)][0] == "dep-a>=1"


def test_a_windows_exporter_is_told_to_name_the_linux_target() -> None:
    from arcgap.installer import wheelhouse

    native = wheelhouse.targets_for([], [])
    warning = wheelhouse.foreign_host_warning(native, host="win32")
    assert "--installer-platform manylinux2014_x86_64" in words(warning or "")
    assert wheelhouse.foreign_host_warning(wheelhouse.targets_for(["manylinux2014_x86_64"], []), host="win32") is None
    assert wheelhouse.foreign_host_warning(native, host="linux") is None
