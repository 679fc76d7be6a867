"""Network namespaces with only loopback up: a real air gap on one machine.

- :func:`netns_usable` tells tests whether they can use namespaces (root, ``ip``, and a trial namespace).
- :func:`network_namespace` creates a namespace, brings ``lo`` up, and deletes it on exit.
- :func:`netns_argv` prefixes a command with ``ip netns exec NS``.
- :func:`run_in_netns` runs a Python callable on a thread that has joined the namespace (``setns(2)``), so
  sockets it opens live inside the namespace. One worker thread per namespace is kept and reused.
"""

from __future__ import annotations

import ctypes
import functools
import os
import shutil
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = "/var/run/netns"

_executors: dict[str, ThreadPoolExecutor] = {}
_executors_lock = threading.Lock()


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True, timeout=30)


@functools.lru_cache(maxsize=1)
def netns_usable() -> tuple[bool, str]:
    """``(True, "")`` when namespaces can be created here, else ``(False, reason)`` for ``pytest.skip``."""
    if os.name != "posix" or not hasattr(os, "geteuid"):
        return False, "network namespaces need Linux"
    if os.geteuid() != 0:
        return False, "network namespaces need root"
    if shutil.which("ip") is None:
        return False, "iproute2 ('ip') is not installed"
    name = f"arcgap-probe-{uuid.uuid4().hex[:8]}"
    try:
        done = _ip("netns", "add", name, check=False)
        if done.returncode != 0:
            return False, f"'ip netns add' failed: {done.stderr.strip()}"
        _ip("netns", "delete", name, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return False, f"'ip netns' unusable: {exc}"
    return True, ""


def netns_argv(ns: str | None, argv: Sequence[str]) -> list[str]:
    """``argv`` run inside ``ns`` (``ip netns exec NS …``), or unchanged when ``ns`` is None."""
    return ["ip", "netns", "exec", ns, *argv] if ns else list(argv)


def _join(ns: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(os.path.join(NETNS_RUN_DIR, ns), os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({ns}): {os.strerror(err)}")
    finally:
        os.close(fd)


def _executor(ns: str) -> ThreadPoolExecutor:
    with _executors_lock:
        pool = _executors.get(ns)
        if pool is None:
            pool = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix=f"netns-{ns}", initializer=_join, initargs=(ns,)
            )
            _executors[ns] = pool
        return pool


def run_in_netns(ns: str | None, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
    """Run ``fn(*args, **kwargs)`` inside namespace ``ns`` (directly when ``ns`` is None); return its value.

    Calls for one namespace are serialised on one thread; do not call run_in_netns from inside ``fn``
    for the same namespace (it would deadlock) -- check :func:`in_netns_thread` first.
    """
    if ns is None or in_netns_thread(ns):
        return fn(*args, **kwargs)
    return _executor(ns).submit(fn, *args, **kwargs).result()


def in_netns_thread(ns: str) -> bool:
    """True when the calling thread is the worker thread that joined ``ns``."""
    return threading.current_thread().name.startswith(f"netns-{ns}_")


def _forget(ns: str) -> None:
    with _executors_lock:
        pool = _executors.pop(ns, None)
    if pool is not None:
        pool.shutdown(wait=True)


@contextmanager
def network_namespace(name: str | None = None) -> Iterator[str]:
    """Create namespace ``name`` (default: a unique ``arcgap-…``) with ``lo`` up; delete it on exit."""
    ns = name or f"arcgap-{uuid.uuid4().hex[:10]}"
    _ip("netns", "add", ns)
    try:
        _ip("-n", ns, "link", "set", "lo", "up")
        yield ns
    finally:
        _forget(ns)
        _ip("netns", "delete", ns, check=False)


def netns_pids(ns: str) -> list[int]:
    """Pids of processes running in ``ns`` (for diagnostics)."""
    done = _ip("netns", "pids", ns, check=False)
    return [int(p) for p in done.stdout.split() if p.isdigit()]
