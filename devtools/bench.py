"""``python -m devtools.bench`` (``make bench``): arcgap against crane and skopeo, same release, same run.

The release: the 22 Arc image names with shared base layers and one multi-arch index (``arc-controller``),
sized to ``--size-mb`` MB of blobs (default 500), pushed to a plain-HTTP source registry on loopback;
``--big-layer-gib N`` adds ``arc-big-layer``, one image whose single layer is N GiB (generated into a file
and streamed, never held in memory).

Each of ``--rounds N`` rounds (default 3) runs, in this order (peers first, so a warm cache never favours
arcgap), each import into a fresh empty distribution registry: the floor, skopeo export and import, crane
export and import, arcgap export and import. What each side runs is in :mod:`devtools.benchsides`.

Reported: per tool the median wall time of each side, the bundle size, and the largest peak RSS (of all the
side's processes, and of the tool's own processes without tar/zstd); and the medians over rounds of the
per-round ratios arcgap/crane, arcgap/skopeo and arcgap export/floor (each ratio taken within one round, so
load that changes between rounds cancels out). Peak RSS is measured by GNU time around every process
(``os.wait4`` on a child of this process would not do: Linux carries the pre-exec image's RSS into the
child's ``ru_maxrss``). After each round the arcgap and crane targets' digests are compared with the source's
(``skopeo inspect --raw``): a broken arcgap run fails the benchmark (exit 1). Missed performance targets are
reported, not failed. The load average is printed with each round.

``--referrers both`` runs arcgap twice a round, with referrer discovery (its default) and with
``--no-referrers``, in alternating order, and reports the discovery overhead of export and import (median of
the per-round ratios; goal <= 5 %); ``--referrers off`` measures arcgap without discovery only. ``--signed``
gives each image an SBOM referrer first (:mod:`devtools.benchreferrers`), so discovery finds and import places
one per image.

``--scale`` runs the scale run instead (:mod:`devtools.benchscale`): a generated release of at least 5 GB with
a few multi-GB layers, exported split for FAT32 and imported, with time, throughput and peak memory.

Results are printed as a table and written as JSON to ``--json-out`` (default ``bench-results.json``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path
from typing import Any

from devtools.benchreport import TOOLS, format_report, round_ratios, summarize
from devtools.benchsides import Bench, Run, Side
from devtools.images import Pusher, push_image
from devtools.layers import write_layer_file
from devtools.procs import StartupError
from devtools.registries import crane_binary
from devtools.runs import PROJECT_ROOT, CommandFailed, Measured
from devtools.scenario import (
    MB,
    RELEASE_TAG,
    SOURCE_REPOSITORY,
    MiB,
    blob_totals,
    image_list_yaml,
    layer_sizes_for,
    tools_missing,
)
from devtools.skopeo import SkopeoError
from devtools.synth import ImageInfo, generate_release_infos

REQUIRED_TOOLS = ("docker-registry", "skopeo", "htpasswd", "tar", "zstd")
BIG_IMAGE = "arc-big-layer"
REFERRER_VARIANTS = ("on", "off")  # --referrers both: arcgap with discovery, then without (order alternates)
NO_REFERRERS_RUN = "arcgap-no-referrers"
REFERRER_OVERHEAD_GOAL = 0.05  # issue 16 item 5: discovery costs at most 5 % of export and of import

BUSY_SHARE = 0.10  # other processes using more than this share of all CPUs during a side: noisy times


def _log(text: str) -> None:
    print(text, flush=True)


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f}"


def generate(bench: Bench, size_mb: float, big_layers: Sequence[tuple[str, float]], *,
             sign: bool = False) -> dict[str, Any]:
    """Push the release (and one image per ``(name, GiB)`` of ``big_layers``) to the bench's source."""
    base, app = layer_sizes_for(size_mb)
    _log(
        f"generating the release: 22 images, base layer {base / MiB:.0f} MiB, app layer {app / MiB:.1f} MiB "
        f"of content (about {size_mb:.0f} MB of blobs) into {bench.source.url}"
    )
    t0 = time.monotonic()
    synth_dir = bench.work / "synth"
    synth_dir.mkdir(exist_ok=True)
    infos: dict[str, ImageInfo] = generate_release_infos(
        bench.source, repository=SOURCE_REPOSITORY, tag=RELEASE_TAG, base_layer_bytes=base, app_layer_bytes=app,
        workdir=synth_dir, threads=2,
    )  # fmt: skip
    for name, gib in big_layers:
        path = synth_dir / f"{name}.tar.gz"
        _log(f"generating {name}: one layer of {gib:g} GiB, streamed to {path.name}")
        layer = write_layer_file(path, f"bench:{name}", int(gib * (1 << 30)), compressible=0.0)
        with Pusher(bench.source) as pusher:
            infos[name] = push_image(
                pusher, f"{SOURCE_REPOSITORY}/{name}", RELEASE_TAG, layers=[layer], flavor="oci",
                labels={"org.arcgap.synth.name": name},
            )  # fmt: skip
        path.unlink()
    bench.set_release(infos)
    signed = 0
    if sign:
        from devtools.benchreferrers import attach_sboms

        signed = attach_sboms(bench.source, infos)
        _log(f"  attached an SBOM referrer (fallback tag) to each of {signed} images")
    blobs, total = blob_totals(infos)
    seconds = time.monotonic() - t0
    _log(f"  {len(infos)} images, {blobs} unique blobs, {total / MB:.1f} MB, in {seconds:.1f} s")
    return {
        "images": len(infos),
        "unique_blobs": blobs,
        "blob_bytes": total,
        "base_layer_content_bytes": base,
        "app_layer_content_bytes": app,
        "big_layers_gib": [g for _, g in big_layers],
        "generate_seconds": round(seconds, 1),
        "referrers_attached": signed,
    }


