"""How arcgap reaches one registry: URL scheme, TLS trust, timeouts and the retry policy."""

from __future__ import annotations

import email.utils
import math
import random
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from arcgap.errors import LocalIOError
from arcgap.registry.defaults import (
    DEFAULT_MIN_BYTES_PER_S,
    DEFAULT_RETRY_BUDGET_S,
    DEFAULT_STALL_S,
    MAX_RETRY_AFTER_S,
)

DOCKER_CERTS_DIR = Path("/etc/docker/certs.d")
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class TLSOptions:
    """Per-registry transport choice. An explicit ``ca_file`` wins over environment CA variables."""

    plain_http: bool = False  # speak http:// (registries on a trusted network without TLS)
    insecure: bool = False  # https:// without certificate verification
    ca_file: Path | None = None
    certs_dir: Path = DOCKER_CERTS_DIR  # docker's <dir>/<host:port>/ca.crt convention

    @property
    def scheme(self) -> str:
        return "http" if self.plain_http else "https"


@dataclass(frozen=True)
class RetryPolicy:
    """Transient failures only: connection errors, 408, 429, 5xx; retried within a time budget, not a count.

    Each request may spend up to ``budget_s`` waiting between tries (MCR answers 429 for minutes when its
    egress spikes). Waits use full jitter (a uniform draw up to the exponential backoff, AWS's "full
    jitter"), so throttled workers do not wake together; a ``Retry-After`` (capped at ``max_delay_s``) is the
    least wait, with jitter on top. ``rng`` may be injected (a seeded ``random.Random``) to make waits
    deterministic in tests, and ``monotonic`` (the clock the budget is measured by) to spend it without
    waiting. A refused connection gets ``connect_attempts`` tries only: a dead host is not
    waited on for minutes.
    """

    budget_s: float = DEFAULT_RETRY_BUDGET_S
    base_delay_s: float = 0.5
    max_delay_s: float = MAX_RETRY_AFTER_S
    connect_attempts: int = 3
    statuses: frozenset[int] = field(default=RETRY_STATUSES)
    rng: random.Random | None = field(default=None, compare=False, repr=False)
    monotonic: Callable[[], float] = field(default=time.monotonic, compare=False, repr=False)

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        """The wait before try ``attempt + 1``: full jitter on the backoff, at least a capped ``Retry-After``."""
        backoff = min(self.base_delay_s * (2 ** max(attempt - 1, 0)), self.max_delay_s)
        draw = (self.rng or random).uniform(0.0, backoff)
        floor = _retry_after_s(retry_after)
        if floor is None:
            return draw
        floor = min(floor, self.max_delay_s)
        return floor + min(draw, max(floor, self.base_delay_s))

    def clock(self, stop: threading.Event | None = None) -> RetryClock:
        """A fresh budget for one request (or one blob's download); ``stop`` is shared by the requests to one
        host: once one of them has spent its whole budget, the others stop waiting too."""
        return RetryClock(self, stop)


def _retry_after_s(value: str | None) -> float | None:
    """Seconds of a ``Retry-After`` header (RFC 9110 §10.2.3: delay-seconds or an HTTP-date), or None."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return _date_s(value.strip())
    return max(seconds, 0.0) if math.isfinite(seconds) else None


def _date_s(value: str) -> float | None:
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(when.timestamp() - time.time(), 0.0)


class RetryClock:
    """One request's retries: how many so far and whether the budget allows another wait."""

    def __init__(self, policy: RetryPolicy, stop: threading.Event | None = None) -> None:
        self.policy = policy
        self.stop = stop or threading.Event()
        self.tries = 0
        self.started = policy.monotonic()
        self.deadline = self.started + policy.budget_s

    @property
    def spent_s(self) -> float:
        return self.policy.monotonic() - self.started

    def wait(self, retry_after: str | None = None) -> bool:
        """Sleep before the next try and return True; False (no sleep) once the budget is spent."""
        self.tries += 1
        remaining = self.deadline - self.policy.monotonic()
        if self.stop.is_set():
            return False
        if remaining <= 0:
            self.stop.set()  # the host failed a whole budget: the other workers give up with this one
            return False
        return not self.stop.wait(min(self.policy.delay(self.tries, retry_after), remaining))

    def gave_up(self) -> str:
        """``gave up after N tries in S s`` for the error line."""
        return f"gave up after {self.tries} tries in {self.spent_s:.0f} s"


