"""Stored credentials: docker's config.json, real credential-helper executables, containers' auth.json."""

from __future__ import annotations

import base64
import json
import os
import signal
import stat
import sys
import time
from pathlib import Path

import pytest

from arcgap.errors import AuthError, ExitCode, UsageError
from arcgap.registry.credentials import (
    Credentials,
    erase_credentials,
    lookup_credentials,
    store_credentials,
)
from arcgap.util.secret import Secret

# A credential helper speaking docker-credential-helpers' protocol, keeping its store in a JSON file.
FAKE_HELPER = """#!{python}
import json, os, sys
store_path = os.environ["FAKE_CRED_STORE"]
data = sys.stdin.read()
with open(os.environ["FAKE_CRED_LOG"], "a") as log:
    log.write(json.dumps({{"argv": sys.argv[1:], "stdin": data}}) + "\\n")
try:
    with open(store_path) as f:
        store = json.load(f)
except FileNotFoundError:
    store = {{}}
action = sys.argv[1]
if action == "get":
    if data not in store:
        print("credentials not found in native keychain")
        sys.exit(1)
    username, secret = store[data]
    print(json.dumps({{"ServerURL": data, "Username": username, "Secret": secret}}))
elif action == "store":
    doc = json.loads(data)
    store[doc["ServerURL"]] = [doc["Username"], doc["Secret"]]
elif action == "erase":
    if data not in store:
        print("credentials not found in native keychain")
        sys.exit(1)
    del store[data]
else:
    sys.exit(2)
with open(store_path, "w") as f:
    json.dump(store, f)
"""

REGISTRY = "reg.example.com:5000"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def write_exe(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o755)


@pytest.fixture()
def env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    (home / ".docker").mkdir(parents=True)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    write_exe(bindir / "docker-credential-fake", FAKE_HELPER.format(python=sys.executable))
    return {
        "HOME": str(home),
        "PATH": f"{bindir}:/usr/bin:/bin",
        "FAKE_CRED_STORE": str(tmp_path / "helper-store.json"),
        "FAKE_CRED_LOG": str(tmp_path / "helper-log.jsonl"),
    }


def config_path(env: dict[str, str]) -> Path:
    return Path(env["HOME"]) / ".docker" / "config.json"


def write_config(env: dict[str, str], config: dict) -> None:
    config_path(env).write_text(json.dumps(config, indent=2))


def helper_store(env: dict[str, str], entries: dict[str, list[str]]) -> None:
    Path(env["FAKE_CRED_STORE"]).write_text(json.dumps(entries))


def helper_calls(env: dict[str, str]) -> list[dict]:
    log = Path(env["FAKE_CRED_LOG"])
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


# --- config.json auths --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "reg.example.com:5000",
        "https://reg.example.com:5000",
        "http://reg.example.com:5000",
        "https://reg.example.com:5000/v1/",
        "https://reg.example.com:5000/v2/",
        "Reg.Example.com:5000",
    ],
)
def test_auths_key_styles(env: dict[str, str], key: str) -> None:
    write_config(
        env,
        {"auths": {"other.example.com": {"auth": b64("x:y")}, key: {"auth": b64("alice:pw:with:colons")}}},
    )
    creds = lookup_credentials(REGISTRY, environ=env)
    assert creds == Credentials("alice", Secret("pw:with:colons"), False, "~/.docker/config.json")


@pytest.mark.parametrize(
    "key", ["https://index.docker.io/v1/", "docker.io", "index.docker.io", "registry-1.docker.io"]
)
@pytest.mark.parametrize("registry", ["docker.io", "registry-1.docker.io", "index.docker.io"])
def test_docker_hub_names(env: dict[str, str], key: str, registry: str) -> None:
    write_config(env, {"auths": {key: {"auth": b64("hubuser:hubpw")}}})
    creds = lookup_credentials(registry, environ=env)
    assert creds is not None and creds.username == "hubuser" and creds.password.reveal() == "hubpw"


