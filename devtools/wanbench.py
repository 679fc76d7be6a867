"""``python -m devtools.wanbench`` (``make bench WAN=1``): arcgap, crane and curl over an emulated internet path.

The path (:file:`devtools/wan.sh`; this kernel has no ``sch_netem``): the root namespace (the clients) -- a
router namespace -- a server namespace running the source registry (CNCF distribution, plain HTTP). The router
impairs every forwarded packet both ways: an NFQUEUE program holds it for half the RTT and drops a random
share, then ``tbf`` limits the rate (a 1-BDP buffer). Profiles: ``A`` 40 ms RTT / 0.05 % loss each way /
400 Mbit/s, ``B`` 100 ms / 0.2 % / 200 Mbit/s, ``C`` no impairment (the same namespaces, for comparison).

The data: :func:`devtools.bench.generate`'s release (the 22 Arc images, ``--size-mb`` MB of blobs) and
``arc-big-layer``, one image with a single ``--big-layer-gib`` GiB layer, pushed inside the server namespace
(unimpaired). For each profile, each workload (``set``, ``big``) and each round, in this order:

- ``curl-1``: every unique blob by ``curl``, 4 at a time (``big``: the one layer on one connection);
- ``curl-16r``: every blob as 8 MiB ranges, 16 ``curl`` at a time (how far parallel ranges get);
- ``conn-1``: one connection's rate: the workload's largest blob by one ``curl`` for ``--conn-seconds`` (a
  loss-limited connection moving 1 GiB would take minutes); rate = bytes received / time. Every other tool's
  row then also says how many times one connection's rate it reached;
- ``crane``: ``crane pull --format=oci --insecure REF... DIR`` (the pull only; packing is local work);
- ``arcgap``: ``arcgap export --images LIST -o B --source-plain-http`` (fresh blob cache each time);
  ``arcgap-jN`` (not run by default): the same with ``--jobs N``.

Reported per run: wall time, MB moved (the unique blobs' bytes), MB/s and the share of the link's rate, and for
arcgap its peak RSS (``/usr/bin/time``). A run that does not finish within ``--timeout`` seconds is stopped and
reported as ``> T s``. ``--trace DIR`` runs arcgap under :mod:`devtools.fetchtrace` (every blob request's start,
first byte and end in ``DIR/*.jsonl``, a per-half-second summary of requests in flight and MB/s beside it). Each
impaired path (A, B) is warmed up by three untimed requests, and dirty pages are flushed (``sync``) before each
run. The load average is printed with every run (the emulator needs CPU; figures on a shared machine are
indicative).

Namespaces, the emulator and the registry are torn down when the bench ends, fails or is interrupted
(SIGINT, SIGTERM, SIGHUP).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from devtools.bench import BIG_IMAGE, generate
from devtools.benchsides import Bench, settle, unique_blobs
from devtools.registries import Registry, crane_binary, start_registry
from devtools.runs import PROJECT_ROOT, clean_env
from devtools.scenario import MB, RELEASE_TAG, SOURCE_REPOSITORY, image_list_yaml

WAN_SH = PROJECT_ROOT / "devtools" / "wan.sh"
PREFIX = "awb"  # namespaces awb-srv / awb-rt, veths awb0 ... (not the session tool's wan-*); --name
PROFILES = {"A": (40, 0.05, 400), "B": (100, 0.2, 200), "C": (0, 0.0, 0)}  # RTT ms, loss % each way, Mbit/s
TOOLS = ("conn-1", "curl-1", "curl-16r", "crane", "arcgap")
RANGE = 8 << 20
PORT = 5000
TIME = Path("/usr/bin/time")


def _log(text: str) -> None:
    print(text, flush=True)


def _load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


class WanPath:
    """``wan.sh`` with this bench's names and addresses; :meth:`down` is safe to call any number of times."""

    def __init__(self, net: str, work: Path, prefix: str = PREFIX) -> None:
        self.net = net
        self.env = {**os.environ, "WAN_PREFIX": prefix, "WAN_NET": net, "WAN_DIR": str(work / "wan")}
        self.server_ns = f"{prefix}-srv"
        self.server_ip = f"{net}.130"

    def _sh(self, *args: str) -> None:
        done = subprocess.run(["bash", str(WAN_SH), *args], env=self.env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"wan.sh {' '.join(args)} failed: {(done.stderr or done.stdout).strip()[-500:]}")

    def up(self) -> None:
        self._sh("up")

    def shape(self, profile: str) -> None:
        self._sh("shape", profile)

    def down(self) -> None:
        subprocess.run(["bash", str(WAN_SH), "down"], env=self.env, capture_output=True)


class _Stop(Exception):
    pass