@dataclass(frozen=True)
class StallPolicy:
    """A body that moves slower than ``min_bytes_per_s`` over ``stall_s`` (a stall or a trickle) is dropped."""

    stall_s: float = DEFAULT_STALL_S
    min_bytes_per_s: int = DEFAULT_MIN_BYTES_PER_S


class HostGate:
    """How many requests may be in flight to one host: additive increase, multiplicative decrease (AIMD).

    Shared by every worker using the host's client. A throttling answer (429, 503) halves the limit (once per
    ``calm_s``, so one burst of refusals counts once); each answer that is not a refusal raises it by
    ``1/limit``, back up to ``ceiling``. A slot is held while a request is sent and its answer's headers
    arrive.
    """

    THROTTLED = frozenset({429, 503})

    def __init__(self, ceiling: int, *, calm_s: float = 1.0) -> None:
        self.ceiling = max(1, ceiling)
        self.limit = float(self.ceiling)
        self.in_flight = 0
        self.calm_s = calm_s
        self._cut_at = 0.0
        self._cond = threading.Condition()

    def acquire(self) -> None:
        with self._cond:
            while self.in_flight >= max(1, int(self.limit)):
                self._cond.wait()
            self.in_flight += 1

    def release(self, status: int | None) -> None:
        """``status`` of the answer (None: no answer)."""
        with self._cond:
            self.in_flight -= 1
            now = time.monotonic()
            if status in self.THROTTLED:
                if now - self._cut_at >= self.calm_s:
                    self.limit = max(1.0, self.limit / 2)
                    self._cut_at = now
            elif status is not None:
                self.limit = min(float(self.ceiling), self.limit + 1.0 / self.limit)
            self._cond.notify_all()


def ssl_context(host: str, tls: TLSOptions) -> ssl.SSLContext:
    """Build the trust for ``host``: explicit CA file, else certs.d/<host>, else the system store."""
    try:
        if tls.insecure:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return ctx
        if tls.ca_file is not None:
            # cafile= loads only this CA: SSL_CERT_FILE / REQUESTS_CA_BUNDLE cannot override it.
            return ssl.create_default_context(cafile=str(tls.ca_file))
        host_dir = tls.certs_dir / host
        if host_dir.is_dir():
            ctx = ssl.create_default_context()
            for ca in sorted(host_dir.glob("*.crt")):
                ctx.load_verify_locations(cafile=str(ca))
            for cert in sorted(host_dir.glob("*.cert")):
                key = cert.with_suffix(".key")
                if key.exists():
                    ctx.load_cert_chain(str(cert), str(key))
            return ctx
        return ssl.create_default_context()
    except (OSError, ssl.SSLError) as exc:
        raise LocalIOError(
            f"cannot load TLS trust for {host}: {exc}", hint="check the --*-ca-file path and that it is PEM"
        ) from None


def make_http_client(host: str, tls: TLSOptions, *, max_connections: int = 8, read_timeout_s: float = 120.0
                     ) -> httpx.Client:
    verify: ssl.SSLContext | bool = False if tls.plain_http else ssl_context(host, tls)
    return httpx.Client(
        verify=verify,
        timeout=httpx.Timeout(connect=15.0, read=read_timeout_s, write=120.0, pool=300.0),
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        headers={"User-Agent": "arcgap", "Accept-Encoding": "identity"},
        trust_env=True,  # proxies; CA variables don't matter because verify is an explicit context
    )