def write_image_list(bench: Bench) -> Path:
    image_list = bench.work / "images.yaml"
    image_list.write_text(image_list_yaml(
        bench.names, release=RELEASE_TAG, repository=SOURCE_REPOSITORY, title="arcgap bench: the generated release",
    ))  # fmt: skip
    return image_list


def _remove(*paths: Path) -> None:
    for p in paths:
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        elif p.exists() or p.is_symlink():
            p.unlink()


def side_text(m: Measured, bundle: Path | None = None) -> str:
    size = f", bundle {bundle.stat().st_size / MB:.1f} MB" if bundle is not None else ""
    return (
        f"  {m.seconds:.2f} s{size}, peak RSS {m.peak_rss_mib:.0f} MiB, {m.cpu_seconds:.1f} CPU s in "
        f"{len(m.processes)} processes (other work on the machine meanwhile: {m.other_cpu_s:.1f} CPU s)"
    )


def _peer_round(bench: Bench, tool: str, r: int, work: Path, log: Path) -> Run:
    """skopeo or crane: export, import into a fresh registry, digests compared; its files removed after."""
    export = bench.skopeo_export if tool == "skopeo" else bench.crane_export
    import_ = bench.skopeo_import if tool == "skopeo" else bench.crane_import
    how = "copy each image into one OCI layout" if tool == "skopeo" else "crane pull --format=oci of every ref"
    _log(f"[round {r + 1}] {tool} export ({how}, tar | zstd -T0 -3)")
    bundle = work / f"{tool}.tar.zst"
    exp = export(work / f"{tool}-oci-export", bundle, log)
    _log(side_text(exp, bundle))
    _remove(work / f"{tool}-oci-export")
    target = bench.fresh_target(f"{tool}-{r}")
    _log(f"[round {r + 1}] {tool} import (zstd -dc | tar -x, then push each image) into {target.url}")
    imp = import_(bundle, work / f"{tool}-oci-import", target, log)
    _log(side_text(imp))
    run = Run(tool, r, Side.of(exp), Side.of(imp), bundle.stat().st_size)
    run.record(bench.compare(target))
    _log(f"  {tool} target: {run.digests_identical}/{run.digests_compared} digests identical to the source")
    _remove(work / f"{tool}-oci-import", work / f"{tool}-oci-import-views", bundle, target.root_dir)
    return run


def _arcgap_round(bench: Bench, name: str, r: int, work: Path, image_list: Path, log: Path,
                  extra: Sequence[str]) -> Run:
    """arcgap export (``extra`` options) and import into a fresh registry, digests compared; files removed."""
    how = f" ({' '.join(extra)})" if extra else ""
    _log(f"[round {r + 1}] arcgap export{how}")
    bundle = work / "arcgap.tar.zst"
    a_exp = bench.arcgap_export(image_list, bundle, log, *extra)
    _log(side_text(a_exp, bundle))
    target = bench.fresh_target(f"{name}-{r}")
    _log(f"[round {r + 1}] arcgap import{how} into {target.url}")
    a_imp = bench.arcgap_import(bundle, target, log)
    _log(side_text(a_imp))
    run = Run(name, r, Side.of(a_exp), Side.of(a_imp), bundle.stat().st_size)
    run.record(bench.compare(target))
    _log(f"  arcgap target: {run.digests_identical}/{run.digests_compared} digests identical")
    # The bundle's sidecar and receipts too: the next export into this directory must find it empty.
    _remove(target.root_dir, work / "arcgap-cache", *work.glob(f"{bundle.name}*"), *work.glob("*receipt*"))
    return run