@contextmanager
def _signals_end_the_run() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP end the bench through every ``finally`` (namespaces torn down)."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        raise _Stop(signal.Signals(signum).name)

    # SIGINT too: a bench started in the background (``cmd &`` in a script) inherits SIGINT ignored.
    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def timed(argv: Sequence[str], *, log: Path, timeout: float, env: dict[str, str] | None = None,
          stdin: str | None = None) -> tuple[float, bool]:  # fmt: skip
    """Run ``argv`` in its own process group; ``(seconds, finished)``. A run past ``timeout`` is killed."""
    with open(log, "ab") as out:
        out.write(f"\n$ {' '.join(argv)}\n".encode())
        out.flush()
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                                stdout=out, stderr=out, start_new_session=True)  # fmt: skip
        try:
            proc.communicate(stdin.encode() if stdin is not None else None, timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return time.monotonic() - t0, False
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        seconds = time.monotonic() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited {proc.returncode} (log: {log})")
    return seconds, True


class WanBench(Bench):
    """:class:`Bench` with the source registry in the server namespace, on the path's address."""

    def __init__(self, work: Path, stack: ExitStack, path: WanPath, jobs: int | None) -> None:
        self.path = path
        super().__init__(work, stack, jobs=jobs)

    def _start_source(self) -> Registry:
        return self.stack.enter_context(start_registry(
            self.work / "source-registry", bind=self.path.server_ip, port=PORT, netns=self.path.server_ns,
        ))  # fmt: skip


def _blobs(bench: Bench, names: Sequence[str]) -> list[tuple[str, str, int]]:
    infos = [bench.infos[n] for n in names]
    return unique_blobs(infos)


def _curl_lines(base: str, blobs: Sequence[tuple[str, str, int]], ranged: bool) -> str:
    lines = []
    for repo, digest, size in blobs:
        url = f"{base}/v2/{repo}/blobs/{digest}"
        if not ranged or size <= RANGE:
            lines.append(url)
            continue
        for start in range(0, size, RANGE):
            lines.append(f"-r {start}-{min(start + RANGE, size) - 1} {url}")
    return "\n".join(lines) + "\n"


def one_connection(bench: WanBench, names: Sequence[str], log: Path, seconds: float) -> tuple[float, int]:
    """``(seconds, bytes)`` one ``curl`` connection moved of the largest blob within ``seconds``."""
    repo, digest, _size = max(_blobs(bench, names), key=lambda b: b[2])
    url = f"http://{bench.path.server_ip}:{PORT}/v2/{repo}/blobs/{digest}"
    argv = ["curl", "-sS", "--noproxy", "*", "-o", "/dev/null", "--max-time", f"{seconds:g}",
            "-w", "%{size_download} %{time_total}\n", url]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30)
    with open(log, "a") as out:
        out.write(f"\n$ {' '.join(argv)}\n{done.stdout}{done.stderr}")
    if done.returncode not in (0, 28):  # 28: the time limit, as meant
        raise RuntimeError(f"curl exited {done.returncode}: {done.stderr.strip()[-300:]}")
    size, total = done.stdout.split()
    return float(total), int(size)


def warm_up(bench: WanBench, tries: int = 3) -> list[float]:
    """Seconds to the first answer byte of ``tries`` requests (``GET /v2/``, one connection each) through a path
    just shaped: the first flow through a freshly started emulator came slow (0.13 s where 0.08 s is one connect
    and one request, and arcgap's first requests took 0.46-0.85 s when its run came first), so no tool's timed
    run is the first."""
    url = f"http://{bench.path.server_ip}:{PORT}/v2/"
    argv = ["curl", "-sS", "--noproxy", "*", "-o", "/dev/null", "-w", "%{time_starttransfer}", url]
    return [float(subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True).stdout)
            for _ in range(tries)]


