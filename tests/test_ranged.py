"""arcgap.registry.ranged: large blobs in parallel ranges, against an in-process registry that misbehaves on cue."""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from arcgap.errors import Fault, IntegrityError
from arcgap.oci.digest import Digest
from arcgap.registry.client import RegistryClient
from arcgap.registry.credentials import Credentials
from arcgap.registry.ranged import RangeBudget, RangedOptions, stream_blob
from arcgap.registry.transport import RetryPolicy, TLSOptions
from arcgap.util.secret import Secret
from devtools.images import Pusher
from devtools.registries import Registry

PART = 256 * 1024
BLOB = hashlib.shake_256(b"ranged blob").digest(9 * PART + 4321)  # ten parts, a short last one
DIGEST = Digest.of(BLOB)
OPTIONS = RangedOptions(threshold_bytes=2 * PART, part_bytes=PART, window=3, ahead=4, slots=4, fast_bytes_per_s=1e12,
                        near_rtt_s=0.0)


class _Blobs:
    """What the fake registry does: ``mode`` picks the misbehaviour; every request is logged."""

    def __init__(self, mode: str, data: bytes = BLOB) -> None:
        self.mode = mode
        self.data = data
        self.ranges: list[str] = []  # Range header of each blob GET ("" when none)
        self.hosts: list[int] = []  # port of the server each blob GET reached
        self.active = 0
        self.most_active = 0
        self.broken = False
        self.lock = threading.Lock()


