"""Where the registry client sends things: upload Locations resolved per RFC 3986, credentials to one origin only,
and a refused token forgotten once however many requests met it."""

from __future__ import annotations

import httpx
import pytest

from arcgap.registry.auth import Authenticator
from arcgap.registry.client import RegistryClient, _same_origin
from arcgap.registry.transport import TLSOptions


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("/v2/a/b/blobs/uploads/u1?_state=x", "http://r:5000/v2/a/b/blobs/uploads/u1?_state=x"),
        ("u1?_state=x", "http://r:5000/v2/a/b/blobs/uploads/u1?_state=x"),
        ("http://r:5000/v2/a/b/blobs/uploads/u1", "http://r:5000/v2/a/b/blobs/uploads/u1"),
        ("https://uploads.example/session/1?sig=2", "https://uploads.example/session/1?sig=2"),
        (" /v2/a/b/blobs/uploads/u2 ", "http://r:5000/v2/a/b/blobs/uploads/u2"),
    ],
)
def test_upload_locations_are_resolved_against_the_request(location: str, expected: str) -> None:
    with RegistryClient("r:5000", push=True, tls=TLSOptions(plain_http=True)) as client:
        request = httpx.URL("http://r:5000/v2/a/b/blobs/uploads/")
        assert client.absolute_url(location, request) == expected


@pytest.mark.parametrize(
    ("url", "same"),
    [
        ("https://r.example/v2/x", True),
        ("https://r.example:443/v2/x", True),
        ("https://r.example:8443/v2/x", False),  # another port is another origin (a CDN on loopback)
        ("http://r.example/v2/x", False),
        ("https://cdn.r.example/blob", False),
    ],
)
def test_credentials_go_to_the_registry_origin_only(url: str, same: bool) -> None:
    assert _same_origin(httpx.URL(url), httpx.URL("https://r.example")) is same


def test_a_refused_token_is_forgotten_once() -> None:
    with httpx.Client() as http:
        auth = Authenticator(http, registry="r", credentials=None)
        scopes = frozenset({"repository:a:pull"})
        auth._tokens[scopes] = ("new", float("inf"))  # another thread already fetched a fresh one
        auth.invalidate(scopes, "Bearer old")  # a late 401 for the old token leaves the fresh one alone
        assert auth._tokens[scopes][0] == "new"
        auth.invalidate(scopes, "Bearer new")
        assert scopes not in auth._tokens