def run_tool(bench: WanBench, tool: str, names: Sequence[str], work: Path, log: Path, timeout: float,
             jobs: int | None, trace: Path | None = None) -> tuple[float, bool]:  # fmt: skip
    src = f"{bench.path.server_ip}:{PORT}"
    blobs = _blobs(bench, names)
    if tool.startswith("curl"):
        ranged = tool == "curl-16r"
        par = "16" if ranged else "4"
        script = _curl_lines(f"http://{src}", blobs, ranged)
        argv = ["xargs", "-P", par, "-L", "1", "curl", "-sSf", "--noproxy", "*", "-o", "/dev/null"]
        return timed(argv, log=log, timeout=timeout, stdin=script)
    env = clean_env(bench.docker_config, cache_home=work / "cache")
    if tool == "crane":
        out = work / "crane-oci"
        try:
            refs = [f"{src}/{SOURCE_REPOSITORY}/{n}:{RELEASE_TAG}" for n in names]
            return timed([bench.crane, "pull", "--format=oci", "--insecure", *refs, str(out)], log=log,
                         timeout=timeout, env=env)  # fmt: skip
        finally:
            shutil.rmtree(out, ignore_errors=True)
    image_list = work / "images.yaml"
    image_list.write_text(image_list_yaml(names, release=RELEASE_TAG, repository=SOURCE_REPOSITORY, title="wanbench"))
    bundle = work / "arcgap.tar.zst"
    env.update(SOURCE_DOCKER_REGISTRY=src, SOURCE_DOCKER_REPOSITORY=SOURCE_REPOSITORY, SOURCE_DOCKER_TAG=RELEASE_TAG)
    main = ["-m", "devtools.fetchtrace", str(trace), "--"] if trace is not None else ["-m", "arcgap"]
    argv = [sys.executable, *main, "export", "--images", str(image_list), "-o", str(bundle),
            "--source-plain-http", "--no-input"]  # fmt: skip
    if tool.startswith("arcgap-j"):
        jobs = int(tool.removeprefix("arcgap-j"))
    if jobs:
        argv += ["--jobs", str(jobs)]
    (work / "rss").unlink(missing_ok=True)
    if TIME.exists():  # GNU time: the peak RSS in KiB
        argv = [str(TIME), "-o", str(work / "rss"), "-f", "%M", *argv]
    try:
        return timed(argv, log=log, timeout=timeout, env=env)
    finally:
        for p in work.glob("arcgap*"):
            p.unlink(missing_ok=True)
        shutil.rmtree(work / "cache", ignore_errors=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m devtools.wanbench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--profiles", default="A,B", help="comma-separated: A (40 ms/0.05 %%/400 Mbit), "
                    "B (100 ms/0.2 %%/200 Mbit), C (none); default A,B")  # fmt: skip
    ap.add_argument("--workloads", default="set,big", help="set (the release), big (the one-layer image)")
    ap.add_argument("--tools", default=",".join(TOOLS), help=f"default {','.join(TOOLS)}")
    ap.add_argument("--size-mb", type=float, default=500.0, help="blobs of the release, in MB (default 500)")
    ap.add_argument("--big-layer-gib", type=float, default=1.0, help="the big layer, GiB (default 1)")
    ap.add_argument("--rounds", type=int, default=1, help="rounds per profile (default 1)")
    ap.add_argument("--timeout", type=float, default=180.0, help="seconds before a run is stopped (default 180)")
    ap.add_argument("--conn-seconds", type=float, default=30.0,
                    help="conn-1: seconds one connection runs (default 30)")
    ap.add_argument("--trace", type=Path, default=None,
                    help="a directory: arcgap runs under devtools.fetchtrace, one request log per run there")
    ap.add_argument("--jobs", type=int, default=None, help="arcgap --jobs (default: arcgap's own)")
    ap.add_argument("--net", default="198.19.7", help="the /24 of 198.18.0.0/15 the veths use (default 198.19.7)")
    ap.add_argument("--name", default=PREFIX, help=f"prefix of the namespaces and veths (default {PREFIX})")
    ap.add_argument("--json-out", type=Path, default=Path("wanbench-results.json"))
    ap.add_argument("--tmpdir", type=Path, default=None, help="parent of the work directory")
    args = ap.parse_args(argv)
    octets = args.net.split(".")
    last = octets[-1]
    if len(octets) != 3 or octets[:2] not in (["198", "18"], ["198", "19"]) or not last.isdigit() or int(last) > 255:
        ap.error("--net must be 198.18.X or 198.19.X (the benchmark range 198.18.0.0/15)")
    if not (args.name.isalnum() and args.name.islower() and 1 <= len(args.name) <= 5):
        ap.error("--name: 1 to 5 lower-case letters or digits")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("wanbench: needs root (namespaces, iptables, tc)", file=sys.stderr)
        return 2
    tools = [t for t in args.tools.split(",") if t]
    if "crane" in tools and crane_binary() is None:
        print("wanbench: crane not found (make crane, or ARCGAP_CRANE); or leave it out with --tools", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="arcgap-wanbench-", dir=args.tmpdir))
    path = WanPath(args.net, work, args.name)
    results: list[dict[str, Any]] = []
    code = 1
    try:
        with _signals_end_the_run(), ExitStack() as stack:
            stack.callback(path.down)
            path.up()
            code = _run(stack, path, work, args, tools, results)
    except (KeyboardInterrupt, _Stop) as exc:
        print(f"\nwanbench: interrupted ({exc or 'SIGINT'}); namespaces removed", file=sys.stderr)
        code = 130
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        print(f"\nwanbench: FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if results:
        args.json_out.write_text(json.dumps({"runs": results}, indent=2) + "\n")
        _log(f"results written to {args.json_out}")
    return code


def _one_run(bench: WanBench, tool: str, names: Sequence[str], runs_dir: Path, log: Path, args: argparse.Namespace,
             label: str) -> tuple[str, dict[str, Any]]:  # fmt: skip
    """One tool's run: the row's text after its label, and its record (``mb_per_s`` None when stopped)."""
    mbit = PROFILES[label.split("-")[0]][2]
    settle()  # the release just pushed, or the last run's files, still being written back would slow this run
    if tool == "conn-1":
        seconds, nbytes = one_connection(bench, names, log, args.conn_seconds)
        done = True
    else:
        trace = None
        if args.trace is not None and tool.startswith("arcgap"):
            args.trace.mkdir(parents=True, exist_ok=True)
            trace = (args.trace / f"{label}-{tool}.jsonl").resolve()
        nbytes = sum(s for _, _, s in _blobs(bench, names))
        seconds, done = run_tool(bench, tool, names, runs_dir, log, args.timeout, args.jobs, trace)
        if trace is not None and trace.exists():
            from devtools.fetchtrace import summary

            trace.with_suffix(".txt").write_text(summary(trace) + "\n")
    rate = nbytes / seconds / MB
    share = rate * MB * 8 / (mbit * 1e6) * 100 if mbit else 0.0
    t = f"{seconds:7.1f} s" if done else f"> {seconds:5.0f} s"
    row = f"{tool:9} {t}  {nbytes / MB:7.1f} MB  " + (
        (f"{rate:6.1f} MB/s  " + (f"{share:5.1f} % of link" if mbit else "")) if done else "(stopped)")
    rec: dict[str, Any] = {"tool": tool, "seconds": round(seconds, 2), "finished": done, "bytes": nbytes,
                           "mb_per_s": round(rate, 2) if done else None}  # fmt: skip
    rss = runs_dir / "rss"
    if tool.startswith("arcgap") and rss.exists() and rss.read_text().strip().isdigit():
        rec["peak_rss_mib"] = round(int(rss.read_text().strip()) / 1024, 1)
        row += f"  peak RSS {rec['peak_rss_mib']:.0f} MiB"
    return row, rec


def _run(stack: ExitStack, path: WanPath, work: Path, args: argparse.Namespace, tools: Sequence[str],
         results: list[dict[str, Any]]) -> int:  # fmt: skip
    bench = WanBench(work, stack, path, args.jobs)
    big = [(BIG_IMAGE, args.big_layer_gib)] if "big" in args.workloads else []
    generate(bench, args.size_mb, big)
    workloads = {"set": [n for n in bench.names if n != BIG_IMAGE], "big": [BIG_IMAGE]}
    runs_dir = work / "runs"
    runs_dir.mkdir()
    log = work / "logs" / "wanbench.log"
    rows = []
    for profile in args.profiles.split(","):
        rtt, loss, mbit = PROFILES[profile]
        path.shape(profile)
        link = f"{rtt} ms RTT, {loss:g} % loss each way, {mbit} Mbit/s" if mbit else "no impairment"
        _log(f"profile {profile}: {link}")
        if mbit:
            _log("  path warm-up (not timed): " + ", ".join(f"{t:.3f} s" for t in warm_up(bench)))
        for wl in args.workloads.split(","):
            names = workloads[wl]
            for r in range(args.rounds):
                one_rate: float | None = None  # MB/s of one connection, once conn-1 ran this round
                for tool in tools:
                    row, rec = _one_run(bench, tool, names, runs_dir, log, args, f"{profile}-{wl}-r{r + 1}")
                    if tool == "conn-1":
                        one_rate = rec["mb_per_s"]
                    elif one_rate and rec["mb_per_s"]:
                        rec["x_one_connection"] = round(rec["mb_per_s"] / one_rate, 1)
                        row += f"  {rec['x_one_connection']:4.1f}x one connection"
                    row = f"  {profile} {wl:3} r{r + 1} {row}  [{_load()}]"
                    _log(row)
                    rows.append(row)
                    share = rec["mb_per_s"] * MB * 8 / (mbit * 1e6) * 100 if mbit and rec["mb_per_s"] else None
                    results.append({"profile": profile, "link": link, "workload": wl, "round": r + 1, **rec,
                                    "link_percent": round(share, 1) if share is not None else None,
                                    "loadavg": [round(x, 2) for x in os.getloadavg()]})  # fmt: skip
    path.shape("C")
    _log("\nsummary (MB = 10^6 bytes of unique blobs; link % = MB/s x 8 / link Mbit/s):\n" + "\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
