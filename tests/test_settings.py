"""arcgap.commands.settings.collect_endpoint: option > environment > prompt > default, with recording fake prompts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pytest

from arcgap.cli.hints import words
from arcgap.commands.options import SourceOptions, TargetOptions
from arcgap.commands.settings import Endpoint, collect_endpoint, env_name, split_scheme
from arcgap.errors import ExitCode, UsageError
from arcgap.util.secret import Secret

PASSWORD = "s3cr3t-Pa55"


@dataclass
class FakePrompt:
    """Answers by label prefix; records every (label, default) it was asked."""

    answers: dict[str, str] = field(default_factory=dict)
    asked: list[tuple[str, str | None]] = field(default_factory=list)

    def __call__(self, label: str, default: str | None) -> str:
        self.asked.append((label, default))
        for key, answer in self.answers.items():
            if label.startswith(key):
                return answer
        return ""


@dataclass
class FakeSecretPrompt:
    answer: str = PASSWORD
    asked: list[str] = field(default_factory=list)

    def __call__(self, label: str) -> str:
        self.asked.append(label)
        return self.answer


def _collect(
    role: str = "source",
    *,
    options: Mapping[str, str | None] | None = None,
    environ: Mapping[str, str] | None = None,
    defaults: Mapping[str, str | None] | None = None,
    prompt: FakePrompt | None = None,
    secret_prompt: FakeSecretPrompt | None = None,
    password_stdin: str | None = None,
    plain_http: bool = False,
) -> Endpoint:
    side = {"source": SourceOptions, "target": TargetOptions}[role]
    given = side(**(options or {}), password=Secret(password_stdin) if password_stdin else None,
                 plain_http=plain_http)
    return collect_endpoint(given, environ=environ or {}, defaults=defaults or {}, prompt=prompt,
                            secret_prompt=secret_prompt)


@pytest.mark.parametrize(
    ("option", "env", "answer", "default", "expected"),
    [
        pytest.param("opt.example", "env.example", "prompt.example", "default.example", "opt.example", id="option"),
        pytest.param(None, "env.example", "prompt.example", "default.example", "env.example", id="env"),
        pytest.param("", "env.example", "prompt.example", "default.example", "env.example", id="empty-option"),
        pytest.param(None, "", "prompt.example", "default.example", "prompt.example", id="empty-env-is-unset"),
        pytest.param(None, "   ", "prompt.example", "default.example", "prompt.example", id="blank-env-is-unset"),
        pytest.param(None, None, "prompt.example", "default.example", "prompt.example", id="prompt"),
        pytest.param(None, None, "", "default.example", "default.example", id="empty-answer-takes-default"),
        pytest.param(None, None, None, "default.example", "default.example", id="no-prompt-default"),
        pytest.param(" opt.example ", None, None, None, "opt.example", id="stripped"),
    ],
)
def test_precedence_for_registry(
    option: str | None, env: str | None, answer: str | None, default: str | None, expected: str
) -> None:
    environ = {"SOURCE_DOCKER_REGISTRY": env} if env is not None else {}
    prompt = FakePrompt({"source registry": answer}) if answer is not None else None
    ep = _collect(
        options={"registry": option, "repository": "arcdata"},
        environ=environ,
        defaults={"registry": default},
        prompt=prompt,
    )
    assert ep.registry == expected
    if prompt is not None:
        asked_registry = [a for a in prompt.asked if a[0] == "source registry"]
        # The prompt is only consulted when neither option nor environment gave a value.
        assert asked_registry == ([("source registry", default)] if expected in ("prompt.example", default) else [])


def test_prompt_labels_and_defaults_recorded() -> None:
    prompt = FakePrompt({"target registry": "reg.local:5000", "target repository": "mirror/arcdata"})
    ep = _collect("target", defaults={"tag": "v1.29.0_2024-04-09", "repository": "arcdata"}, prompt=prompt)
    assert prompt.asked == [
        ("target registry", None),
        ("target repository", "arcdata"),
        ("target username (empty: anonymous)", None),
        ("target tag", "v1.29.0_2024-04-09"),
    ]
    assert ep == Endpoint("target", "reg.local:5000", "mirror/arcdata", None, None, "v1.29.0_2024-04-09")


def test_nothing_asked_when_everything_is_given() -> None:
    prompt, secret = FakePrompt(), FakeSecretPrompt()
    ep = _collect(
        options={"registry": "r.example", "repository": "arcdata", "username": "bob", "tag": "v1"},
        environ={"SOURCE_DOCKER_PASSWORD": "pw"},
        prompt=prompt,
        secret_prompt=secret,
    )
    assert (prompt.asked, secret.asked) == ([], [])
    assert ep.password == Secret("pw")


@pytest.mark.parametrize(
    ("role", "missing", "given"),
    [
        ("target", "TARGET_DOCKER_REGISTRY", {"repository": "arcdata"}),
        ("source", "SOURCE_DOCKER_REGISTRY", {"repository": "arcdata"}),
        ("source", "SOURCE_DOCKER_REPOSITORY", {"registry": "r.example"}),
    ],
)
def test_required_value_without_prompt(role: str, missing: str, given: dict[str, str]) -> None:
    with pytest.raises(UsageError) as info:
        _collect(role, options=given, environ={missing: ""})
    key = missing.split("_")[-1].lower()
    assert words(info.value.message) == f"{missing} is not set"
    assert words(info.value.hint) == f"pass --{role}-{key} or set {missing}"
    assert info.value.exit_code == ExitCode.USAGE


def test_empty_prompt_answer_without_default_is_an_error() -> None:
    with pytest.raises(UsageError) as info:
        _collect("target", options={"repository": "x"}, prompt=FakePrompt({"target registry": "  "}))
    assert words(info.value.message) == "TARGET_DOCKER_REGISTRY is not set"


def test_no_username_means_anonymous_and_no_password_asked() -> None:
    secret = FakeSecretPrompt()
    ep = _collect(
        options={"registry": "r.example", "repository": "arcdata"},
        environ={"SOURCE_DOCKER_PASSWORD": "ignored"},
        prompt=FakePrompt(),
        secret_prompt=secret,
    )
    assert (ep.username, ep.password) == (None, None)
    assert secret.asked == []


def test_password_asked_when_username_set() -> None:
    secret = FakeSecretPrompt()
    ep = _collect(
        options={"registry": "r.example", "repository": "arcdata"},
        environ={"SOURCE_DOCKER_USERNAME": "alice"},
        secret_prompt=secret,
    )
    assert secret.asked == ["source password for alice"]
    assert ep.username == "alice"
    assert ep.password is not None and ep.password.reveal() == PASSWORD


def test_username_from_prompt_then_password_prompt() -> None:
    prompt, secret = FakePrompt({"source username": "carol"}), FakeSecretPrompt()
    ep = _collect(options={"registry": "r.example", "repository": "arcdata"}, prompt=prompt, secret_prompt=secret)
    assert (ep.username, secret.asked) == ("carol", ["source password for carol"])


def test_username_without_password_and_no_prompt() -> None:
    with pytest.raises(UsageError) as info:
        _collect(
            options={"registry": "r.example", "repository": "arcdata", "username": "bob"},
            environ={"SOURCE_DOCKER_PASSWORD": ""},
        )
    assert words(info.value.message) == "SOURCE_DOCKER_PASSWORD is not set for user 'bob'"
    assert "SOURCE_DOCKER_PASSWORD" in words(info.value.hint)
    assert "--password-stdin" in words(info.value.hint)


@pytest.mark.parametrize(
    ("stdin", "env", "expected", "prompted"),
    [
        pytest.param("from-stdin", "from-env", "from-stdin", False, id="stdin-beats-env"),
        pytest.param(None, "from-env", "from-env", False, id="env-beats-prompt"),
        pytest.param("", "from-env", "from-env", False, id="empty-stdin-is-unset"),
        pytest.param(None, "", PASSWORD, True, id="empty-env-prompts"),
        pytest.param(None, None, PASSWORD, True, id="prompt"),
    ],
)
def test_password_sources(stdin: str | None, env: str | None, expected: str, prompted: bool) -> None:
    secret = FakeSecretPrompt()
    environ = {"SOURCE_DOCKER_PASSWORD": env} if env is not None else {}
    ep = _collect(
        options={"registry": "r.example", "repository": "arcdata", "username": "bob"},
        environ=environ,
        secret_prompt=secret,
        password_stdin=stdin,
    )
    assert ep.password == Secret(expected)
    assert bool(secret.asked) is prompted


@pytest.mark.parametrize(
    ("given", "registry", "plain"),
    [
        ("http://host:5000", "host:5000", True),
        ("HTTP://host:5000/", "host:5000", True),
        ("http://host:5000/v2/", "host:5000", True),
        ("https://reg.example", "reg.example", False),
        ("reg.example:443", "reg.example:443", False),
        ("127.0.0.1:5102", "127.0.0.1:5102", False),
    ],
)
def test_scheme_sets_plain_http(given: str, registry: str, plain: bool) -> None:
    ep = _collect(options={"registry": given, "repository": "arcdata"})
    assert (ep.registry, ep.plain_http) == (registry, plain)


def test_plain_http_flag_kept_with_https_scheme() -> None:
    ep = _collect(options={"registry": "https://reg.example", "repository": "a"}, plain_http=True)
    assert ep.plain_http is True


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("http://h:1", ("h:1", True)),
        ("https://h", ("h", False)),
        ("h/v2", ("h", None)),
        ("h", ("h", None)),
    ],
)
def test_split_scheme(text: str, expected: tuple[str, bool | None]) -> None:
    assert split_scheme(text) == expected


def test_repr_never_contains_password() -> None:
    ep = _collect(
        options={"registry": "r.example", "repository": "/arcdata/", "username": "bob", "tag": "v1"},
        password_stdin=PASSWORD,
    )
    assert ep.repository == "arcdata"
    for text in (repr(ep), str(ep), f"{ep}", repr([ep]), repr(ep.password)):
        assert PASSWORD not in text
    assert repr(ep) == (
        "Endpoint(role='source', registry='r.example', repository='arcdata', username='bob', password=***, tag='v1')"
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param({"tag": "-bad"}, "invalid tag '-bad'", id="tag-dash"),
        pytest.param({"tag": "a:b"}, "invalid tag 'a:b'", id="tag-colon"),
        pytest.param({"tag": "t" * 129}, f"invalid tag {'t' * 129!r}", id="tag-long"),
        pytest.param({"repository": "ArcData"}, "invalid repository name 'ArcData'", id="repo-upper"),
        pytest.param({"registry": "reg.example/path"}, "invalid registry 'reg.example/path'", id="registry-path"),
        pytest.param({"registry": "ftp://reg.example"}, "invalid registry 'ftp://reg.example'", id="registry-ftp"),
    ],
)
def test_invalid_values(options: dict[str, str], message: str) -> None:
    given = {"registry": "r.example", "repository": "arcdata", **options}
    with pytest.raises(UsageError) as info:
        _collect(options=given)
    assert info.value.message == message


def test_invalid_tag_from_env() -> None:
    with pytest.raises(UsageError, match=r"^invalid tag 'v1 v2'$"):
        _collect("target", options={"registry": "r", "repository": "a"}, environ={"TARGET_DOCKER_TAG": "v1 v2"})


@pytest.mark.parametrize(
    ("role", "key", "name"),
    [("source", "registry", "SOURCE_DOCKER_REGISTRY"), ("target", "password", "TARGET_DOCKER_PASSWORD")],
)
def test_env_name(role: str, key: str, name: str) -> None:
    assert env_name(role, key) == name


@pytest.mark.parametrize("answer", [None, "http://host:5000"])
def test_a_registry_from_a_file_never_switches_tls_off(answer: str | None) -> None:
    """A receipt's ``http://HOST`` is a default (from a file): TLS stays on (issue 17: preflight sent the
    target password in clear). The same value typed on the command line or in the environment still counts."""
    prompt = FakePrompt({"target registry": answer}) if answer is not None else None
    ep = _collect("target", defaults={"registry": "http://host:5000", "repository": "arcdata"}, prompt=prompt)
    assert (ep.registry, ep.plain_http) == ("host:5000", False)
    from_env = _collect("target", environ={"TARGET_DOCKER_REGISTRY": "http://host:5000"},
                        defaults={"registry": "http://other:5000", "repository": "arcdata"})
    assert (from_env.registry, from_env.plain_http) == ("host:5000", True)