def test_exact_key_wins_over_equivalent_spelling(env: dict[str, str]) -> None:
    write_config(
        env,
        {"auths": {"https://reg.example.com:5000": {"auth": b64("old:1")}, REGISTRY: {"auth": b64("new:2")}}},
    )
    creds = lookup_credentials(REGISTRY, environ=env)
    assert creds is not None and creds.username == "new"


def test_username_password_fields(env: dict[str, str]) -> None:
    write_config(env, {"auths": {REGISTRY: {"username": "bob", "password": "s3cret"}}})
    creds = lookup_credentials(REGISTRY, environ=env)
    assert creds == Credentials("bob", Secret("s3cret"), False, "~/.docker/config.json")


def test_identity_token(env: dict[str, str]) -> None:
    write_config(
        env,
        {
            "auths": {
                REGISTRY: {"auth": b64("carol:"), "identitytoken": "refresh-tok"},
                "tok.example.com": {"identitytoken": "other-tok"},
            }
        },
    )
    assert lookup_credentials(REGISTRY, environ=env) == Credentials(
        "carol", Secret("refresh-tok"), True, "~/.docker/config.json"
    )
    creds = lookup_credentials("tok.example.com", environ=env)
    assert creds is not None and creds.identity_token and creds.username == "<token>"
    assert creds.password.reveal() == "other-tok"


def test_docker_config_variable_wins_over_home(env: dict[str, str], tmp_path: Path) -> None:
    write_config(env, {"auths": {REGISTRY: {"auth": b64("home:1")}}})
    other = tmp_path / "dockercfg"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"auths": {REGISTRY: {"auth": b64("cfg:2")}}}))
    creds = lookup_credentials(REGISTRY, environ={**env, "DOCKER_CONFIG": str(other)})
    assert creds is not None and creds.username == "cfg" and creds.source == str(other / "config.json")


@pytest.mark.parametrize(
    "config",
    [
        None,
        {},
        {"auths": {}},
        {"auths": {REGISTRY: {}}},
        {"auths": {"other.example.com": {"auth": b64("a:b")}}},
    ],
)
def test_nothing_stored(env: dict[str, str], config: dict | None) -> None:
    if config is not None:
        write_config(env, config)
    assert lookup_credentials(REGISTRY, environ=env) is None


def test_malformed_config_names_file_and_line(env: dict[str, str]) -> None:
    config_path(env).write_text('{\n  "auths": {\n    "reg.example.com:5000": {"auth": "eA=="},\n  }\n}\n')
    with pytest.raises(UsageError) as info:
        lookup_credentials(REGISTRY, environ=env)
    assert info.value.message.startswith("~/.docker/config.json:4: malformed JSON: ")
    assert "config.json" in info.value.hint
    assert info.value.exit_code == ExitCode.USAGE


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ([1, 2], "~/.docker/config.json: expected a JSON object"),
        ({"auths": []}, "~/.docker/config.json: 'auths' must be a JSON object"),
        ({"auths": {REGISTRY: "x"}}, f"~/.docker/config.json: auths['{REGISTRY}'] must be a JSON object"),
        ({"auths": {REGISTRY: {"auth": "not base64!"}}}, "auths['reg.example.com:5000'].auth is not base64"),
        ({"auths": {REGISTRY: {"auth": b64("nocolon")}}}, "auths['reg.example.com:5000'].auth is not base64"),
        ({"auths": {REGISTRY: {"password": 5}}}, "auths['reg.example.com:5000'].password must be a string"),
        ({"credsStore": "../../bin/sh"}, "credsStore: invalid credential helper name '../../bin/sh'"),
    ],
)
def test_bad_config_content(env: dict[str, str], config: object, message: str) -> None:
    config_path(env).write_text(json.dumps(config))
    with pytest.raises(UsageError) as info:
        lookup_credentials(REGISTRY, environ=env)
    assert message in info.value.message


def test_invalid_registry_rejected(env: dict[str, str]) -> None:
    with pytest.raises(UsageError, match="invalid registry"):
        lookup_credentials("", environ=env)


# --- credential helpers -------------------------------------------------------------------------------------