def _handler(blobs: _Blobs, cdn_port: list[int]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            if self.path == "/v2/":
                self._send(200, {"Content-Length": "2"}, b"{}")
                return
            port = self.server.server_address[1]
            if blobs.mode == "redirect" and port != cdn_port[0]:
                self._send(307, {"Location": f"http://127.0.0.1:{cdn_port[0]}/cdn/blob", "Content-Length": "0"}, b"")
                return
            rng = self.headers.get("Range", "")
            with blobs.lock:
                blobs.ranges.append(rng)
                blobs.hosts.append(port)
                blobs.active += 1
                blobs.most_active = max(blobs.most_active, blobs.active)
            try:
                time.sleep(0.03)  # a far server: parts overlap in time only when they are asked for in parallel
                self._blob(rng)
            finally:
                with blobs.lock:
                    blobs.active -= 1

        def _blob(self, rng: str) -> None:
            data, size = blobs.data, len(blobs.data)
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng)
            if m is None or blobs.mode == "ignore":
                self._send(200, {"Content-Length": str(size)}, data)
                return
            start = int(m.group(1))
            end = int(m.group(2)) if m.group(2) else size - 1
            body = data[start:end + 1]
            if blobs.mode == "wrong-range" and start >= 3 * PART:
                start += 1  # names other bytes than the ones asked for
            headers = {"Content-Length": str(len(body)), "Content-Range": f"bytes {start}-{end}/{size}"}
            if blobs.mode == "stall" and start == 4 * PART and not blobs.broken:
                blobs.broken = True  # this request's answer is held back (a lost SYN, a retransmission timeout)
                time.sleep(2.0)
            if blobs.mode == "break" and start == 4 * PART and not blobs.broken:
                blobs.broken = True  # half the part, then the connection goes
                self.send_response(206)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body[:PART // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self._send(206, headers, body)

        def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

    return Handler


@pytest.fixture
def serve() -> Iterator[Callable[[_Blobs], RegistryClient]]:
    servers: list[ThreadingHTTPServer] = []

    def start(blobs: _Blobs) -> RegistryClient:
        cdn_port = [0]
        for _ in range(2):  # the registry, and a CDN it may redirect to
            srv = ThreadingHTTPServer(("127.0.0.1", 0), _handler(blobs, cdn_port))
            srv.daemon_threads = True
            threading.Thread(target=srv.serve_forever, daemon=True).start()
            servers.append(srv)
        cdn_port[0] = servers[-1].server_address[1]
        host = f"127.0.0.1:{servers[-2].server_address[1]}"
        return RegistryClient(host, tls=TLSOptions(plain_http=True), retry=RetryPolicy(base_delay_s=0.01),
                              max_connections=16)

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def _read(client: RegistryClient, budget: RangeBudget, data: bytes = BLOB) -> bytes:
    return b"".join(stream_blob(client, "r/x", Digest.of(data), len(data), budget=budget))


def _starts(blobs: _Blobs) -> list[int]:
    return sorted(int(r[6:].split("-")[0]) for r in blobs.ranges if r)


def test_ranged_blob_arrives_whole_over_several_connections(serve: Callable[[_Blobs], RegistryClient]) -> None:
    blobs = _Blobs("ok")
    budget = RangeBudget(OPTIONS)
    assert _read(serve(blobs), budget) == BLOB
    assert _starts(blobs) == [i * PART for i in range(10)]  # each part asked for once, by its own range
    assert blobs.most_active > 1  # in parallel
    assert budget.take() and not budget.single(serve(blobs).registry)  # every slot came back
    assert sum(budget.take() for _ in range(10)) == OPTIONS.slots - 1


def test_fast_first_chunk_goes_on_as_one_stream_for_that_blob_only(serve: Callable[[_Blobs], RegistryClient]) -> None:
    """Where the path's RTT is not used, a fast first chunk makes that blob one stream; the next blob probes
    again (on a long path a warm connection may deliver one chunk in a burst)."""
    blobs = _Blobs("ok")
    client = serve(blobs)
    budget = RangeBudget(replace(OPTIONS, fast_bytes_per_s=1.0, near_rtt_s=None))
    assert _read(client, budget) == BLOB
    assert blobs.ranges == [f"bytes=0-{PART - 1}", f"bytes={PART}-"]
    assert not budget.fast(client.registry)
    assert _read(client, budget) == BLOB
    assert blobs.ranges[2:] == [f"bytes=0-{PART - 1}", f"bytes={PART}-"]


def test_a_short_path_is_remembered_for_the_registry(serve: Callable[[_Blobs], RegistryClient]) -> None:
    """A probe whose connection's RTT (the kernel's) is short makes the blob one stream, however slowly its
    first chunk came (a busy CPU), and every later blob of the registry one plain stream with no probe."""
    blobs = _Blobs("ok")
    client = serve(blobs)
    budget = RangeBudget(replace(OPTIONS, near_rtt_s=1.0))  # fast_bytes_per_s stays out of reach
    assert _read(client, budget) == BLOB
    assert blobs.ranges == [f"bytes=0-{PART - 1}", f"bytes={PART}-"]
    assert budget.fast(client.registry) and not budget.single(client.registry)
    assert _read(client, budget) == BLOB
    assert blobs.ranges[2:] == [""]


def test_small_blob_is_one_plain_stream(serve: Callable[[_Blobs], RegistryClient]) -> None:
    blobs = _Blobs("ok", BLOB[:PART])
    assert _read(serve(blobs), RangeBudget(OPTIONS), BLOB[:PART]) == BLOB[:PART]
    assert blobs.ranges == [""]


def test_source_ignoring_range_gives_one_stream_and_is_remembered(serve: Callable[[_Blobs], RegistryClient]) -> None:
    blobs = _Blobs("ignore")
    client = serve(blobs)
    budget = RangeBudget(OPTIONS)
    assert _read(client, budget) == BLOB
    assert blobs.ranges == [f"bytes=0-{PART - 1}"]  # the probe's 200 carried the whole blob
    assert budget.single(client.registry)
    assert _read(client, budget) == BLOB
    assert blobs.ranges[1:] == [""]  # the next blob does not probe again


def test_inconsistent_content_range_falls_back_to_one_stream(serve: Callable[[_Blobs], RegistryClient]) -> None:
    blobs = _Blobs("wrong-range")
    client = serve(blobs)
    budget = RangeBudget(OPTIONS)
    assert _read(client, budget) == BLOB
    assert budget.single(client.registry)
    assert blobs.ranges.count("") == 1  # then one stream of the whole body, the bytes already passed on dropped


def test_range_broken_midway_is_asked_again_from_its_own_offset(serve: Callable[[_Blobs], RegistryClient]) -> None:
    blobs = _Blobs("break")
    budget = RangeBudget(OPTIONS)
    assert _read(serve(blobs), budget) == BLOB
    assert blobs.broken
    starts = _starts(blobs)
    again = [r for r in blobs.ranges if r and 4 * PART <= int(r[6:].split("-")[0]) < 5 * PART]
    assert len(again) == 2 and all(r.endswith(f"-{5 * PART - 1}") for r in again)  # only that part, to its end
    assert [s for s in starts if not 4 * PART <= s < 5 * PART] == [i * PART for i in range(10) if i != 4]


def test_cdn_redirect_is_followed_for_every_range(serve: Callable[[_Blobs], RegistryClient]) -> None:
    blobs = _Blobs("redirect")
    assert _read(serve(blobs), RangeBudget(OPTIONS)) == BLOB
    assert len(set(blobs.hosts)) == 1 and len(blobs.ranges) == 10  # every range served by the CDN


def test_damaged_blob_never_releases_its_last_chunk(serve: Callable[[_Blobs], RegistryClient]) -> None:
    bad = bytearray(BLOB)
    bad[5 * PART + 7] ^= 1
    blobs = _Blobs("ok", bytes(bad))
    seen = 0
    client = serve(blobs)
    with pytest.raises(IntegrityError, match="digest mismatch") as caught:
        for chunk in stream_blob(client, "r/x", DIGEST, len(BLOB), budget=RangeBudget(OPTIONS)):
            seen += len(chunk)
    assert seen < len(BLOB)
    assert len(blobs.ranges) > 1  # it went in ranges
    # blamed on the registry, like one stream's mismatch: a mirror or an export fetches it once more
    assert caught.value.detail is not None and caught.value.detail.fault == Fault.BAD_CONTENT
    assert caught.value.message.startswith(f"{client.registry} served r/x blob {DIGEST} with other content")


@pytest.mark.parametrize("which", ["plain", "tls"])
def test_ranges_from_a_real_registry_with_credentials(which: str, plain_registry: Registry,
                                                      tls_registry: Registry) -> None:
    reg = plain_registry if which == "plain" else tls_registry
    with Pusher(reg) as pusher:
        pusher.push_blob("ranged/blobs", BLOB)
    if reg.scheme == "http":
        client = RegistryClient(reg.host, tls=TLSOptions(plain_http=True), max_connections=16)
    else:
        creds = Credentials(reg.username or "", Secret(reg.password or ""), source="options")
        client = RegistryClient(reg.host, credentials=creds, tls=TLSOptions(ca_file=reg.ca_file), max_connections=16)
    budget = RangeBudget(OPTIONS)
    got = b"".join(stream_blob(client, "ranged/blobs", DIGEST, len(BLOB), budget=budget))
    assert got == BLOB and not budget.single(client.registry)  # distribution answered every range as asked


def test_part_with_no_byte_for_hedge_seconds_is_asked_again_by_the_writing_thread(
        serve: Callable[[_Blobs], RegistryClient]) -> None:  # fmt: skip
    blobs = _Blobs("stall")
    budget = RangeBudget(replace(OPTIONS, hedge_s=0.2))
    t0 = time.monotonic()
    assert _read(serve(blobs), budget) == BLOB
    assert time.monotonic() - t0 < 1.8  # did not wait for the held answer (2 s)
    assert [r for r in blobs.ranges if r.startswith(f"bytes={4 * PART}-")] == [f"bytes={4 * PART}-{5 * PART - 1}"] * 2
    deadline = time.monotonic() + 5
    while budget._free < OPTIONS.slots and time.monotonic() < deadline:  # the dropped request ends, its slot back
        time.sleep(0.05)
    assert budget._free == OPTIONS.slots


class _Reader:
    """What the dispatcher sees of a ranged download: its place, how far it is, the parts asked of helpers."""

    def __init__(self, order: int, parts: int = 10) -> None:
        self.order, self.parts, self.head, self.submitted, self.ranged = order, parts, 0, 1, False
        self.ahead: dict[int, object] = {}

    def wants(self, ahead: int) -> bool:
        return self.ranged and self.submitted < self.parts and self.submitted - self.head <= ahead

    def asked_all(self) -> bool:
        return self.ranged and self.submitted >= self.parts

    def whole_part(self, index: int) -> list[bytes]:
        return [b"x"]


def test_free_slots_go_to_the_earliest_blob_and_later_ones_leave_it_the_reserve() -> None:
    budget = RangeBudget(RangedOptions(slots=6, reserve=2, ahead=20, window=2))
    first, later = _Reader(0), _Reader(1)
    budget._join(later)  # type: ignore[arg-type]
    budget._join(first)  # type: ignore[arg-type]  # joins after, but is written first
    budget._ready(later)  # type: ignore[arg-type]
    assert sorted(later.ahead) == [1, 2, 3, 4]  # all but the reserve: the first blob is still probing
    budget._ready(first)  # type: ignore[arg-type]
    assert sorted(first.ahead) == [1, 2]
    budget.give()  # one of the later blob's parts passed on: the slot goes to the earliest wanting one
    assert sorted(first.ahead) == [1, 2, 3] and sorted(later.ahead) == [1, 2, 3, 4]
    first.parts = 4  # the first blob has asked for every part: the later one may have the slots
    budget.give()
    assert sorted(later.ahead) == [1, 2, 3, 4, 5]
    budget.close()


def test_memory_stays_at_the_slots_however_many_parts(serve: Callable[[_Blobs], RegistryClient]) -> None:
    import tracemalloc

    data = hashlib.shake_256(b"forty parts").digest(40 * PART)
    blobs = _Blobs("ok", data)
    client = serve(blobs)
    tracemalloc.start()
    try:
        seen = 0
        for chunk in stream_blob(client, "r/x", Digest.of(data), len(data), budget=RangeBudget(OPTIONS)):
            seen += len(chunk)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert seen == len(data)
    # slots x part (held ahead), the server's copies of the parts it is sending, one chunk: far below 40 parts
    assert peak < 16 * PART, f"peak {peak / PART:.1f} parts"
