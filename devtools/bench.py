"""``python -m devtools.bench`` (``make bench``): arcgap against a skopeo script, same release, same run.

The release: the 22 Arc image names with shared base layers and one multi-arch index (``arc-controller``),
sized to ``--size-mb`` MB of blobs (default 500), pushed to a plain-HTTP source registry on loopback;
``--big-layer-gib N`` adds ``arc-big-layer``, one image whose single layer is N GiB (generated into a file
and streamed, never held in memory).

Each repetition runs, in this order (skopeo first, so a warm cache never favours arcgap), each import
into a fresh empty registry:

- skopeo export: ``skopeo copy --all docker://SRC/arcdata/NAME:TAG oci:DIR:NAME-TAG`` for every image in
  turn, then ``tar -C DIR -cf - . | zstd -T0 -3 -q -o B2``;
- skopeo import: ``zstd -dc B2 | tar -x -C DIR2``, then ``skopeo copy --all oci:DIR2:NAME-TAG
  docker://TARGET/mirror/arcdata/NAME:TAG`` for every image in turn;
- arcgap export: ``python -m arcgap export --images LIST -o B`` (``SOURCE_DOCKER_*`` variables), with
  ``XDG_CACHE_HOME`` pointing at a fresh empty directory: a first export, whatever blob cache arcgap keeps;
- arcgap import: ``python -m arcgap import B`` (``TARGET_DOCKER_*`` variables), run in the work directory.

Wall time covers a whole side. Peak RSS is the largest max-RSS over the side's processes, each run under
GNU time (``/usr/bin/time -f '%e %M %U %S'``): ``os.wait4`` on a child of this process would not do, as
Linux carries the pre-exec image's RSS (this large Python process's) into the child's ``ru_maxrss``.
Dirty pages are flushed (``sync``) before each timed side, outside the timing; page caches cannot be
dropped. The CPU time other processes used during each side is recorded (busy time from /proc/stat minus
the side's processes, the registries and the bench), and a busy machine is reported: such times are noisy.
With ``--repeat N`` the best (shortest) time of each side is reported and the largest RSS. After each
repetition the arcgap target's digests are compared with the source's (``skopeo inspect --raw``): a
broken run fails the benchmark (exit 1). Missed performance targets are reported, not failed.

Results are printed as a table and written as JSON to ``--json-out`` (default ``bench-results.json``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from devtools.images import Pusher, push_image
from devtools.layers import write_layer_file
from devtools.oracle import DigestRow, ManifestReader, compare_images
from devtools.procs import StartupError
from devtools.registries import Registry, start_registry
from devtools.runs import PROJECT_ROOT, CommandFailed, Measured, clean_env, run_measured, run_pipeline
from devtools.scenario import (
    MB,
    RELEASE_TAG,
    SOURCE_REPOSITORY,
    TARGET_REPOSITORY,
    MiB,
    blob_totals,
    image_list_yaml,
    layer_sizes_for,
    tools_missing,
)
from devtools.skopeo import SkopeoError
from devtools.synth import generate_release_infos

REQUIRED_TOOLS = ("docker-registry", "skopeo", "htpasswd", "tar", "zstd")
BIG_IMAGE = "arc-big-layer"
TARGET_TIME_RATIO = 0.5
TARGET_RSS_MIB = 128.0
BUSY_SHARE = 0.10  # other processes using more than this share of all CPUs during a side: noisy times


@dataclass
class Side:
    """One timed side (export or import) of one tool in one repetition."""

    seconds: float
    peak_rss_mib: float
    peak_process: str
    processes: int
    cpu_s: float  # user + system of the side's own processes (registries not included)
    other_cpu_s: float  # CPU the rest of the machine used meanwhile

    @classmethod
    def of(cls, m: Measured) -> Side:
        return cls(
            round(m.seconds, 3), round(m.peak_rss_mib, 1), m.peak_process, len(m.processes),
            round(m.cpu_seconds, 2), round(m.other_cpu_s, 2),
        )  # fmt: skip

    @property
    def other_share(self) -> float:
        """Other work's share of the machine's CPU capacity during this side."""
        return self.other_cpu_s / max(self.seconds * (os.cpu_count() or 1), 1e-6)


@dataclass
class Run:
    """One tool, one repetition: both sides, the bundle size and how many digests survived."""

    tool: str
    repetition: int
    export: Side
    import_: Side
    bundle_bytes: int
    digests_identical: int = 0
    digests_compared: int = 0
    mismatches: list[str] = field(default_factory=list)


def _settle() -> None:
    """Flush dirty pages, so one side's writeback does not slow the next."""
    os.sync()