def referrer_overhead(rounds: Sequence[dict[str, Run]]) -> dict[str, float | None]:
    """Medians of the per-round ratios arcgap with discovery / arcgap with ``--no-referrers``, minus one."""
    out: dict[str, float | None] = {}
    for side in ("export", "import"):
        values = round_ratios(rounds, "arcgap", NO_REFERRERS_RUN, side)
        out[f"{side}_overhead"] = round(statistics.median(values) - 1.0, 4) if values else None
    return out


def one_round(bench: Bench, r: int, image_list: Path, tools: Sequence[str], referrers: str = "on") -> dict[str, Run]:
    work = bench.work / f"round-{r}"
    work.mkdir()
    log = bench.logs / f"round-{r}.log"
    runs: dict[str, Run] = {}
    _log(f"[round {r + 1}] {_load()}")
    with ExitStack() as targets:
        bench.stack, outer = targets, bench.stack  # targets of this round stop at its end
        try:
            if "floor" in tools:
                _log(f"[round {r + 1}] floor (every unique blob by plain HTTP, 4 at a time)")
                fl = bench.floor(log)
                _log(side_text(fl))
                runs["floor"] = Run("floor", r, Side.of(fl), None, 0)
            for tool in ("skopeo", "crane"):
                if tool in tools:
                    runs[tool] = _peer_round(bench, tool, r, work, log)
            # With --referrers both, arcgap runs twice a round, discovery on and off, the order alternating
            # by round so neither side always gets the warmer (or the quieter) slot.
            variants = [v for v in REFERRER_VARIANTS if referrers in ("both", v)]
            if referrers == "both" and r % 2:
                variants.reverse()
            for variant in variants:
                name = NO_REFERRERS_RUN if referrers == "both" and variant == "off" else "arcgap"
                runs[name] = _arcgap_round(bench, name, r, work, image_list, log,
                                           () if variant == "on" else ("--no-referrers",))
        finally:
            bench.stack = outer
    _remove(work)
    return runs


def arcgap_fingerprint() -> dict[str, str]:
    """Which arcgap was measured: the git commit, uncommitted changes under arcgap/, a hash of its sources."""
    root = PROJECT_ROOT
    digest = hashlib.sha256()
    for path in sorted((root / "arcgap").rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")

    def git(*args: str) -> str:
        try:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30)
        except OSError:
            return ""
        return done.stdout.strip() if done.returncode == 0 else ""

    dirty = git("status", "--porcelain", "--", "arcgap")
    return {
        "arcgap_commit": git("rev-parse", "--short=12", "HEAD") or "unknown",
        "arcgap_uncommitted_files": str(len(dirty.splitlines())) if dirty else "0",
        "arcgap_sources_sha256": digest.hexdigest()[:16],
    }


def _versions() -> dict[str, str]:
    def first_line(argv: list[str]) -> str:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        except OSError:
            return "unavailable"
        return (done.stdout or done.stderr).strip().splitlines()[0] if (done.stdout or done.stderr) else ""

    return {
        "arcgap": first_line([sys.executable, "-m", "arcgap", "--version"]),
        **arcgap_fingerprint(),
        "skopeo": first_line(["skopeo", "--version"]),
        "zstd": first_line(["zstd", "--version"]),
        "registry": first_line(["docker-registry", "--version"]),
        "python": platform.python_version(),
    }


