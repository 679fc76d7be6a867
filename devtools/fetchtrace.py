"""``python -m devtools.fetchtrace OUT.jsonl -- ARCGAP-ARGS...``: arcgap with every blob request timed.

For the WAN bench (``python -m devtools.wanbench --trace DIR``): what the connections do over time. Each blob
byte request (a whole blob on one stream, one range part, one resumed stream) is written to ``OUT.jsonl`` as
``{"kind", "blob", "index", "thread", "start", "first", "end", "bytes"}`` (seconds since the process began;
``first`` when the first chunk arrived); every other request (``kind`` ``send``: method and path in ``blob``)
until its answer's headers. Only this bench tool patches arcgap; arcgap itself logs nothing.

``python -m devtools.fetchtrace --summary OUT.jsonl`` prints, per half second, the requests in flight and the
MB/s received (each request's bytes spread evenly between its first chunk and its end).
"""

from __future__ import annotations

import atexit
import json
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

T0 = time.monotonic()


def _timed(kind: str, records: list[dict[str, Any]], lock: threading.Lock,
           gen: Callable[..., Iterator[bytes]], blob: Callable[..., str], index: Callable[..., int],
           ) -> Callable[..., Iterator[bytes]]:  # fmt: skip
    def wrapper(*args: Any, **kwargs: Any) -> Iterator[bytes]:
        rec: dict[str, Any] = {"kind": kind, "blob": blob(*args, **kwargs)[:19], "index": index(*args, **kwargs),
                               "thread": threading.current_thread().name, "start": time.monotonic() - T0,
                               "first": None, "end": None, "bytes": 0}  # fmt: skip
        with lock:
            records.append(rec)
        try:
            for chunk in gen(*args, **kwargs):
                if rec["first"] is None:
                    rec["first"] = time.monotonic() - T0
                rec["bytes"] += len(chunk)
                yield chunk
        finally:
            rec["end"] = time.monotonic() - T0

    return wrapper


def install(out: Path) -> None:
    """Patch arcgap's blob readers to time each request; the records are written to ``out`` at exit."""
    from arcgap.registry import client, ranged

    records: list[dict[str, Any]] = []
    lock = threading.Lock()
    ranged._RangedRead._part = _timed(  # type: ignore[method-assign]
        "part", records, lock, ranged._RangedRead._part, lambda self, *a, **k: str(self.digest),
        lambda self, index, *a, **k: index)
    ranged._RangedRead._single = _timed(  # type: ignore[method-assign]
        "rest", records, lock, ranged._RangedRead._single, lambda self, *a, **k: str(self.digest),
        lambda self, offset, *a, **k: -1)
    client.RegistryClient._download = _timed(  # type: ignore[method-assign]
        "whole", records, lock, client.RegistryClient._download, lambda self, repo, digest, *a, **k: str(digest),
        lambda *a, **k: -1)

    send = client.RegistryClient.send

    def timed_send(self: client.RegistryClient, method: str, url: str, **kwargs: Any) -> Any:
        rec = {"kind": "send", "blob": f"{method} {url}"[:60], "index": -1, "thread": threading.current_thread().name,
               "start": time.monotonic() - T0, "first": None, "end": None, "bytes": 0}  # fmt: skip
        try:
            return send(self, method, url, **kwargs)
        finally:
            rec["end"] = time.monotonic() - T0
            with lock:
                records.append(rec)

    client.RegistryClient.send = timed_send  # type: ignore[method-assign]

    def dump() -> None:
        with lock, open(out, "w") as fh:
            for rec in records:
                fh.write(json.dumps(rec) + "\n")

    atexit.register(dump)


def summary(path: Path, step: float = 0.5) -> str:
    recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    recs = [r for r in recs if r["kind"] != "send"]  # the requests' headers: in the log, not in the rates
    if not recs:
        return f"{path}: no blob requests"
    end = max(r["end"] or r["start"] for r in recs)
    begin = min(r["start"] for r in recs)
    buckets = int((end - begin) / step) + 1
    inflight = [0.0] * buckets
    rate = [0.0] * buckets
    for r in recs:
        s, e = r["start"], r["end"] if r["end"] is not None else end
        f = r["first"] if r["first"] is not None else e
        for b in range(buckets):
            lo, hi = begin + b * step, begin + (b + 1) * step
            inflight[b] += max(0.0, min(hi, e) - max(lo, s)) / step
            if e > f:
                rate[b] += r["bytes"] * max(0.0, min(hi, e) - max(lo, f)) / (e - f) / step / 1e6
    kinds: dict[str, int] = {}
    for r in recs:
        kinds[r["kind"]] = kinds.get(r["kind"], 0) + 1
    total = sum(r["bytes"] for r in recs)
    lines = [f"{path.name}: {len(recs)} requests {kinds}, {total / 1e6:.1f} MB, first request at {begin:.2f} s, "
             f"last end at {end:.2f} s (process clock)"]  # fmt: skip
    lines += [f"  {begin + b * step:6.1f} s  in flight {inflight[b]:5.1f}  {rate[b]:6.1f} MB/s" for b in range(buckets)]
    return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
    if len(argv) >= 2 and argv[0] == "--summary":
        for p in argv[1:]:
            print(summary(Path(p)))
        return 0
    if len(argv) < 2 or argv[1] != "--":
        print("usage: python -m devtools.fetchtrace OUT.jsonl -- ARCGAP-ARGS... | --summary OUT.jsonl...",
              file=sys.stderr)  # fmt: skip
        return 2
    install(Path(argv[0]))
    from arcgap.cli import main as arcgap_main

    sys.argv = ["arcgap", *argv[2:]]
    arcgap_main()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
