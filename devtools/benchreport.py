"""The figures of ``make bench``: medians per tool, medians of per-round ratios, arcgap's targets, the table.

Times are medians over the rounds; every ratio (arcgap over crane, skopeo, the floor) is taken within one round
and the median of those is reported, so load that changes between rounds cancels out as far as it can. Peak
RSS is the largest over the rounds, of all the side's processes and of the tool's own (without tar/zstd).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from devtools.benchsides import Run
from devtools.scenario import MB

TOOLS = ("floor", "skopeo", "crane", "arcgap")
TARGET_RSS_MIB = 128.0
# (label, ratio key, limit): arcgap's targets, each a median of per-round ratios
RATIO_TARGETS = (
    ("arcgap export <= 0.8x crane", "export_vs_crane", 0.8),
    ("arcgap export <= 2x the floor", "export_vs_floor", 2.0),
    ("arcgap import <= 0.6x crane", "import_vs_crane", 0.6),
    ("arcgap export <= 0.5x skopeo", "export_vs_skopeo", 0.5),
    ("arcgap import <= 0.5x skopeo", "import_vs_skopeo", 0.5),
)


def _median(values: Sequence[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def tool_summary(runs: Sequence[Run]) -> dict[str, Any]:
    imports = [r.import_ for r in runs if r.import_ is not None]
    return {
        "export_s": _median([r.export.seconds for r in runs]),
        "import_s": _median([s.seconds for s in imports]),
        "bundle_bytes": max((r.bundle_bytes for r in runs), default=0),
        "export_peak_rss_mib": max((r.export.peak_rss_mib for r in runs), default=0.0),
        "import_peak_rss_mib": max((s.peak_rss_mib for s in imports), default=0.0),
        "export_tool_rss_mib": max((r.export.tool_rss_mib for r in runs), default=0.0),
        "import_tool_rss_mib": max((s.tool_rss_mib for s in imports), default=0.0),
        "digests": f"{min((r.digests_identical for r in runs), default=0)}/"
        f"{max((r.digests_compared for r in runs), default=0)}",
    }


def round_ratios(rounds: Sequence[dict[str, Run]], tool: str, peer: str, side: str) -> list[float]:
    """``tool``'s time over ``peer``'s on ``side`` (export or import), one ratio per round that timed both."""
    values = []
    for runs in rounds:
        a, p = runs.get(tool), runs.get(peer)
        if a is None or p is None:
            continue
        a_side, p_side = (a.export, p.export) if side == "export" else (a.import_, p.import_)
        if a_side is not None and p_side is not None and p_side.seconds > 0:
            values.append(a_side.seconds / p_side.seconds)
    return values


def ratio_summary(rounds: Sequence[dict[str, Run]]) -> dict[str, float | None]:
    """Medians of per-round ratios (arcgap's time over the peer's, both from the same round)."""
    out: dict[str, float | None] = {}
    for peer in ("crane", "skopeo", "floor"):
        for side in ("export", "import"):
            values = round_ratios(rounds, "arcgap", peer, side)
            if values:
                out[f"{side}_vs_{peer}"] = _median(values)
    return out


def summarize(rounds: Sequence[dict[str, Run]]) -> dict[str, Any]:
    tools = {t: tool_summary([r[t] for r in rounds if t in r]) for t in TOOLS if any(t in r for r in rounds)}
    ratios = ratio_summary(rounds)
    a = tools["arcgap"]
    targets = [
        {"target": label, "value": ratios.get(key), "met": ratios.get(key) is not None and ratios[key] <= limit}
        for label, key, limit in RATIO_TARGETS
        if ratios.get(key) is not None
    ]
    if "crane" in tools:
        c = tools["crane"]["bundle_bytes"]
        value = a["bundle_bytes"] / c if c else None
        targets.append({"target": "arcgap bundle <= crane's tar | zstd -3", "value": value, "met": value is not None
                        and value <= 1.0})  # fmt: skip
    for side in ("export", "import"):
        v = a[f"{side}_peak_rss_mib"]
        targets.append({"target": f"arcgap {side} peak RSS < {TARGET_RSS_MIB:g} MiB", "value": v,
                        "met": v < TARGET_RSS_MIB})  # fmt: skip
    return {"tools": tools, "ratios": ratios, "targets": targets}


def format_report(summary: dict[str, Any], rounds: int) -> str:
    tools, ratios = summary["tools"], summary["ratios"]
    head = (
        f"{'tool':<8}{'export s':>10}{'import s':>10}{'bundle MB':>11}{'export RSS MiB':>16}{'import RSS MiB':>16}"
        f"{'digests':>9}"
    )
    lines = [f"results: medians over {rounds} round(s); RSS: largest, all processes (the tool alone)", head,
             "-" * len(head)]  # fmt: skip

    def rss(v: float, tool: float) -> str:
        return f"{v:.0f} ({tool:.0f})" if v else "-"

    for name, t in tools.items():
        imp = f"{t['import_s']:.2f}" if t["import_s"] is not None else "-"
        bundle = f"{t['bundle_bytes'] / MB:.1f}" if t["bundle_bytes"] else "-"
        digests = t["digests"] if name != "floor" else "-"
        lines.append(
            f"{name:<8}{t['export_s']:>10.2f}{imp:>10}{bundle:>11}"
            f"{rss(t['export_peak_rss_mib'], t['export_tool_rss_mib']):>16}"
            f"{rss(t['import_peak_rss_mib'], t['import_tool_rss_mib']):>16}{digests:>9}"
        )
    lines.append("")
    lines.append("arcgap over each peer, medians of per-round ratios:")
    for peer in ("crane", "skopeo", "floor"):
        exp, imp = ratios.get(f"export_vs_{peer}"), ratios.get(f"import_vs_{peer}")
        if exp is None:
            continue
        lines.append(f"  arcgap/{peer:<7} export {exp:.2f}x" + (f"   import {imp:.2f}x" if imp is not None else ""))
    lines.append("")
    lines.append("targets:")
    for t in summary["targets"]:
        value = t["value"]
        shown = "n/a" if value is None else (f"{value:.1f} MiB" if "RSS" in t["target"] else f"{value:.2f}x")
        lines.append(f"  {t['target']:<42} {shown:>10}   {'met' if t['met'] else 'NOT met'}")
    return "\n".join(lines)
