"""``make bench BENCH_ARGS=--scale``: arcgap on a release of at least 5 GB with a few multi-GB layers.

The release is the bench's 22 images (``--size-mb``, default 500 MB of blobs) plus one single-layer image per
figure of ``--scale-layers`` (GiB of incompressible content each; default 1.6,1.6,1.6: three layers of about
1.7 GB), generated into files and streamed to the source registry. Then, timed like every bench side:

- ``arcgap export --images LIST -o B --split-size fat32``: parts of at most 4294967295 bytes and the sidecar;
- ``arcgap verify B.parts.yaml`` (the far side's check of the copied media);
- ``arcgap import B.parts.yaml`` into a fresh empty registry, then every digest compared with skopeo.

Reported: wall time, throughput (blob bytes per second), peak RSS and CPU time of each step, the parts'
sizes. Free space is checked first (the source, the bundle and the target each hold the release once); the
work directory is removed at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from devtools.bench import _load, _log, _versions, generate, side_text, write_image_list
from devtools.benchsides import Bench, OtherCpu, Side, settle
from devtools.registries import crane_binary
from devtools.runs import Measured, run_measured
from devtools.scenario import MB

FAT32_MAX = 4294967295
MIN_SCALE_BYTES = 5_000_000_000


def _free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def run_scale(work: Path, args: argparse.Namespace) -> int:
    big = [(f"arc-big-layer-{n + 1}", gib) for n, gib in enumerate(args.scale_layers)]
    planned = args.size_mb * MB + sum(g * (1 << 30) for _, g in big)
    need = 3.2 * planned + (max((g for _, g in big), default=0) * (1 << 30))  # source, bundle, target, one file
    free = _free_bytes(work)
    _log(f"scale run: about {planned / MB:.0f} MB of blobs; {free / 1e9:.1f} GB free in {work}, "
         f"{need / 1e9:.1f} GB needed; {_load()}")  # fmt: skip
    if planned < MIN_SCALE_BYTES:
        _log(f"NOTE: {planned / MB:.0f} MB is less than the {MIN_SCALE_BYTES / MB:.0f} MB a scale run should cover")
    if free < need:
        print(f"bench: not enough free space in {work}: {free / 1e9:.1f} GB free, {need / 1e9:.1f} GB needed "
              "(--tmpdir elsewhere, or fewer/smaller --scale-layers)", file=sys.stderr)  # fmt: skip
        return 2
    versions = _versions(str(crane_binary() or ""))
    steps: dict[str, Any] = {}
    with ExitStack() as stack:
        bench = Bench(work, stack, jobs=args.jobs)
        release = generate(bench, args.size_mb, big)
        total = release["blob_bytes"]
        image_list = write_image_list(bench)
        log = bench.logs / "scale.log"
        out_dir = work / "out"
        out_dir.mkdir()
        bundle = out_dir / "arc.tar.zst"

        _log(f"scale: arcgap export --split-size fat32 ({_load()})")
        m = bench.arcgap_export(image_list, bundle, log, "--split-size", "fat32")
        parts = sorted(p for p in out_dir.iterdir() if p.suffix[1:].isdigit())
        sizes = {p.name: p.stat().st_size for p in parts}
        _log(side_text(m) + f"; parts: {', '.join(f'{n} {s / MB:.0f} MB' for n, s in sizes.items())}")
        too_big = [n for n, s in sizes.items() if s > FAT32_MAX]
        steps["export"] = _step(m, total)
        steps["export"]["parts"] = sizes
        if too_big:
            print(f"bench: FAILED: parts larger than FAT32 allows: {', '.join(too_big)}", file=sys.stderr)
            return 1
        shutil.rmtree(out_dir / "arcgap-cache", ignore_errors=True)
        sidecar = out_dir / "arc.tar.zst.parts.yaml"

        _log(f"scale: arcgap verify {sidecar.name} ({_load()})")
        settle()
        with Measured() as m, OtherCpu(m, []):
            m.add(run_measured([sys.executable, "-m", "arcgap", "verify", str(sidecar)], env=bench.env(), log=log,
                               cwd=out_dir))  # fmt: skip
        _log(side_text(m))
        steps["verify"] = _step(m, total)

        target = bench.fresh_target("scale")
        _log(f"scale: arcgap import {sidecar.name} into {target.url} ({_load()})")
        m = bench.arcgap_import(sidecar, target, log)
        _log(side_text(m))
        steps["import"] = _step(m, total)
        rows = bench.compare(target)
        same = sum(1 for r in rows if r.match)
        _log(f"  target: {same}/{len(rows)} digests identical to the source")
        steps["digests"] = f"{same}/{len(rows)}"
        for p in out_dir.iterdir():
            p.unlink() if p.is_file() else shutil.rmtree(p, ignore_errors=True)
    _log("")
    _log(f"scale run: {release['images']} images, {release['unique_blobs']} unique blobs, {total / MB:.0f} MB, "
         f"layers of {', '.join(f'{g:g}' for _, g in big)} GiB content")  # fmt: skip
    head = f"{'step':<8}{'seconds':>9}{'MB/s':>8}{'peak RSS MiB':>14}{'CPU s':>8}{'other CPU s':>13}"
    _log(head)
    _log("-" * len(head))
    for name in ("export", "verify", "import"):
        s = steps[name]
        _log(f"{name:<8}{s['seconds']:>9.1f}{s['mb_per_s']:>8.0f}{s['peak_rss_mib']:>14.1f}{s['cpu_s']:>8.1f}"
             f"{s['other_cpu_s']:>13.1f}")  # fmt: skip
    _log(f"digests: {steps['digests']} identical; {_load()}")
    result = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "versions": versions, "release": release,
              "steps": steps, "loadavg_at_end": [round(x, 2) for x in os.getloadavg()]}  # fmt: skip
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(result, indent=2) + "\n")
    _log(f"results written to {args.json_out}")
    if same != len(rows) or not rows:
        print("bench: FAILED: the scale target does not hold the source's digests", file=sys.stderr)
        return 1
    return 0


def _step(m: Measured, total: int) -> dict[str, Any]:
    side = Side.of(m)
    return {**side.__dict__, "mb_per_s": round(total / MB / max(m.seconds, 1e-9), 1)}
