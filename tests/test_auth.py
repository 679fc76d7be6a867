"""arcgap.registry.auth: WWW-Authenticate parsing and token scopes, as plain function calls."""

from __future__ import annotations

import pytest

from arcgap.registry.auth import Challenge, parse_challenge, repo_scope


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param(
            'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
            'scope="repository:library/nginx:pull,push"',
            Challenge("bearer", {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                                 "scope": "repository:library/nginx:pull,push"}),
            id="docker-hub",
        ),
        pytest.param(
            'Bearer realm="https://mcr.microsoft.com/oauth2/token", service="mcr.microsoft.com", '
            'scope="repository:arcdata/arc-controller:pull,push,delete"',
            Challenge("bearer", {"realm": "https://mcr.microsoft.com/oauth2/token", "service": "mcr.microsoft.com",
                                 "scope": "repository:arcdata/arc-controller:pull,push,delete"}),
            id="spaces-after-commas",
        ),
        pytest.param(
            'Bearer realm="https://r/token",scope="repository:a:pull repository:b:pull,push",'
            'error="insufficient_scope"',
            Challenge("bearer", {"realm": "https://r/token", "scope": "repository:a:pull repository:b:pull,push",
                                 "error": "insufficient_scope"}),
            id="two-scopes-and-error",
        ),
        pytest.param('Basic realm="Registry Realm"', Challenge("basic", {"realm": "Registry Realm"}), id="basic"),
        pytest.param(
            r'Basic realm="say \"hi\", then \\ leave"',
            Challenge("basic", {"realm": 'say "hi", then \\ leave'}),
            id="escaped-quotes-and-backslash",
        ),
        pytest.param("BEARER Realm=\"x\",SERVICE=y", Challenge("bearer", {"realm": "x", "service": "y"}),
                     id="case-insensitive-scheme-and-keys"),
        pytest.param("bAsIc", Challenge("basic", {}), id="scheme-only"),
        pytest.param("Bearer realm=https://r.example/token,service=r.example",
                     Challenge("bearer", {"realm": "https://r.example/token", "service": "r.example"}),
                     id="unquoted-values"),
        pytest.param('  Bearer realm="x"  ', Challenge("bearer", {"realm": "x"}), id="surrounding-space"),
        pytest.param('Bearer realm=""', Challenge("bearer", {"realm": ""}), id="empty-quoted-value"),
        pytest.param('Bearer realm="a=b,c=d"', Challenge("bearer", {"realm": "a=b,c=d"}),
                     id="quoted-value-looks-like-params"),
    ],
)
def test_parse_challenge(header: str, expected: Challenge) -> None:
    assert parse_challenge(header) == expected


@pytest.mark.parametrize("header", ["", " ", "\t\n"])
def test_parse_challenge_empty(header: str) -> None:
    assert parse_challenge(header) is None


def test_later_duplicate_parameter_wins() -> None:
    challenge = parse_challenge('Bearer realm="first",realm="second"')
    assert challenge is not None and challenge.params == {"realm": "second"}


@pytest.mark.parametrize(
    ("repository", "actions", "expected"),
    [
        ("arcdata/arc-controller", "pull", "repository:arcdata/arc-controller:pull"),
        ("mirror/arcdata/arc-dns", "pull,push", "repository:mirror/arcdata/arc-dns:pull,push"),
        ("library/nginx", "*", "repository:library/nginx:*"),
    ],
)
def test_repo_scope(repository: str, actions: str, expected: str) -> None:
    assert repo_scope(repository, actions) == expected
