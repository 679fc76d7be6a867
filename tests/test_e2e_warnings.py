"""One warnings channel: every warning is a ``warning: …`` line on stderr, with or without --quiet; --quiet
silences progress only."""

from __future__ import annotations

from pathlib import Path

import pytest

from arcgap.cli.common import reporter_for
from devtools.synth import SmallSet
from tests.e2e_helpers import arcgap, isolate_env, source_args


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_env(monkeypatch, tmp_path)


PLATFORM_WARNING = "--platform keeps one image of the index"


@pytest.mark.parametrize("quiet", [False, True], ids=["progress", "quiet"])
def test_platform_warning_prints_with_and_without_quiet(
    capsys: pytest.CaptureFixture[str], synth_small: SmallSet, tmp_path: Path, quiet: bool
) -> None:
    res = arcgap(capsys, "export", "multiarch", *source_args(synth_small.registry), "--source-repository", "synth",
                 "--source-tag", "v1", "-o", str(tmp_path / "p.tar.zst"), "--platform", "linux/amd64",
                 *(["-q"] if quiet else []))
    assert res.code == 0, res.err
    warnings = [line for line in res.err.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and PLATFORM_WARNING in warnings[0], res.err
    if quiet:  # nothing but the warning: no phases, no byte counts
        assert res.err.splitlines() == warnings
    else:
        assert len(res.err.splitlines()) > 1
    assert res.out.startswith(f"wrote {tmp_path / 'p.tar.zst'}: 1 images")  # the result is not progress


def test_skip_missing_warning_prints_with_quiet(
    capsys: pytest.CaptureFixture[str], synth_small: SmallSet, tmp_path: Path
) -> None:
    res = arcgap(capsys, "export", "docker-image", "no-such-image", *source_args(synth_small.registry),
                 "--source-repository", "synth", "--source-tag", "v1", "-o", str(tmp_path / "s.tar.zst"),
                 "--skip-missing", "-q", "--json")
    assert res.code == 0, res.err
    assert res.err.splitlines() == [f"warning: skipping {synth_small.registry.host}/synth/no-such-image:v1: not at "
                                    "the source (--skip-missing; recorded in the bundle)"]


@pytest.mark.parametrize("quiet", [False, True])
def test_every_reporter_of_the_cli_prints_warnings(capsys: pytest.CaptureFixture[str], quiet: bool) -> None:
    reporter = reporter_for(quiet)
    reporter.phase("a phase")
    reporter.warn("something to know")
    err = capsys.readouterr().err.splitlines()
    assert "warning: something to know" in err
    assert ("a phase" in err) is not quiet
