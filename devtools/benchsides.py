"""The timed sides of ``make bench``: each tool's export and import, the floor, and what they measure.

A *side* is one tool's export (registry -> one compressed file) or import (that file -> a fresh registry), run
the way the tool's users run it, every process under GNU time (:mod:`devtools.runs`):

- skopeo export: ``skopeo copy --all docker://SRC/arcdata/NAME:TAG oci:DIR:NAME-TAG`` for every image in turn,
  then ``tar -C DIR -cf - . | zstd -T0 -3 -q -o B``; import: ``zstd -dc B | tar -x -C DIR2``, then
  ``skopeo copy --all oci:DIR2:NAME-TAG docker://TARGET/mirror/arcdata/NAME:TAG`` for every image in turn;
- crane export: ``crane pull --format=oci --annotate-ref --insecure REF... DIR`` (every image in one call,
  one layout, every platform of an index), then ``tar -C DIR -cf - . | zstd -T0 -3 -q -o B``; import:
  ``zstd -dc B | tar -x -C DIR2``, then ``crane push --insecure VIEW TARGET/mirror/arcdata/NAME:TAG`` per
  image, where VIEW is a one-entry layout (``oci-layout``, an ``index.json`` naming that image's entry of the
  pulled layout, ``blobs`` a symlink to DIR2's): ``crane push`` takes a layout holding one image;
- arcgap export: ``python -m arcgap export --images LIST -o B --source-plain-http`` (``SOURCE_DOCKER_*``),
  with ``XDG_CACHE_HOME`` a fresh empty directory (a first export, whatever blob cache arcgap keeps);
  import: ``python -m arcgap import B --target-plain-http`` (``TARGET_DOCKER_*``);
- floor: :mod:`devtools.benchfloor`, every unique blob (configs and layers) fetched by a plain HTTP client,
  4 at a time, the bytes discarded.

Dirty pages are flushed (``sync``) before each side, outside the timing. :class:`OtherCpu` records the CPU
time the rest of the machine used meanwhile (other sessions): large values mean noisy times.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devtools.images import ImageInfo
from devtools.oracle import DigestRow, ManifestReader, compare_images
from devtools.registries import Registry, crane_binary, start_registry
from devtools.runs import Measured, clean_env, run_measured, run_pipeline
from devtools.scenario import RELEASE_TAG, SOURCE_REPOSITORY, TARGET_REPOSITORY

AUX_PROGRAMS = ("tar", "zstd")  # not the tool itself: "tool RSS" leaves them out
REF_NAME = "org.opencontainers.image.ref.name"


@dataclass
class Side:
    """One timed side (export or import) of one tool in one round."""

    seconds: float
    peak_rss_mib: float  # every process of the side, tar and zstd included
    tool_rss_mib: float  # the tool's own processes only (not tar/zstd)
    peak_process: str
    processes: int
    cpu_s: float  # user + system of the side's own processes (registries not included)
    other_cpu_s: float  # CPU the rest of the machine used meanwhile

    @classmethod
    def of(cls, m: Measured) -> Side:
        tool = [p.max_rss_kib for p in m.processes if Path(p.argv[0]).name not in AUX_PROGRAMS]
        return cls(
            round(m.seconds, 3), round(m.peak_rss_mib, 1), round(max(tool, default=0) / 1024.0, 1),
            m.peak_process, len(m.processes), round(m.cpu_seconds, 2), round(m.other_cpu_s, 2),
        )  # fmt: skip

    @property
    def other_share(self) -> float:
        """Other work's share of the machine's CPU capacity during this side."""
        return self.other_cpu_s / max(self.seconds * (os.cpu_count() or 1), 1e-6)


@dataclass
class Run:
    """One tool, one round: both sides (the floor has no import), the bundle size and surviving digests."""

    tool: str
    round: int
    export: Side
    import_: Side | None
    bundle_bytes: int
    digests_identical: int = 0
    digests_compared: int = 0
    mismatches: list[str] = field(default_factory=list)

    def record(self, rows: list[DigestRow]) -> None:
        self.digests_compared = len(rows)
        self.digests_identical = sum(1 for r in rows if r.match)
        self.mismatches = [r.label for r in rows if not r.match]


def settle() -> None:
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


def unique_blobs(infos: Iterable[ImageInfo]) -> list[tuple[str, str, int]]:
    """``(repository, digest, size)`` of every config and layer, each digest once (first repository seen)."""
    seen: dict[str, tuple[str, str, int]] = {}

    def walk(info: ImageInfo) -> None:
        doc = json.loads(info.manifest)
        for child in info.children:
            walk(child)
        for desc in [doc.get("config") or {}, *(doc.get("layers") or [])]:
            if desc.get("digest") and desc["digest"] not in seen:
                seen[desc["digest"]] = (info.repository, desc["digest"], int(desc["size"]))

    for info in infos:
        walk(info)
    return list(seen.values())


class Bench:
    """The work directory, the source registry, the release's names and the environment every child gets."""

    def __init__(self, work: Path, stack: ExitStack, *, jobs: int | None) -> None:
        self.work = work
        self.stack = stack
        self.jobs = jobs
        self.logs = work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.docker_config = work / "docker-config"
        self.source: Registry = self._start_source()
        self.names: list[str] = []
        self.oracle_dir = work / "oracle"
        self.source_reader = ManifestReader(self.source, self.oracle_dir)
        self.generated: dict[str, str] = {}
        self.blob_list = work / "blobs.txt"
        crane = crane_binary()
        self.crane = str(crane) if crane else ""

    def _start_source(self) -> Registry:
        """The source registry (loopback here; devtools.wanbench puts it behind an emulated path)."""
        return self.stack.enter_context(start_registry(self.work / "source-registry"))

    def set_release(self, infos: Mapping[str, ImageInfo]) -> None:
        self.infos = dict(infos)
        self.names = list(infos)
        self.generated = {n: i.digest for n, i in infos.items()}
        self.blob_list.write_text("".join(f"{r} {d} {s}\n" for r, d, s in unique_blobs(infos.values())))

    def fresh_target(self, label: str) -> Registry:
        return self.stack.enter_context(start_registry(self.work / f"target-{label}"))

    def env(self, cache_home: Path | None = None, **extra: str) -> dict[str, str]:
        return clean_env(self.docker_config, cache_home=cache_home or self.work / "cache-unused", **extra)

    def ref(self, name: str) -> str:
        return f"{name}-{RELEASE_TAG}"

    def source_ref(self, name: str) -> str:
        return f"{self.source.host}/{SOURCE_REPOSITORY}/{name}:{RELEASE_TAG}"

    @staticmethod
    def target_ref(target: Registry, name: str) -> str:
        return f"{target.host}/{TARGET_REPOSITORY}/{name}:{RELEASE_TAG}"

    # -- floor ----------------------------------------------------------------------------------------------

    def floor(self, log: Path) -> Measured:
        settle()
        argv = [sys.executable, "-m", "devtools.benchfloor", self.source.url, str(self.blob_list), "--parallel", "4"]
        with Measured() as m, OtherCpu(m, [self.source.pid]):
            m.add(run_measured(argv, env=self.env(), log=log))
        return m

    # -- skopeo ---------------------------------------------------------------------------------------------

    def skopeo_export(self, oci_dir: Path, bundle: Path, log: Path) -> Measured:
        env = self.env()
        settle()
        with Measured() as m, OtherCpu(m, [self.source.pid]):
            for name in self.names:
                m.add(run_measured(
                    ["skopeo", "copy", "--all", "--src-tls-verify=false", f"docker://{self.source_ref(name)}",
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
        settle()
        with Measured() as m, OtherCpu(m, [self.source.pid, target.pid]):
            m.add(run_pipeline([["zstd", "-dc", str(bundle)], ["tar", "-x", "-C", str(oci_dir)]], env=env, log=log))
            for name in self.names:
                m.add(run_measured(
                    ["skopeo", "copy", "--all", "--dest-tls-verify=false", f"oci:{oci_dir}:{self.ref(name)}",
                     f"docker://{self.target_ref(target, name)}"],
                    env=env, log=log,
                ))  # fmt: skip
        return m

    # -- crane ----------------------------------------------------------------------------------------------

    def crane_export(self, oci_dir: Path, bundle: Path, log: Path) -> Measured:
        env = self.env()
        settle()
        with Measured() as m, OtherCpu(m, [self.source.pid]):
            m.add(run_measured(
                [self.crane, "pull", "--format=oci", "--annotate-ref", "--insecure",
                 *(self.source_ref(n) for n in self.names), str(oci_dir)],
                env=env, log=log,
            ))  # fmt: skip
            m.add(run_pipeline(
                [["tar", "-C", str(oci_dir), "-cf", "-", "."], ["zstd", "-T0", "-3", "-q", "-o", str(bundle)]],
                env=env, log=log,
            ))  # fmt: skip
        return m

    def crane_views(self, oci_dir: Path, views: Path) -> dict[str, Path]:
        """One single-entry layout per image over the pulled layout's blobs (what ``crane push`` takes)."""
        index = json.loads((oci_dir / "index.json").read_text())
        by_ref = {d.get("annotations", {}).get(REF_NAME, ""): d for d in index.get("manifests", [])}
        out: dict[str, Path] = {}
        for name in self.names:
            desc = by_ref.get(self.source_ref(name))
            if desc is None:
                raise RuntimeError(f"crane's layout has no entry annotated {self.source_ref(name)}")
            view = views / name
            view.mkdir(parents=True)
            (view / "oci-layout").write_bytes((oci_dir / "oci-layout").read_bytes())
            (view / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [desc]}))
            (view / "blobs").symlink_to(oci_dir / "blobs")
            out[name] = view
        return out

    def crane_import(self, bundle: Path, oci_dir: Path, target: Registry, log: Path) -> Measured:
        env = self.env()
        oci_dir.mkdir(parents=True)
        settle()
        with Measured() as m, OtherCpu(m, [self.source.pid, target.pid]):
            m.add(run_pipeline([["zstd", "-dc", str(bundle)], ["tar", "-x", "-C", str(oci_dir)]], env=env, log=log))
            views = self.crane_views(oci_dir, oci_dir.parent / f"{oci_dir.name}-views")
            for name in self.names:
                m.add(run_measured(
                    [self.crane, "push", "--insecure", str(views[name]), self.target_ref(target, name)],
                    env=env, log=log,
                ))  # fmt: skip
        return m

    # -- arcgap ---------------------------------------------------------------------------------------------

    def arcgap_export(self, image_list: Path, bundle: Path, log: Path, *extra: str) -> Measured:
        # A fresh, empty blob cache each time: the cost of a first export, never a warm cache's head start.
        env = self.env(
            cache_home=bundle.parent / "arcgap-cache",
            SOURCE_DOCKER_REGISTRY=self.source.host,
            SOURCE_DOCKER_REPOSITORY=SOURCE_REPOSITORY,
            SOURCE_DOCKER_TAG=RELEASE_TAG,
        )
        argv = [sys.executable, "-m", "arcgap", "export", "--images", str(image_list), "-o", str(bundle),
                "--source-plain-http", "--no-input", *extra]  # fmt: skip
        if self.jobs:
            argv += ["--jobs", str(self.jobs)]
        settle()
        with Measured() as m, OtherCpu(m, [self.source.pid]):
            m.add(run_measured(argv, env=env, log=log, cwd=bundle.parent))
        return m

    def arcgap_import(self, bundle: Path, target: Registry, log: Path) -> Measured:
        env = self.env(TARGET_DOCKER_REGISTRY=target.host, TARGET_DOCKER_REPOSITORY=TARGET_REPOSITORY)
        argv = [sys.executable, "-m", "arcgap", "import", str(bundle), "--target-plain-http", "--no-input"]
        if self.jobs:
            argv += ["--jobs", str(self.jobs)]
        settle()
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


def side_dict(side: Side | None) -> dict[str, Any] | None:
    return None if side is None else {**side.__dict__}