def test_cred_helpers_runs_helper_with_host_on_stdin(env: dict[str, str]) -> None:
    write_config(
        env,
        {"credHelpers": {REGISTRY: "fake"}, "auths": {REGISTRY: {"auth": b64("stale:entry")}}},
    )
    helper_store(env, {REGISTRY: ["dave", "helper-secret"]})
    creds = lookup_credentials(REGISTRY, environ=env)
    assert creds == Credentials("dave", Secret("helper-secret"), False, "docker-credential-fake")
    assert helper_calls(env) == [{"argv": ["get"], "stdin": REGISTRY}]


def test_cred_helpers_only_for_its_host(env: dict[str, str]) -> None:
    write_config(
        env, {"credHelpers": {"other.example.com": "fake"}, "auths": {REGISTRY: {"auth": b64("e:f")}}}
    )
    creds = lookup_credentials(REGISTRY, environ=env)
    assert creds is not None and creds.username == "e"
    assert helper_calls(env) == []


def test_creds_store_for_docker_hub(env: dict[str, str]) -> None:
    write_config(env, {"credsStore": "fake", "auths": {"https://index.docker.io/v1/": {}}})
    helper_store(env, {"https://index.docker.io/v1/": ["hub", "hubsecret"]})
    creds = lookup_credentials("registry-1.docker.io", environ=env)
    assert creds == Credentials("hub", Secret("hubsecret"), False, "docker-credential-fake")
    assert helper_calls(env) == [{"argv": ["get"], "stdin": "https://index.docker.io/v1/"}]


def test_helper_identity_token(env: dict[str, str]) -> None:
    write_config(env, {"credsStore": "fake"})
    helper_store(env, {REGISTRY: ["<token>", "refresh"]})
    creds = lookup_credentials(REGISTRY, environ=env)
    assert creds is not None and creds.identity_token and creds.password == Secret("refresh")


def test_helper_not_found_is_none(env: dict[str, str]) -> None:
    write_config(env, {"credsStore": "fake"})
    assert lookup_credentials(REGISTRY, environ=env) is None
    assert helper_calls(env) == [{"argv": ["get"], "stdin": REGISTRY}]


def test_helper_missing_from_path(env: dict[str, str]) -> None:
    write_config(env, {"credsStore": "nonexistent-arcgap-test"})
    with pytest.raises(AuthError) as info:
        lookup_credentials(REGISTRY, environ=env)
    assert (
        info.value.message == "credential helper docker-credential-nonexistent-arcgap-test not found on PATH"
    )
    assert "~/.docker/config.json" in info.value.hint
    assert info.value.exit_code == ExitCode.AUTH


def test_helper_found_only_on_the_given_path(env: dict[str, str]) -> None:
    write_config(env, {"credsStore": "fake"})
    with pytest.raises(AuthError, match="not found on PATH"):
        lookup_credentials(REGISTRY, environ={**env, "PATH": "/usr/bin:/bin"})


def test_helper_failure(env: dict[str, str], tmp_path: Path) -> None:
    write_exe(
        tmp_path / "bin" / "docker-credential-locked", "#!/bin/sh\necho 'keychain is locked' >&2\nexit 3\n"
    )
    write_config(env, {"credHelpers": {REGISTRY: "locked"}})
    with pytest.raises(AuthError) as info:
        lookup_credentials(REGISTRY, environ=env)
    assert info.value.message == (
        "credential helper docker-credential-locked get failed (exit status 3): keychain is locked"
    )
    assert info.value.hint


def test_helper_malformed_output_does_not_leak(env: dict[str, str], tmp_path: Path) -> None:
    write_exe(tmp_path / "bin" / "docker-credential-garbled", '#!/bin/sh\necho \'{"Secret": "leaky-pw"\'\n')
    write_config(env, {"credsStore": "garbled"})
    with pytest.raises(AuthError) as info:
        lookup_credentials(REGISTRY, environ=env)
    assert "malformed output" in info.value.message
    assert "leaky-pw" not in info.value.message + info.value.hint