def _versions(crane: str) -> dict[str, str]:
    def first_line(argv: list[str]) -> str:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        except OSError:
            return "unavailable"
        return (done.stdout or done.stderr).strip().splitlines()[0] if (done.stdout or done.stderr) else ""

    return {
        "arcgap": first_line([sys.executable, "-m", "arcgap", "--version"]),
        **arcgap_fingerprint(),
        "skopeo": first_line(["skopeo", "--version"]),
        "crane": first_line([crane, "version"]) if crane else "not found",
        "zstd": first_line(["zstd", "--version"]),
        "registry": first_line(["docker-registry", "--version"]),
        "python": platform.python_version(),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m devtools.bench",
        description="arcgap export/import against crane and skopeo (and the floor) on a generated release.",
    )
    ap.add_argument("--size-mb", type=float, default=500.0, help="blobs of the 22-image release, in MB (default 500)")
    ap.add_argument("--big-layer-gib", type=float, default=0.0,
                    help="add one image with a single layer of this many GiB (streamed from a file)")  # fmt: skip
    ap.add_argument("--rounds", "--repeat", dest="rounds", type=int, default=3,
                    help="rounds; medians (of times and of per-round ratios) are reported (default 3)")  # fmt: skip
    ap.add_argument("--tools", default=",".join(TOOLS),
                    help=f"comma-separated subset of {','.join(TOOLS)} (arcgap always runs)")  # fmt: skip
    ap.add_argument("--scale", action="store_true",
                    help="the scale run instead: >= 5 GB release with multi-GB layers, exported split for FAT32 "
                    "and imported (arcgap only; see devtools.benchscale)")  # fmt: skip
    ap.add_argument("--scale-layers", default="1.6,1.6,1.6",
                    help="--scale: GiB of each big single-layer image (default 1.6,1.6,1.6)")  # fmt: skip
    ap.add_argument("--keep", action="store_true", help="keep the work directory (source storage, logs)")
    ap.add_argument("--json-out", type=Path, default=None,
                    help="where to write the JSON (default bench-results.json, --scale: bench-scale.json)")  # fmt: skip
    ap.add_argument("--jobs", type=int, default=None, help="arcgap --jobs (default: arcgap's own default)")
    ap.add_argument("--referrers", choices=("on", "off", "both"), default="on",
                    help="arcgap's referrer discovery: on (its default), off (--no-referrers), or both, each "
                    "round, in alternating order, with the overhead reported (default on)")  # fmt: skip
    ap.add_argument("--signed", action="store_true",
                    help="give each image an SBOM referrer behind its fallback tag (see devtools.benchreferrers)")
    ap.add_argument("--tmpdir", type=Path, default=None, help="parent of the work directory (default: $TMPDIR)")
    args = ap.parse_args(argv)
    if args.rounds < 1 or args.size_mb <= 0 or args.big_layer_gib < 0:
        ap.error("--rounds must be >= 1, --size-mb > 0, --big-layer-gib >= 0")
    args.tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = set(args.tools) - set(TOOLS)
    if unknown:
        ap.error(f"--tools: unknown {', '.join(sorted(unknown))}")
    try:
        args.scale_layers = [float(x) for x in args.scale_layers.split(",") if x.strip()]
    except ValueError:
        ap.error("--scale-layers: comma-separated GiB figures, e.g. 1.6,1.6,1.6")
    if args.json_out is None:
        args.json_out = Path("bench-scale.json" if args.scale else "bench-results.json")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: generate the release, run the tools, print and save the results."""
    args = parse_args(argv)
    missing = tools_missing(REQUIRED_TOOLS)
    if missing:
        print(f"bench: missing programs: {', '.join(missing)} (run 'make sysdeps' as root)", file=sys.stderr)
        return 2
    if "crane" in args.tools and not args.scale and crane_binary() is None:
        print("bench: crane not found: run 'make crane' (or set ARCGAP_CRANE), or leave it out with --tools",
              file=sys.stderr)  # fmt: skip
        return 2
    work = Path(tempfile.mkdtemp(prefix="arcgap-bench-", dir=args.tmpdir))
    _log(f"arcgap bench: work directory {work}" + ("" if args.keep else " (removed at the end; --keep keeps it)"))
    code = 1
    try:
        if args.scale:
            from devtools.benchscale import run_scale

            code = run_scale(work, args)
        else:
            code = run_bench(work, args)
    except KeyboardInterrupt:
        print("\nbench: interrupted", file=sys.stderr)
        code = 130
    except CommandFailed as exc:
        print(f"\nbench: FAILED: {exc}", file=sys.stderr)
        if exc.log and exc.log.exists():
            print("\n".join(exc.log.read_text(errors="replace").splitlines()[-15:]), file=sys.stderr)
    except (StartupError, SkopeoError, OSError, RuntimeError, subprocess.SubprocessError) as exc:
        print(f"\nbench: FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
    finally:
        if args.keep:
            _log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return code


def run_bench(work: Path, args: argparse.Namespace) -> int:
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    crane = str(crane_binary() or "")
    versions = _versions(crane)
    load_start = [round(x, 2) for x in os.getloadavg()]
    _log(
        f"measuring {versions['arcgap']} (commit {versions['arcgap_commit']}, "
        f"{versions['arcgap_uncommitted_files']} uncommitted files under arcgap/, "
        f"sources {versions['arcgap_sources_sha256']}) against {versions['crane']} ({crane}) and "
        f"{versions['skopeo']}; {_load()}"
    )
    rounds: list[dict[str, Run]] = []
    with ExitStack() as stack:
        bench = Bench(work, stack, jobs=args.jobs)
        big = [(BIG_IMAGE, args.big_layer_gib)] if args.big_layer_gib > 0 else []
        release = generate(bench, args.size_mb, big, sign=args.signed)
        wrong = bench.source_matches_generated()
        if wrong:
            print(f"bench: the source serves unexpected digests for {', '.join(wrong)}", file=sys.stderr)
            return 1
        image_list = write_image_list(bench)
        for r in range(args.rounds):
            rounds.append(one_round(bench, r, image_list, args.tools, args.referrers))
    summary = summarize(rounds)
    changed = arcgap_fingerprint()["arcgap_sources_sha256"] != versions["arcgap_sources_sha256"]
    arcgap_runs = [run for r in rounds for name, run in r.items() if name in ("arcgap", NO_REFERRERS_RUN)]
    overhead = referrer_overhead(rounds) if args.referrers == "both" else None
    broken = [r for r in arcgap_runs if r.mismatches or not r.digests_compared]
    all_runs = [run for r in rounds for run in r.values()]
    result = {
        "started": started,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "loadavg_at_start": load_start,
            "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
        },
        "versions": versions,
        "arcgap_changed_during_run": changed,
        "settings": {
            "size_mb": args.size_mb,
            "big_layer_gib": args.big_layer_gib,
            "rounds": args.rounds,
            "tools": args.tools,
            "arcgap_jobs": args.jobs,
            "arcgap_referrers": args.referrers,
            "order": "floor, skopeo export, skopeo import, crane export, crane import, arcgap export, arcgap import",
            "commands": "see devtools/benchsides.py",
        },
        "release": release,
        "runs": [_run_dict(r) for r in all_runs],
        **summary,
        **({"referrer_overhead": overhead} if overhead is not None else {}),
        "arcgap_digests_verified": not broken,
    }
    _log("")
    _log(format_report(summary, args.rounds))
    _log("")
    for r in all_runs:
        if r.tool != "floor":
            _log(
                f"digests (round {r.round + 1}): {r.tool} target {r.digests_identical}/{r.digests_compared} identical"
                " to the source"
                + (" (skopeo's OCI layout rewrites docker v2 manifests as OCI)" if r.tool == "skopeo" else
                   f" -- differ: {', '.join(r.mismatches)}" if r.mismatches else "")
            )
    if overhead is not None:
        for side in ("export", "import"):
            value = overhead[f"{side}_overhead"]
            if value is not None:
                met = "met" if value <= REFERRER_OVERHEAD_GOAL else "MISSED"
                _log(f"referrer discovery overhead, {side}: {value:+.1%} (median of per-round ratios with/without "
                     f"--no-referrers; goal <= {REFERRER_OVERHEAD_GOAL:.0%}: {met})")
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(result, indent=2) + "\n")
    _log(f"results written to {args.json_out}; {_load()}")
    sides = [(r.tool, n, s) for r in all_runs for n, s in (("export", r.export), ("import", r.import_)) if s]
    busiest = max(sides, key=lambda t: t[2].other_share)
    if busiest[2].other_share > BUSY_SHARE:
        _log(
            f"NOTE: other work used up to {busiest[2].other_share:.0%} of the {os.cpu_count()} CPUs during a timed "
            f"side ({busiest[0]} {busiest[1]}: {busiest[2].other_cpu_s:.1f} CPU s in {busiest[2].seconds:.1f} s); "
            "those times are noisy -- rerun on a quiet machine or with more --rounds"
        )
    if changed:
        _log("WARNING: arcgap's sources changed while the benchmark ran; the figures mix versions")
    if broken:
        print("bench: FAILED: the arcgap target does not hold the source's digests", file=sys.stderr)
        return 1
    return 0


def _run_dict(run: Run) -> dict[str, Any]:
    d = asdict(run)
    return {("import" if k == "import_" else k): v for k, v in d.items()}


if __name__ == "__main__":
    raise SystemExit(main())
