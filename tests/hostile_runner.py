"""Run arcgap CLI cases in one child process under a memory cap and a per-case time limit (tests only).

Usage: ``python tests/hostile_runner.py CASES.json RESULTS.json``. Each case is ``{"argv": [...]}``; each result
holds the exit code, stdout, stderr, seconds and the peak RSS (MiB) of that case alone (``clear_refs`` resets the
high-water mark between cases). The address space is capped with ``RLIMIT_AS``: a case that tries to hold more
fails with an internal error (exit 1), which the tests refuse, instead of taking the machine down.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import resource
import signal
import sys
import time

ADDRESS_SPACE_BYTES = 1024 * 1024 * 1024
CASE_SECONDS = 20


class _Timeout(BaseException):
    pass


def _alarm(signum: int, frame: object) -> None:
    raise _Timeout


def _hwm_mib() -> int:
    with open("/proc/self/status") as fh:
        match = re.search(r"VmHWM:\s+(\d+) kB", fh.read())
    return int(match.group(1)) // 1024 if match else -1


def _reset_hwm() -> None:
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def main() -> None:
    with open(sys.argv[1]) as fh:
        cases = json.load(fh)
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_BYTES, ADDRESS_SPACE_BYTES))
    from arcgap.cli import run

    signal.signal(signal.SIGALRM, _alarm)
    results = []
    for case in cases:
        out, err = io.StringIO(), io.StringIO()
        _reset_hwm()
        t0 = time.monotonic()
        signal.alarm(CASE_SECONDS)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = run(case["argv"])
        except _Timeout:
            code = -1
        finally:
            signal.alarm(0)
        results.append({"code": code, "out": out.getvalue(), "err": err.getvalue(),
                        "seconds": time.monotonic() - t0, "rss_mib": _hwm_mib()})
    with open(sys.argv[2], "w") as fh:
        json.dump(results, fh)


if __name__ == "__main__":
    main()
