"""Run the tools the demo and the benchmark drive: a clean environment, shown commands, measured processes.

- :func:`clean_env` -- this process's environment without ``SOURCE_DOCKER_*``/``TARGET_DOCKER_*``, proxy
  variables or stored registry logins, so child processes talk only to the registries we name.
- :func:`show_command` -- a command line as an operator would type it (secrets replaced by their variable).
- :func:`run_streamed` -- run a command with its output going straight to the terminal.
- :func:`run_measured` / :func:`run_pipeline` -- run a command (or ``a | b``) with wall time and the peak
  RSS and CPU time of every process, each measured by GNU time (``/usr/bin/time -f '%e %M %U %S'``).
- :class:`Measured` -- wall time and peak RSS of a sequence of such runs (a "side": export or import).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "ftp_proxy", "no_proxy")
DROPPED_PREFIXES = ("SOURCE_DOCKER_", "TARGET_DOCKER_", "REGISTRY_")


class CommandFailed(RuntimeError):
    """A child process exited non-zero; ``log`` names the file holding its output (when captured)."""

    def __init__(self, argv: Sequence[str], returncode: int, log: Path | None = None) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.log = log
        where = f"; output in {log}" if log else ""
        super().__init__(f"{shlex.join(self.argv[:6])}{' …' if len(argv) > 6 else ''} exited {returncode}{where}")


def clean_env(docker_config_dir: Path | None = None, *, cache_home: Path | None = None, **extra: str) -> dict[str, str]:
    """The current environment minus registry settings and proxies, plus ``extra``.

    Proxies are dropped (and ``NO_PROXY=*`` set) so every request goes straight to the loopback or
    namespace registries; ``docker_config_dir`` (an empty directory) hides stored docker/podman logins;
    the project root leads ``PYTHONPATH`` so ``python -m arcgap`` runs this checkout from any directory;
    ``cache_home`` becomes ``XDG_CACHE_HOME`` (arcgap's blob cache lives there, not in the user's home).
    """
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(DROPPED_PREFIXES) and k.lower() not in PROXY_VARIABLES
    }
    env["NO_PROXY"] = env["no_proxy"] = "*"
    # `python -m arcgap` finds this checkout even when it runs from another directory and is not installed.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
    if docker_config_dir is not None:
        docker_config_dir.mkdir(parents=True, exist_ok=True)
        env["DOCKER_CONFIG"] = str(docker_config_dir)
        env["REGISTRY_AUTH_FILE"] = str(docker_config_dir / "auth.json")
    if cache_home is not None:
        env["XDG_CACHE_HOME"] = str(cache_home.resolve())
    env.update(extra)
    return env


def show_command(argv: Sequence[str], env: Mapping[str, str] | None = None, *, secrets: Sequence[str] = ()) -> str:
    """``VAR=value … cmd args`` for display; variables named in ``secrets`` are shown as ``***``."""
    shown = [f"{k}={'***' if k in secrets else shlex.quote(v)}" for k, v in (env or {}).items()]
    return " ".join([*shown, shlex.join(argv)])


def run_streamed(argv: Sequence[str], *, env: Mapping[str, str], cwd: Path | None = None) -> float:
    """Run ``argv`` with stdout/stderr on the terminal; returns its wall time or raises CommandFailed."""
    t0 = time.monotonic()
    done = subprocess.run(list(argv), env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL, check=False)
    if done.returncode != 0:
        raise CommandFailed(argv, done.returncode)
    return time.monotonic() - t0


@dataclass(frozen=True)
class ProcessStats:
    """One finished process: its argv, exit status, wall time and peak resident set size."""

    argv: tuple[str, ...]
    returncode: int
    seconds: float
    max_rss_kib: int
    cpu_seconds: float = 0.0  # user + system, as GNU time reports it


TIME_BIN = "/usr/bin/time"  # GNU time (Debian package ``time``)


def _timed(argv: Sequence[str], stat_file: Path) -> list[str]:
    """``argv`` under GNU time, which writes "<wall s> <max RSS KiB> <user s> <system s>" to ``stat_file``.

    A small process must spawn the measured one: Linux carries the hiwater RSS of the pre-exec image over
    into the child's ``ru_maxrss``, so a child forked from this (large) Python process would report at least
    this process's RSS. GNU time is a few MiB.
    """
    return [TIME_BIN, "-f", "%e %M %U %S", "-o", str(stat_file), *argv]


def _reap(popen: subprocess.Popen[bytes], argv: Sequence[str], started: float, stat_file: Path) -> ProcessStats:
    popen.wait()
    seconds = time.monotonic() - started
    rss_kib, cpu = 0, 0.0
    try:
        lines = stat_file.read_text().split("\n")
        fields = [line for line in lines if line.strip()][-1].split()
        rss_kib = int(fields[1])
        cpu = float(fields[2]) + float(fields[3])
    except (OSError, IndexError, ValueError):
        pass  # killed before GNU time could write: the exit status says what happened
    finally:
        stat_file.unlink(missing_ok=True)
    return ProcessStats(tuple(str(a) for a in argv), popen.returncode, seconds, rss_kib, cpu)


def _stat_file(log: Path) -> Path:
    fd, name = tempfile.mkstemp(prefix=".time-", dir=log.parent)
    os.close(fd)
    return Path(name)


def run_measured(argv: Sequence[str], *, env: Mapping[str, str], log: Path, cwd: Path | None = None) -> ProcessStats:
    """Run ``argv`` (output appended to ``log``); its wall time and peak RSS. Raises CommandFailed."""
    stat_file = _stat_file(log)
    with open(log, "ab") as out:
        out.write(f"\n$ {shlex.join(argv)}\n".encode())
        out.flush()
        started = time.monotonic()
        popen = subprocess.Popen(
            _timed(argv, stat_file), env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=out
        )
        stats = _reap(popen, argv, started, stat_file)
    if stats.returncode != 0:
        raise CommandFailed(argv, stats.returncode, log)
    return stats


def run_pipeline(
    commands: Sequence[Sequence[str]], *, env: Mapping[str, str], log: Path, cwd: Path | None = None
) -> list[ProcessStats]:
    """Run ``commands[0] | commands[1] | …`` (last stdout and every stderr to ``log``); stats of each."""
    with open(log, "ab") as out:
        out.write(f"\n$ {' | '.join(shlex.join(c) for c in commands)}\n".encode())
        out.flush()
        started = time.monotonic()
        procs: list[tuple[subprocess.Popen[bytes], Sequence[str], Path]] = []
        upstream = None
        for n, argv in enumerate(commands):
            last = n == len(commands) - 1
            stat_file = _stat_file(log)
            popen = subprocess.Popen(
                _timed(argv, stat_file), env=dict(env), cwd=cwd,
                stdin=upstream if upstream is not None else subprocess.DEVNULL,
                stdout=out if last else subprocess.PIPE, stderr=out,
            )  # fmt: skip
            if upstream is not None:
                upstream.close()  # the next process holds it now; SIGPIPE reaches the writer if it dies
            upstream = popen.stdout
            procs.append((popen, argv, stat_file))
        stats = [_reap(p, argv, started, f) for p, argv, f in procs]
    for s in stats:
        if s.returncode != 0:
            raise CommandFailed(s.argv, s.returncode, log)
    return stats


@dataclass
class Measured:
    """Wall time of a whole side (several commands in a row) and the peak RSS over all its processes."""

    seconds: float = 0.0
    processes: list[ProcessStats] = field(default_factory=list)
    other_cpu_s: float = 0.0  # CPU time the rest of the machine used meanwhile (see devtools.bench.OtherCpu)
    _t0: float = 0.0

    def __enter__(self) -> Measured:
        self._t0 = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.monotonic() - self._t0

    def add(self, stats: ProcessStats | Sequence[ProcessStats]) -> None:
        self.processes.extend([stats] if isinstance(stats, ProcessStats) else stats)

    @property
    def cpu_seconds(self) -> float:
        """User + system time of the side's own processes."""
        return sum(p.cpu_seconds for p in self.processes)

    @property
    def peak_rss_mib(self) -> float:
        return max((p.max_rss_kib for p in self.processes), default=0) / 1024.0

    @property
    def peak_process(self) -> str:
        """The command (program name) with the largest RSS."""
        if not self.processes:
            return ""
        top = max(self.processes, key=lambda p: p.max_rss_kib)
        return " ".join(top.argv[:4])