def test_helper_timeout_does_not_hang(env: dict[str, str], tmp_path: Path) -> None:
    # The helper leaves a grandchild holding stdout open: the call must still return at the timeout.
    pidfile = tmp_path / "sleep.pid"
    write_exe(
        tmp_path / "bin" / "docker-credential-slow",
        f"#!/bin/sh\nsleep 60 &\necho $! > {pidfile}\nwait\n",
    )
    write_config(env, {"credsStore": "slow"})
    start = time.monotonic()
    try:
        with pytest.raises(AuthError, match=r"docker-credential-slow get did not answer within 0.5 s"):
            lookup_credentials(REGISTRY, environ=env, timeout_s=0.5)
        assert time.monotonic() - start < 10
    finally:
        if pidfile.exists() and pidfile.read_text().strip():
            os.kill(int(pidfile.read_text()), signal.SIGKILL)


# --- containers' auth.json ----------------------------------------------------------------------------------


def test_registry_auth_file(env: dict[str, str], tmp_path: Path) -> None:
    auth_file = tmp_path / "podman-auth.json"
    auth_file.write_text(json.dumps({"auths": {REGISTRY: {"auth": b64("pod:man")}}}))
    creds = lookup_credentials(REGISTRY, environ={**env, "REGISTRY_AUTH_FILE": str(auth_file)})
    assert creds == Credentials("pod", Secret("man"), False, str(auth_file))


def test_xdg_runtime_auth_file_and_scoped_keys(env: dict[str, str], tmp_path: Path) -> None:
    runtime = tmp_path / "run"
    (runtime / "containers").mkdir(parents=True)
    (runtime / "containers" / "auth.json").write_text(
        json.dumps(
            {
                "auths": {
                    "quay.io/someorg": {"auth": b64("scoped:x")},
                    "https://reg.example.com:5000": {"auth": b64("rt:y")},
                }
            }
        )
    )
    environ = {**env, "XDG_RUNTIME_DIR": str(runtime)}
    assert lookup_credentials("quay.io", environ=environ) is None  # a namespace's login is not the registry's
    creds = lookup_credentials(REGISTRY, environ=environ)
    assert creds is not None and creds.username == "rt"


def test_docker_config_before_containers_auth(env: dict[str, str], tmp_path: Path) -> None:
    auth_file = tmp_path / "auth.json"
    auth_file.write_text(
        json.dumps({"auths": {REGISTRY: {"auth": b64("pod:1")}, "only.pod": {"auth": b64("p:2")}}})
    )
    write_config(env, {"auths": {REGISTRY: {"auth": b64("dock:1")}}})
    environ = {**env, "REGISTRY_AUTH_FILE": str(auth_file)}
    assert lookup_credentials(REGISTRY, environ=environ).username == "dock"  # type: ignore[union-attr]
    assert lookup_credentials("only.pod", environ=environ).username == "p"  # type: ignore[union-attr]


def test_malformed_containers_auth(env: dict[str, str], tmp_path: Path) -> None:
    auth_file = tmp_path / "auth.json"
    auth_file.write_text('{"auths": {\n\n}}}')
    with pytest.raises(UsageError, match=rf"^{auth_file}:3: malformed JSON"):
        lookup_credentials(REGISTRY, environ={**env, "REGISTRY_AUTH_FILE": str(auth_file)})


# --- the secret stays hidden --------------------------------------------------------------------------------


def test_repr_hides_secret() -> None:
    creds = Credentials("eve", Secret("hunter2-very-secret"), source="options")
    assert "hunter2" not in repr(creds)
    assert "hunter2" not in str(creds)
    assert "eve" in repr(creds) and "options" in repr(creds)


# --- store / erase ------------------------------------------------------------------------------------------


def test_store_erase_round_trip_in_config_file(env: dict[str, str]) -> None:
    write_config(
        env,
        {"auths": {"https://reg.example.com:5000/v1/": {"auth": b64("old:old")}}, "proxies": {"default": {}}},
    )
    config_path(env).chmod(0o644)
    creds = Credentials("frank", Secret("n3w:pw"))
    assert store_credentials(REGISTRY, creds, environ=env) == "~/.docker/config.json"

    path = config_path(env)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    written = json.loads(path.read_text())
    assert written == {"auths": {REGISTRY: {"auth": b64("frank:n3w:pw")}}, "proxies": {"default": {}}}
    assert [p.name for p in path.parent.iterdir()] == ["config.json"]  # no temp file left behind
    assert lookup_credentials(REGISTRY, environ=env) == Credentials(
        "frank", Secret("n3w:pw"), False, "~/.docker/config.json"
    )

    assert erase_credentials(REGISTRY, environ=env) is True
    assert lookup_credentials(REGISTRY, environ=env) is None
    assert json.loads(path.read_text()) == {"auths": {}, "proxies": {"default": {}}}
    assert erase_credentials(REGISTRY, environ=env) is False