TICK = os.sysconf("SC_CLK_TCK")


def _busy_ticks() -> int:
    """CPU time the whole machine spent busy (all CPUs), from the first line of /proc/stat."""
    with open("/proc/stat") as fh:
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fh.readline().split()[1:9])
    return user + nice + system + irq + softirq + steal


def _pid_ticks(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            after_name = fh.read().rsplit(")", 1)[1].split()
        return int(after_name[11]) + int(after_name[12])  # utime, stime (fields 14 and 15)
    except (OSError, IndexError, ValueError):
        return 0


class OtherCpu:
    """CPU seconds used during a side by anything but the side's processes, its registries and this process.

    Busy time of the whole machine minus the measured commands (GNU time), the registries (/proc/PID/stat)
    and the bench itself: other sessions, daemons and kernel threads. Large values mean noisy times.
    """

    def __init__(self, measured: Measured, registry_pids: Sequence[int]) -> None:
        self.measured = measured
        self.pids = list(registry_pids)

    def __enter__(self) -> OtherCpu:
        self._busy = _busy_ticks()
        self._regs = sum(_pid_ticks(p) for p in self.pids)
        self._self = sum(os.times()[:2])
        return self

    def __exit__(self, *exc: object) -> None:
        busy = (_busy_ticks() - self._busy) / TICK
        regs = (sum(_pid_ticks(p) for p in self.pids) - self._regs) / TICK
        mine = sum(os.times()[:2]) - self._self
        self.measured.other_cpu_s = max(busy - regs - mine - self.measured.cpu_seconds, 0.0)


def _log(text: str) -> None:
    print(text, flush=True)


class Bench:
    """Holds the work directory, the source registry and the environment every child process gets."""

    def __init__(self, work: Path, stack: ExitStack, *, jobs: int | None) -> None:
        self.work = work
        self.stack = stack
        self.jobs = jobs
        self.logs = work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.docker_config = work / "docker-config"
        self.source: Registry = stack.enter_context(start_registry(work / "source-registry"))
        self.names: list[str] = []
        self.oracle_dir = work / "oracle"
        self.source_reader = ManifestReader(self.source, self.oracle_dir)
        self.generated: dict[str, str] = {}

    # -- release --------------------------------------------------------------------------------------------

    def generate(self, size_mb: float, big_layer_gib: float) -> dict[str, Any]:
        base, app = layer_sizes_for(size_mb)
        _log(
            f"generating the release: 22 images, base layer {base / MiB:.0f} MiB, app layer {app / MiB:.1f} MiB "
            f"of content (about {size_mb:.0f} MB of blobs) into {self.source.url}"
        )
        t0 = time.monotonic()
        synth_dir = self.work / "synth"
        synth_dir.mkdir(exist_ok=True)
        infos = generate_release_infos(
            self.source, repository=SOURCE_REPOSITORY, tag=RELEASE_TAG, base_layer_bytes=base, app_layer_bytes=app,
            workdir=synth_dir, threads=2,
        )  # fmt: skip
        if big_layer_gib > 0:
            path = synth_dir / "big-layer.tar.gz"
            _log(f"generating {BIG_IMAGE}: one layer of {big_layer_gib:g} GiB, streamed to {path.name}")
            layer = write_layer_file(path, "bench:big-layer", int(big_layer_gib * (1 << 30)), compressible=0.0)
            with Pusher(self.source) as pusher:
                infos[BIG_IMAGE] = push_image(
                    pusher, f"{SOURCE_REPOSITORY}/{BIG_IMAGE}", RELEASE_TAG, layers=[layer], flavor="oci",
                    labels={"org.arcgap.synth.name": BIG_IMAGE},
                )  # fmt: skip
            path.unlink()
        self.names = list(infos)
        self.generated = {n: i.digest for n, i in infos.items()}
        blobs, total = blob_totals(infos)
        seconds = time.monotonic() - t0
        _log(f"  {len(infos)} images, {blobs} unique blobs, {total / MB:.1f} MB, in {seconds:.1f} s")
        return {
            "images": len(infos),
            "unique_blobs": blobs,
            "blob_bytes": total,
            "base_layer_content_bytes": base,
            "app_layer_content_bytes": app,
            "big_layer_gib": big_layer_gib,
            "generate_seconds": round(seconds, 1),
        }

    def fresh_target(self, label: str) -> Registry:
        return self.stack.enter_context(start_registry(self.work / f"target-{label}"))

    def env(self, cache_home: Path | None = None, **extra: str) -> dict[str, str]:
        return clean_env(self.docker_config, cache_home=cache_home or self.work / "cache-unused", **extra)

    def ref(self, name: str) -> str:
        return f"{name}-{RELEASE_TAG}"

    # -- skopeo ---------------------------------------------------------------------------------------------

    def skopeo_export(self, oci_dir: Path, bundle: Path, log: Path) -> Measured:
        env = self.env()
        _settle()
        with Measured() as m, OtherCpu(m, [self.source.pid]):
            for name in self.names:
                m.add(run_measured(
                    ["skopeo", "copy", "--all", "--src-tls-verify=false",
                     f"docker://{self.source.host}/{SOURCE_REPOSITORY}/{name}:{RELEASE_TAG}",
                     f"oci:{oci_dir}:{self.ref(name)}"],
                    env=env, log=log,
                ))  # fmt: skip
            m.add(run_pipeline(
                [["tar", "-C", str(oci_dir), "-cf", "-", "."], ["zstd", "-T0", "-3", "-q", "-o", str(bundle)]],
                env=env, log=log,
            ))  # fmt: skip
        return m

    def skopeo_import(self, bundle: Path, oci_dir: Path, target: Registry, log: Path) -> Measured:
        env = self.env()
        oci_dir.mkdir(parents=True)
        _settle()
        with Measured() as m, OtherCpu(m, [self.source.pid, target.pid]):
            m.add(run_pipeline([["zstd", "-dc", str(bundle)], ["tar", "-x", "-C", str(oci_dir)]], env=env, log=log))
            for name in self.names:
                m.add(run_measured(
                    ["skopeo", "copy", "--all", "--dest-tls-verify=false", f"oci:{oci_dir}:{self.ref(name)}",
                     f"docker://{target.host}/{TARGET_REPOSITORY}/{name}:{RELEASE_TAG}"],
                    env=env, log=log,
                ))  # fmt: skip
        return m

    # -- arcgap ---------------------------------------------------------------------------------------------

    def arcgap_export(self, image_list: Path, bundle: Path, log: Path) -> Measured:
        # A fresh, empty blob cache each time: the cost of a first export, never a warm cache's head start.
        env = self.env(
            cache_home=bundle.parent / "arcgap-cache",
            SOURCE_DOCKER_REGISTRY=self.source.host,
            SOURCE_DOCKER_REPOSITORY=SOURCE_REPOSITORY,
            SOURCE_DOCKER_TAG=RELEASE_TAG,
        )
        argv = [
            sys.executable,
            "-m",
            "arcgap",
            "export",
            "--images",
            str(image_list),
            "-o",
            str(bundle),
            "--source-plain-http",
            "--no-input",
        ]
        if self.jobs:
            argv += ["--jobs", str(self.jobs)]
        _settle()
        with Measured() as m, OtherCpu(m, [self.source.pid]):
            m.add(run_measured(argv, env=env, log=log, cwd=bundle.parent))
        return m

    def arcgap_import(self, bundle: Path, target: Registry, log: Path) -> Measured:
        env = self.env(TARGET_DOCKER_REGISTRY=target.host, TARGET_DOCKER_REPOSITORY=TARGET_REPOSITORY)
        argv = [sys.executable, "-m", "arcgap", "import", str(bundle), "--target-plain-http", "--no-input"]
        if self.jobs:
            argv += ["--jobs", str(self.jobs)]
        _settle()
        with Measured() as m, OtherCpu(m, [self.source.pid, target.pid]):
            m.add(run_measured(argv, env=env, log=log, cwd=bundle.parent))  # receipts land in the work dir
        return m

    # -- checks ---------------------------------------------------------------------------------------------

    def compare(self, target: Registry) -> list[DigestRow]:
        reader = ManifestReader(target, self.oracle_dir)
        return compare_images(self.source_reader, SOURCE_REPOSITORY, reader, TARGET_REPOSITORY, self.names, RELEASE_TAG)

    def source_matches_generated(self) -> list[str]:
        rows = compare_images(
            self.source_reader, SOURCE_REPOSITORY, self.source_reader, SOURCE_REPOSITORY, self.names, RELEASE_TAG
        )
        return [r.image for r in rows if not r.platform and r.source != self.generated.get(r.image)]


def _record(run: Run, rows: list[DigestRow]) -> None:
    run.digests_compared = len(rows)
    run.digests_identical = sum(1 for r in rows if r.match)
    run.mismatches = [r.label for r in rows if not r.match]


def _remove(*paths: Path) -> None:
    for p in paths:
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        elif p.exists():
            p.unlink()


def _side_text(m: Measured, bundle: Path | None = None) -> str:
    size = f", bundle {bundle.stat().st_size / MB:.1f} MB" if bundle is not None else ""
    return (
        f"  {m.seconds:.1f} s{size}, peak RSS {m.peak_rss_mib:.0f} MiB, {m.cpu_seconds:.1f} CPU s in "
        f"{len(m.processes)} processes (other work on the machine meanwhile: {m.other_cpu_s:.1f} CPU s)"
    )


def one_repetition(bench: Bench, rep: int, image_list: Path) -> tuple[Run, Run]:
    work = bench.work / f"rep-{rep}"
    work.mkdir()
    log = bench.logs / f"rep-{rep}.log"
    with ExitStack() as targets:
        bench.stack, outer = targets, bench.stack  # targets of this repetition stop at its end
        try:
            # skopeo first: it pays for any cold cache, never arcgap.
            _log(f"[rep {rep + 1}] skopeo export (copy each image into one OCI layout, tar | zstd -T0 -3)")
            b2 = work / "skopeo.tar.zst"
            s_exp = bench.skopeo_export(work / "oci-export", b2, log)
            _log(_side_text(s_exp, b2))
            _remove(work / "oci-export")
            target = bench.fresh_target(f"skopeo-{rep}")
            _log(f"[rep {rep + 1}] skopeo import (zstd -dc | tar -x, then copy each image) into {target.url}")
            s_imp = bench.skopeo_import(b2, work / "oci-import", target, log)
            _log(_side_text(s_imp))
            skopeo = Run("skopeo", rep, Side.of(s_exp), Side.of(s_imp), b2.stat().st_size)
            _record(skopeo, bench.compare(target))
            _log(
                f"  skopeo target: {skopeo.digests_identical}/{skopeo.digests_compared} digests identical to the source"
            )
            _remove(work / "oci-import", b2, target.root_dir)

            _log(f"[rep {rep + 1}] arcgap export")
            bundle = work / "arcgap.tar.zst"
            a_exp = bench.arcgap_export(image_list, bundle, log)
            _log(_side_text(a_exp, bundle))
            target = bench.fresh_target(f"arcgap-{rep}")
            _log(f"[rep {rep + 1}] arcgap import into {target.url}")
            a_imp = bench.arcgap_import(bundle, target, log)
            _log(_side_text(a_imp))
            arcgap = Run("arcgap", rep, Side.of(a_exp), Side.of(a_imp), bundle.stat().st_size)
            _record(arcgap, bench.compare(target))
            _log(
                f"  arcgap target: {arcgap.digests_identical}/{arcgap.digests_compared} digests identical to the source"
            )
            _remove(bundle, target.root_dir, work / "arcgap-cache")
        finally:
            bench.stack = outer
    _remove(work)
    return skopeo, arcgap


def _best(runs: Sequence[Run]) -> dict[str, Any]:
    return {
        "export_s": min(r.export.seconds for r in runs),
        "import_s": min(r.import_.seconds for r in runs),
        "bundle_bytes": min(r.bundle_bytes for r in runs),
        "export_peak_rss_mib": max(r.export.peak_rss_mib for r in runs),
        "import_peak_rss_mib": max(r.import_.peak_rss_mib for r in runs),
        "export_peak_process": max(runs, key=lambda r: r.export.peak_rss_mib).export.peak_process,
        "import_peak_process": max(runs, key=lambda r: r.import_.peak_rss_mib).import_.peak_process,
    }


def summarize(skopeo_runs: Sequence[Run], arcgap_runs: Sequence[Run]) -> dict[str, Any]:
    s, a = _best(skopeo_runs), _best(arcgap_runs)
    ratios = {
        key: (a[key] / s[key] if s[key] else None)
        for key in ("export_s", "import_s", "bundle_bytes", "export_peak_rss_mib", "import_peak_rss_mib")
    }
    targets = [
        {
            "target": f"arcgap export wall time <= {TARGET_TIME_RATIO}x skopeo",
            "value": ratios["export_s"],
            "met": ratios["export_s"] is not None and ratios["export_s"] <= TARGET_TIME_RATIO,
        },
        {
            "target": f"arcgap import wall time <= {TARGET_TIME_RATIO}x skopeo",
            "value": ratios["import_s"],
            "met": ratios["import_s"] is not None and ratios["import_s"] <= TARGET_TIME_RATIO,
        },
        {
            "target": "arcgap bundle <= skopeo bundle",
            "value": ratios["bundle_bytes"],
            "met": a["bundle_bytes"] <= s["bundle_bytes"],
        },
        {
            "target": f"arcgap export peak RSS < {TARGET_RSS_MIB:g} MiB",
            "value": a["export_peak_rss_mib"],
            "met": a["export_peak_rss_mib"] < TARGET_RSS_MIB,
        },
        {
            "target": f"arcgap import peak RSS < {TARGET_RSS_MIB:g} MiB",
            "value": a["import_peak_rss_mib"],
            "met": a["import_peak_rss_mib"] < TARGET_RSS_MIB,
        },
    ]
    return {"skopeo": s, "arcgap": a, "ratios_arcgap_over_skopeo": ratios, "targets": targets}


def format_report(summary: dict[str, Any], repeat: int) -> str:
    s, a, r = summary["skopeo"], summary["arcgap"], summary["ratios_arcgap_over_skopeo"]
    best = "best of " + str(repeat) if repeat > 1 else "one run each"
    head = (
        f"{'tool':<15}{'export s':>10}{'import s':>10}{'bundle MB':>11}{'export peak RSS MiB':>21}"
        f"{'import peak RSS MiB':>21}"
    )
    lines = [f"results ({best}; times: best, RSS: largest)", head, "-" * len(head)]
    for name, row in (("skopeo", s), ("arcgap", a)):
        lines.append(
            f"{name:<15}{row['export_s']:>10.2f}{row['import_s']:>10.2f}{row['bundle_bytes'] / MB:>11.1f}"
            f"{row['export_peak_rss_mib']:>21.1f}{row['import_peak_rss_mib']:>21.1f}"
        )

    def ratio(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.2f}x"

    lines.append(
        f"{'arcgap/skopeo':<15}{ratio(r['export_s']):>10}{ratio(r['import_s']):>10}"
        f"{ratio(r['bundle_bytes']):>11}{ratio(r['export_peak_rss_mib']):>21}"
        f"{ratio(r['import_peak_rss_mib']):>21}"
    )
    lines.append("")
    lines.append(f"largest skopeo-side process: export: {s['export_peak_process']}; import: {s['import_peak_process']}")
    lines.append("")
    lines.append("targets:")
    for t in summary["targets"]:
        value = t["value"]
        shown = (
            "n/a"
            if value is None
            else (f"{value:.2f}x" if "x skopeo" in t["target"] or "bundle" in t["target"] else f"{value:.1f} MiB")
        )
        lines.append(f"  {t['target']:<45} {shown:>10}   {'met' if t['met'] else 'NOT met'}")
    return "\n".join(lines)


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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: generate the release, run both tools, print and save the results."""
    ap = argparse.ArgumentParser(
        prog="python -m devtools.bench",
        description="arcgap export/import against a skopeo script on a generated release.",
    )
    ap.add_argument("--size-mb", type=float, default=500.0, help="blobs of the 22-image release, in MB (default 500)")
    ap.add_argument(
        "--big-layer-gib",
        type=float,
        default=0.0,
        help="add one image with a single layer of this many GiB (streamed from a file)",
    )
    ap.add_argument("--repeat", type=int, default=1, help="repetitions; the best time of each side is reported")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (source storage, logs)")
    ap.add_argument("--json-out", type=Path, default=Path("bench-results.json"), help="where to write the JSON")
    ap.add_argument("--jobs", type=int, default=None, help="arcgap --jobs (default: arcgap's own default)")
    ap.add_argument("--tmpdir", type=Path, default=None, help="parent of the work directory (default: $TMPDIR)")
    args = ap.parse_args(argv)
    if args.repeat < 1 or args.size_mb <= 0 or args.big_layer_gib < 0:
        ap.error("--repeat must be >= 1, --size-mb > 0, --big-layer-gib >= 0")
    missing = tools_missing(REQUIRED_TOOLS)
    if missing:
        print(f"bench: missing programs: {', '.join(missing)} (run 'make sysdeps' as root)", file=sys.stderr)
        return 2

    work = Path(tempfile.mkdtemp(prefix="arcgap-bench-", dir=args.tmpdir))
    _log(f"arcgap bench: work directory {work}" + ("" if args.keep else " (removed at the end; --keep keeps it)"))
    code = 1
    try:
        code = run_bench(work, args)
    except KeyboardInterrupt:
        print("\nbench: interrupted", file=sys.stderr)
        code = 130
    except CommandFailed as exc:
        print(f"\nbench: FAILED: {exc}", file=sys.stderr)
        if exc.log and exc.log.exists():
            print("\n".join(exc.log.read_text(errors="replace").splitlines()[-15:]), file=sys.stderr)
    except (StartupError, SkopeoError, OSError, subprocess.SubprocessError) as exc:
        print(f"\nbench: FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
    finally:
        if args.keep:
            _log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return code


def run_bench(work: Path, args: argparse.Namespace) -> int:
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    versions = _versions()
    load_start = [round(x, 2) for x in os.getloadavg()]
    _log(
        f"measuring {versions['arcgap']} (commit {versions['arcgap_commit']}, "
        f"{versions['arcgap_uncommitted_files']} uncommitted files under arcgap/, "
        f"sources {versions['arcgap_sources_sha256']}) against {versions['skopeo']}"
    )
    with ExitStack() as stack:
        bench = Bench(work, stack, jobs=args.jobs)
        release = bench.generate(args.size_mb, args.big_layer_gib)
        wrong = bench.source_matches_generated()
        if wrong:
            print(f"bench: the source serves unexpected digests for {', '.join(wrong)}", file=sys.stderr)
            return 1
        image_list = work / "images.yaml"
        image_list.write_text(
            image_list_yaml(
                bench.names,
                release=RELEASE_TAG,
                repository=SOURCE_REPOSITORY,
                title="arcgap bench: the generated release",
            )
        )
        skopeo_runs: list[Run] = []
        arcgap_runs: list[Run] = []
        for rep in range(args.repeat):
            s, a = one_repetition(bench, rep, image_list)
            skopeo_runs.append(s)
            arcgap_runs.append(a)
    summary = summarize(skopeo_runs, arcgap_runs)
    changed = arcgap_fingerprint()["arcgap_sources_sha256"] != versions["arcgap_sources_sha256"]
    broken = [r for r in arcgap_runs if r.mismatches or not r.digests_compared]
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
            "repeat": args.repeat,
            "arcgap_jobs": args.jobs,
            "order": "skopeo export, skopeo import, arcgap export, arcgap import",
            "skopeo_export": "skopeo copy --all docker://SRC/REPO/NAME:TAG oci:DIR:NAME-TAG (each image), "
            "tar -C DIR -cf - . | zstd -T0 -3 -q -o B2",
            "skopeo_import": "zstd -dc B2 | tar -x -C DIR2; skopeo copy --all oci:DIR2:NAME-TAG "
            "docker://TARGET/REPO/NAME:TAG (each image)",
        },
        "release": release,
        "runs": [_run_dict(r) for r in [*skopeo_runs, *arcgap_runs]],
        **summary,
        "arcgap_digests_verified": not broken,
    }
    _log("")
    _log(format_report(summary, args.repeat))
    _log("")
    for r in arcgap_runs:
        _log(
            f"digests (rep {r.repetition + 1}): arcgap target {r.digests_identical}/{r.digests_compared} identical "
            "to the source" + (f" -- MISMATCH: {', '.join(r.mismatches)}" if r.mismatches else "")
        )
    for r in skopeo_runs:
        _log(
            f"digests (rep {r.repetition + 1}): skopeo target {r.digests_identical}/{r.digests_compared} identical "
            "to the source (for information: skopeo's OCI layout rewrites docker v2 manifests as OCI)"
        )
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(result, indent=2) + "\n")
    _log(f"results written to {args.json_out}")
    busiest = max(
        ((r.tool, name, side) for r in [*skopeo_runs, *arcgap_runs] for name, side in
         (("export", r.export), ("import", r.import_))),
        key=lambda t: t[2].other_share,
    )  # fmt: skip
    if busiest[2].other_share > BUSY_SHARE:
        _log(
            f"NOTE: other work used up to {busiest[2].other_share:.0%} of the {os.cpu_count()} CPUs during a timed "
            f"side ({busiest[0]} {busiest[1]}: {busiest[2].other_cpu_s:.1f} CPU s in {busiest[2].seconds:.1f} s); "
            "those times are noisy -- rerun on a quiet machine or with --repeat"
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
