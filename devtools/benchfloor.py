"""The floor of ``make bench``: every unique blob fetched by a plain HTTP client, 4 at a time, bytes discarded.

``python -m devtools.benchfloor URL LIST [--parallel 4]`` reads ``LIST`` (one ``REPOSITORY DIGEST SIZE`` per
line), fetches ``URL/v2/REPOSITORY/blobs/DIGEST`` for each with :mod:`http.client` (one keep-alive connection
per thread, ``readinto`` a reused 1 MiB buffer: no parsing, no hashing, no writing) and checks only that the
byte count matches. It is what no tool that also stores or verifies the bytes can beat: the network (here
loopback and the source registry's disk reads) alone. Exits 1 when a blob is missing or short.
"""

from __future__ import annotations

import argparse
import http.client
import queue
import sys
import threading
import time
from collections.abc import Sequence
from urllib.parse import urlsplit

BUFFER = 1 << 20


def fetch_all(url: str, blobs: Sequence[tuple[str, str, int]], parallel: int = 4) -> tuple[int, list[str]]:
    """Fetch every blob; ``(bytes read, errors)``."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or (443 if parts.scheme == "https" else 80)
    work: queue.Queue[tuple[str, str, int]] = queue.Queue()
    for item in blobs:
        work.put(item)
    totals: list[int] = []
    errors: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        conn = http.client.HTTPConnection(host, port, timeout=60)
        buf = bytearray(BUFFER)
        view = memoryview(buf)
        got_total = 0
        try:
            while True:
                try:
                    repo, digest, size = work.get_nowait()
                except queue.Empty:
                    break
                conn.request("GET", f"/v2/{repo}/blobs/{digest}")
                resp = conn.getresponse()
                got = 0
                if resp.status == 200:
                    while True:
                        n = resp.readinto(view)
                        if not n:
                            break
                        got += n
                else:
                    resp.read()
                got_total += got
                if resp.status != 200 or got != size:
                    with lock:
                        errors.append(f"{repo}@{digest}: HTTP {resp.status}, {got} of {size} bytes")
        finally:
            conn.close()
            with lock:
                totals.append(got_total)

    threads = [threading.Thread(target=worker) for _ in range(max(1, parallel))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(totals), errors


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m devtools.benchfloor", description=__doc__.splitlines()[0])
    ap.add_argument("url", help="registry base URL, e.g. http://127.0.0.1:5000")
    ap.add_argument("list", help="file of 'REPOSITORY DIGEST SIZE' lines")
    ap.add_argument("--parallel", type=int, default=4)
    args = ap.parse_args(argv)
    with open(args.list) as fh:
        blobs = [(r, d, int(s)) for r, d, s in (line.split() for line in fh if line.strip())]
    t0 = time.monotonic()
    total, errors = fetch_all(args.url, blobs, args.parallel)
    seconds = time.monotonic() - t0
    print(f"floor: {len(blobs)} blobs, {total} bytes in {seconds:.2f} s ({total / max(seconds, 1e-9) / 1e6:.0f} MB/s)")
    for e in errors:
        print(f"floor: {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
