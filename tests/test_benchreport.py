"""The bench's ratios: per round, the tool's time over the peer's, the median reported (pure, no services)."""

from __future__ import annotations

from devtools.bench import NO_REFERRERS_RUN, referrer_overhead
from devtools.benchreport import ratio_summary
from devtools.benchsides import Run, Side


def _run(tool: str, n: int, export_s: float, import_s: float | None) -> Run:
    def side(seconds: float) -> Side:
        return Side(seconds=seconds, peak_rss_mib=1.0, tool_rss_mib=1.0, peak_process=tool, processes=1, cpu_s=0.0,
                    other_cpu_s=0.0)

    return Run(tool, n, side(export_s), side(import_s) if import_s is not None else None, bundle_bytes=1)


def test_ratios_are_taken_round_by_round_and_rounds_missing_a_side_are_left_out() -> None:
    rounds = [
        {"arcgap": _run("arcgap", 0, 2.0, 3.0), "crane": _run("crane", 0, 4.0, 6.0),
         NO_REFERRERS_RUN: _run(NO_REFERRERS_RUN, 0, 1.0, 3.0)},
        {"arcgap": _run("arcgap", 1, 3.0, None), "crane": _run("crane", 1, 3.0, 2.0),
         NO_REFERRERS_RUN: _run(NO_REFERRERS_RUN, 1, 2.0, 2.0)},
        {"arcgap": _run("arcgap", 2, 1.0, 1.0), "crane": _run("crane", 2, 1.0, 1.0)},
    ]
    ratios = ratio_summary(rounds)
    assert ratios["export_vs_crane"] == 1.0  # median of 0.5, 1.0, 1.0
    assert ratios["import_vs_crane"] == 0.75  # median of 0.5 and 1.0: round 1 has no arcgap import
    assert "export_vs_skopeo" not in ratios
    assert referrer_overhead(rounds) == {"export_overhead": 0.75, "import_overhead": 0.0}  # median of 2.0, 1.5
