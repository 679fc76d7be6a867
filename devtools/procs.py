"""Process plumbing: free loopback ports, polling with a deadline, and subprocesses that log to a file.

A :class:`ManagedProcess` is stopped by its own pid (terminate, then kill after a grace period); nothing
here ever signals processes it did not start.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class StartupError(RuntimeError):
    """A service did not come up before its deadline; the message carries its log tail."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago (bind to port 0, read it back, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file ("" when it does not exist)."""
    try:
        text = Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def wait_until(
    probe: Callable[[], T | None],
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
    alive: Callable[[], bool] | None = None,
) -> T | None:
    """Call ``probe`` until it returns something other than None/False, ``alive()`` turns False, or timeout.

    Returns the probe's value, or None on timeout / early death. Exceptions from ``probe`` count as "not yet".
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = probe()
        except Exception:  # probing: any failure means "not ready yet"
            value = None
        if value is not None and value is not False:
            return value
        if alive is not None and not alive():
            return None
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)
        interval = min(interval * 1.5, 0.2)


class ManagedProcess:
    """A subprocess whose stdout and stderr go to ``log_file``; stop() terminates it, then kills it."""

    def __init__(
        self,
        argv: Sequence[str],
        log_file: Path,
        *,
        env: Mapping[str, str] | None = None,
        drop_env_prefixes: Sequence[str] = (),
        cwd: Path | None = None,
    ) -> None:
        """``env`` adds to (and overrides) this process's environment; variables starting with one of
        ``drop_env_prefixes`` are not inherited."""
        self.argv = list(argv)
        self.log_file = Path(log_file)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(tuple(drop_env_prefixes))}
        if env:
            full_env.update(env)
        with open(self.log_file, "ab") as log:
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=full_env,
                cwd=cwd,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 30) -> str:
        return log_tail(self.log_file, lines)

    def stop(self, grace: float = 5.0) -> int | None:
        """Terminate (SIGTERM), wait up to ``grace`` seconds, then SIGKILL. Returns the exit code."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=grace)
        return self.popen.returncode

    def __enter__(self) -> ManagedProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
