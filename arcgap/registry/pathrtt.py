"""The round-trip time of the path a response came over, as the kernel measured it (Linux ``TCP_INFO``).

A ranged download asks whether one connection already fills the path (loopback, a LAN) or whether the path is
long (a loss-limited connection runs at about MSS/RTT × 1.22/√loss, so only several connections fill it). How
fast a first chunk arrived cannot tell them apart for sure: on a busy machine a loopback chunk comes slowly
because the CPU is busy, and on a long path a warm connection can deliver its first chunk in one burst. The
least RTT the kernel saw on the connection can: microseconds on loopback, tens of milliseconds across the
internet, whatever the load. None where it is not known (not Linux, no plain TCP socket, or a proxy in
between: the RTT would then be the proxy's, not the registry's).
"""

from __future__ import annotations

import socket
import struct
import sys
import urllib.request

import httpx

from arcgap.registry.bodyread import network_info

# struct tcp_info (include/uapi/linux/tcp.h, Linux 4.10+): tcpi_min_rtt (µs) at byte 148. The least RTT the
# connection saw, the handshake's included (answered by the kernel, no application in the way). Not tcpi_rtt:
# on loopback it was 4-14 ms, a request's ACK riding on an answer the registry took that long to send.
_TCP_INFO = getattr(socket, "TCP_INFO", 11)
_MIN_RTT_OFFSET = 148
_INFO_BYTES = 232


def path_rtt_s(resp: httpx.Response) -> float | None:
    """The least RTT (seconds) seen on the TCP connection ``resp`` (streamed, still open) arrived on, or None."""
    if not sys.platform.startswith("linux") or _proxied(resp.url):
        return None
    sock = network_info(resp, "socket")
    if not isinstance(sock, socket.socket):
        return None
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, _INFO_BYTES)
    except OSError:
        return None
    if len(raw) < _MIN_RTT_OFFSET + 4:
        return None
    (rtt_us,) = struct.unpack_from("=I", raw, _MIN_RTT_OFFSET)
    return rtt_us / 1e6 if 0 < rtt_us < 0xFFFFFFFF else None


def _proxied(url: httpx.URL) -> bool:
    """Whether the environment sends requests for ``url`` through a proxy (as httpx's ``trust_env`` does)."""
    proxies = urllib.request.getproxies_environment()
    if not (proxies.get(url.scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass_environment(url.host, proxies)
