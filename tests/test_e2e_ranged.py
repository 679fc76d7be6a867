"""Export with large blobs in parallel ranges through a fault proxy before a real registry: the same bundle,
byte for byte, as one stream per blob; a range cut mid-way is asked for again; the layer verified throughout."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from arcgap.registry.ranged import RangedOptions
from devtools.faultproxy import Fault, FaultProxy
from tests.test_e2e_faults_streams import ONE_STREAM, QUICK_RETRIES, biggest_layer, export_via
from tests.test_e2e_roundtrip import clean_env  # noqa: F401 (autouse fixture)

if TYPE_CHECKING:
    from tests.conftest import MediumSet

PART = 256 * 1024


@pytest.fixture
def source(synth_medium: MediumSet) -> Iterator[FaultProxy]:
    proxy = FaultProxy(synth_medium.registry.host)
    yield proxy
    proxy.stop()


def test_ranged_export_gives_the_same_bundle_and_survives_a_cut_range(
    capsys: pytest.CaptureFixture[str], synth_medium: MediumSet, source: FaultProxy, tmp_path: Path,
) -> None:
    layer = biggest_layer(synth_medium)
    reference = tmp_path / "reference.tar.zst"
    assert export_via(capsys, synth_medium, source.host, reference, network=ONE_STREAM).code == 0
    # Parts of 256 KiB from 1 MiB up, and never the one-stream shortcut loopback would otherwise take.
    ranged = RangedOptions(threshold_bytes=4 * PART, part_bytes=PART, window=3, ahead=4, slots=6,
                           fast_bytes_per_s=1e15, near_rtt_s=0.0)
    source.faults.append(Fault(rf"^GET /v2/.*/blobs/{layer}$", kind="cut_response", after_bytes=100_000, times=1))
    out = tmp_path / "ranged.tar.zst"
    res = export_via(capsys, synth_medium, source.host, out, network=replace(QUICK_RETRIES, ranged=ranged))
    assert res.code == 0, res.err
    source.wait_idle()
    ranges = [r.headers.get("range") for r in source.matching(rf"^GET /v2/.*/blobs/{layer}$")]
    assert f"bytes=0-{PART - 1}" in ranges and f"bytes={PART}-{2 * PART - 1}" in ranges  # ranged
    assert len([r for r in ranges if r]) >= 3 * 1024 * 1024 // PART + 1  # every part (the cut one twice)
    assert out.read_bytes() == reference.read_bytes()


def test_one_job_is_one_request_at_a_time_even_on_a_slow_path(
    capsys: pytest.CaptureFixture[str], synth_medium: MediumSet, source: FaultProxy, tmp_path: Path,
) -> None:
    """``--jobs 1`` (what an operator asks of a registry that cannot take more) sends one request at a time,
    look-ups and blobs alike: no parts in parallel and no blob claimed ahead, even where the path is judged
    slow; the bundle is the same."""
    reference = tmp_path / "reference.tar.zst"
    assert export_via(capsys, synth_medium, source.host, reference, network=ONE_STREAM).code == 0
    source.wait_idle()
    source.max_in_flight = 0
    ranged = RangedOptions(threshold_bytes=4 * PART, part_bytes=PART, window=3, ahead=4, slots=6,
                           fast_bytes_per_s=1e15, near_rtt_s=0.0)  # every path judged slow
    source.latency_s, source.latency_pattern = 0.02, r"^GET /v2/.*/blobs/"  # downloads overlap if they can
    out = tmp_path / "one-job.tar.zst"
    res = export_via(capsys, synth_medium, source.host, out, "--jobs", "1",
                     network=replace(QUICK_RETRIES, ranged=ranged))
    assert res.code == 0, res.err
    source.wait_idle()
    assert source.max_in_flight == 1
    assert out.read_bytes() == reference.read_bytes()