def test_store_creates_config_and_docker_hub_key(env: dict[str, str], tmp_path: Path) -> None:
    cfgdir = tmp_path / "new" / "docker"
    environ = {**env, "DOCKER_CONFIG": str(cfgdir)}
    store_credentials("docker.io", Credentials("hub", Secret("tok"), identity_token=True), environ=environ)
    path = cfgdir / "config.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    hub_entry = {"auth": b64("hub:"), "identitytoken": "tok"}
    assert json.loads(path.read_text()) == {"auths": {"https://index.docker.io/v1/": hub_entry}}
    assert lookup_credentials("registry-1.docker.io", environ=environ) == Credentials(
        "hub", Secret("tok"), True, str(path)
    )


def test_store_keeps_symlinked_config(env: dict[str, str], tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "docker-config.json"
    real.parent.mkdir()
    real.write_text("{}")
    config_path(env).symlink_to(real)
    store_credentials(REGISTRY, Credentials("g", Secret("h")), environ=env)
    assert config_path(env).is_symlink()
    assert json.loads(real.read_text()) == {"auths": {REGISTRY: {"auth": b64("g:h")}}}


def test_store_erase_round_trip_with_helper(env: dict[str, str]) -> None:
    write_config(env, {"credsStore": "fake"})
    creds = Credentials("ivy", Secret("helper-pw"))
    assert store_credentials(REGISTRY, creds, environ=env) == "docker-credential-fake"
    # The secret went to the helper on stdin, not into argv or the config file.
    calls = helper_calls(env)
    assert calls[0]["argv"] == ["store"]
    assert json.loads(calls[0]["stdin"]) == {"ServerURL": REGISTRY, "Username": "ivy", "Secret": "helper-pw"}
    assert "helper-pw" not in config_path(env).read_text()
    assert json.loads(config_path(env).read_text()) == {"credsStore": "fake", "auths": {REGISTRY: {}}}
    assert stat.S_IMODE(config_path(env).stat().st_mode) == 0o600

    assert lookup_credentials(REGISTRY, environ=env) == Credentials(
        "ivy", Secret("helper-pw"), False, "docker-credential-fake"
    )

    assert erase_credentials(REGISTRY, environ=env) is True
    assert helper_calls(env)[-1] == {"argv": ["erase"], "stdin": REGISTRY}
    assert lookup_credentials(REGISTRY, environ=env) is None
    assert json.loads(config_path(env).read_text()) == {"credsStore": "fake", "auths": {}}
    assert erase_credentials(REGISTRY, environ=env) is False


def test_store_identity_token_with_helper(env: dict[str, str]) -> None:
    write_config(env, {"credHelpers": {REGISTRY: "fake"}})
    store_credentials(REGISTRY, Credentials("x", Secret("rt"), identity_token=True), environ=env)
    assert json.loads(Path(env["FAKE_CRED_STORE"]).read_text()) == {REGISTRY: ["<token>", "rt"]}


def test_failing_store_helper_does_not_leak(env: dict[str, str], tmp_path: Path) -> None:
    # This helper echoes what it was given (the secret) in its error message.
    write_exe(tmp_path / "bin" / "docker-credential-echo", "#!/bin/sh\ncat\nexit 1\n")
    write_config(env, {"credsStore": "echo"})
    before = config_path(env).read_text()
    with pytest.raises(AuthError) as info:
        store_credentials(REGISTRY, Credentials("j", Secret("do-not-print-me")), environ=env)
    assert info.value.message.startswith(
        "credential helper docker-credential-echo store failed (exit status 1): "
    )
    assert "do-not-print-me" not in info.value.message + info.value.hint
    assert config_path(env).read_text() == before
