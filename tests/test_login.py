"""``arcgap login`` / ``logout`` against real registries (htpasswd Basic, Bearer tokens): credentials are checked
before they are stored, stored where docker keeps them (a credential helper when configured, never plain text
then), used by later commands, and forgotten again."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from arcgap.registry.credentials import lookup_credentials
from devtools.registries import Registry
from tests.e2e_helpers import arcgap
from tests.test_credentials import FAKE_HELPER, write_exe


@pytest.fixture()
def docker_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    folder = tmp_path / "docker-config"
    monkeypatch.setenv("DOCKER_CONFIG", str(folder))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "auth.json"))
    for key in ("REGISTRY", "REPOSITORY", "USERNAME", "PASSWORD", "TAG", "CA_FILE"):
        monkeypatch.delenv(f"SOURCE_DOCKER_{key}", raising=False)
    return folder


def stdin(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))


def login_args(reg: Registry, *extra: str) -> list[str]:
    return ["login", reg.host, "--username", reg.username or "", "--password-stdin", "--ca-file", str(reg.ca_file),
            *extra]


def test_login_checks_stores_and_is_used_then_logout_forgets(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tls_registry: Registry, docker_config: Path
) -> None:
    probe = ["releases", "--source-registry", tls_registry.host, "--source-ca-file", str(tls_registry.ca_file)]
    assert arcgap(capsys, *probe).code == 3  # no credentials yet: the registry refuses
    stdin(monkeypatch, f"{tls_registry.password}\n")
    res = arcgap(capsys, *login_args(tls_registry, "--json"))
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    assert doc == {"command": "login", "registry": tls_registry.host, "username": tls_registry.username,
                   "stored_in": str(docker_config / "config.json"), "helper": False, "plain_text": True,
                   "auth": "basic"}
    assert "warning: the password is stored unencrypted" in res.err
    config = json.loads((docker_config / "config.json").read_text())
    assert set(config["auths"]) == {tls_registry.host}
    creds = lookup_credentials(tls_registry.host)
    assert creds is not None and creds.password.reveal() == tls_registry.password
    # later commands use the stored login: now the registry answers, and only the repository is missing
    assert arcgap(capsys, *probe).code == 4
    out = arcgap(capsys, "logout", tls_registry.host, "--json")
    assert out.code == 0 and json.loads(out.out) == {"command": "logout", "registry": tls_registry.host,
                                                     "removed": True}
    assert lookup_credentials(tls_registry.host) is None
    again = arcgap(capsys, "logout", tls_registry.host)
    assert again.code == 0 and again.out.strip() == f"not logged in to {tls_registry.host}"


def test_wrong_password_is_refused_and_nothing_is_stored(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tls_registry: Registry, docker_config: Path
) -> None:
    stdin(monkeypatch, "not-the-password\n")
    res = arcgap(capsys, *login_args(tls_registry))
    assert res.code == 3
    assert res.error_lines == [f"error: login to {tls_registry.host} refused: 401 Unauthorized",
                               "hint: check the username and password"]
    assert not (docker_config / "config.json").exists()


def test_token_registry_login(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, token_registry: Registry,
    docker_config: Path,
) -> None:
    stdin(monkeypatch, "wrong\n")
    assert arcgap(capsys, *login_args(token_registry)).code == 3
    stdin(monkeypatch, f"{token_registry.password}\n")
    res = arcgap(capsys, *login_args(token_registry, "--json"))
    assert res.code == 0, res.err
    assert json.loads(res.out)["auth"] == "bearer"


def test_with_a_credential_helper_nothing_secret_reaches_config_json(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tls_registry: Registry,
    docker_config: Path, tmp_path: Path,
) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    write_exe(bindir / "docker-credential-fake", FAKE_HELPER.format(python=sys.executable))
    monkeypatch.setenv("PATH", f"{bindir}:/usr/bin:/bin")
    monkeypatch.setenv("FAKE_CRED_STORE", str(tmp_path / "store.json"))
    monkeypatch.setenv("FAKE_CRED_LOG", str(tmp_path / "log.jsonl"))
    docker_config.mkdir()
    (docker_config / "config.json").write_text(json.dumps({"credsStore": "fake"}))
    stdin(monkeypatch, f"{tls_registry.password}\n")
    res = arcgap(capsys, *login_args(tls_registry, "--json"))
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    assert doc["helper"] is True and doc["plain_text"] is False and doc["stored_in"] == "docker-credential-fake"
    assert "unencrypted" not in res.err
    text = (docker_config / "config.json").read_text()
    assert tls_registry.password not in text and json.loads(text)["auths"] == {tls_registry.host: {}}
    store = json.loads((tmp_path / "store.json").read_text())
    assert store == {tls_registry.host: [tls_registry.username, tls_registry.password]}
    assert arcgap(capsys, "logout", tls_registry.host).code == 0
    assert json.loads((tmp_path / "store.json").read_text()) == {}


def test_password_only_from_stdin_or_a_prompt(capsys: pytest.CaptureFixture[str], docker_config: Path) -> None:
    res = arcgap(capsys, "login", "registry.example.com", "--username", "ops", "--password", "secret")
    assert res.code == 2 and "No such option: --password" in res.err
    res = arcgap(capsys, "login", "registry.example.com", "--username", "ops", "--no-input")
    assert res.code == 2
    assert res.error_lines[0] == "error: no password given"
    res = arcgap(capsys, "login", "registry.example.com", "--no-input")
    assert res.error_lines[0] == "error: no username given"


def test_login_speaks_through_the_registry_client_tls_failures_and_open_registries(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, plain_registry: Registry,
    docker_config: Path,
) -> None:
    stdin(monkeypatch, "pw\n")
    res = arcgap(capsys, "login", plain_registry.host, "--username", "ops", "--password-stdin")
    assert res.code == 5  # HTTPS to a plain HTTP registry: the client's TLS error, the login's words for it
    assert res.error_lines[0].startswith(f"error: connecting to {plain_registry.host}: TLS handshake with ")
    assert "--plain-http" in res.error_lines[1] and "--ca-file" in res.error_lines[1]
    assert not (docker_config / "config.json").exists()
    stdin(monkeypatch, "pw\n")
    res = arcgap(capsys, "login", f"http://{plain_registry.host}", "--username", "ops", "--password-stdin", "--json")
    assert res.code == 0, res.err
    assert json.loads(res.out)["auth"] == "none"  # the registry lets anyone in
