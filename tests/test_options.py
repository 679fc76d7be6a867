"""arcgap.commands.options: frozen, keyword-only values whose reprs never show a secret."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

from arcgap.bundle.signing import PASSPHRASE_ENV, generate_key
from arcgap.commands.endpoints import _signer
from arcgap.commands.options import (
    ExportOptions,
    ImportOptions,
    ManifestsNewOptions,
    MirrorOptions,
    RunContext,
    Selection,
    SourceOptions,
    TargetOptions,
)
from arcgap.commands.settings import collect_endpoint, env_name
from arcgap.errors import UsageError
from arcgap.util.secret import Secret

PASSWORD = "pa55-w0rd-in-memory-only"


def test_side_reprs_mask_the_password() -> None:
    for side in (SourceOptions, TargetOptions):
        given = side(registry="r.example", username="bob", password=Secret(PASSWORD), ca_file=Path("ca.pem"))
        assert PASSWORD not in repr(given) and PASSWORD not in str(given)
        assert "Secret('***')" in repr(given) and repr(given).startswith(side.__name__ + "(")
        assert given.password is not None and given.password.reveal() == PASSWORD


def test_the_run_context_repr_shows_no_environment(tmp_path: Path) -> None:
    """The environment holds both sides' passwords and the signing passphrase, under the names the run reads
    (proved below: the run takes each secret from exactly there), and the repr shows none of them."""
    environ = {env_name("target", "password"): PASSWORD, env_name("source", "password"): PASSWORD,
               PASSPHRASE_ENV: PASSWORD, "HOME": "/root"}
    context = RunContext(environ=environ)
    assert PASSWORD not in repr(context) and PASSWORD not in str(context)
    assert repr(context).startswith("RunContext(") and context.environ is environ
    for side in (SourceOptions, TargetOptions):
        given = side(registry="r.example", repository="arc", username="bob")
        endpoint = collect_endpoint(given, environ=context.environ, defaults={}, prompt=None, secret_prompt=None)
        assert endpoint.password is not None and endpoint.password.reveal() == PASSWORD
    key = generate_key(tmp_path / "k", passphrase=PASSWORD).private  # encrypted: loads only with the passphrase
    assert _signer(key, context.environ) is not None
    with pytest.raises(UsageError):
        _signer(key, {})


def test_sides_know_which_side_they_are_and_differ() -> None:
    assert (SourceOptions.side, TargetOptions.side) == ("source", "target")
    assert SourceOptions(registry="r") != TargetOptions(registry="r")
    assert SourceOptions(registry="r", tag="v1").values() == {"registry": "r", "repository": None,
                                                             "username": None, "tag": "v1"}


def test_options_are_frozen() -> None:
    options = ImportOptions(bundle=Path("b.tar.zst"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.jobs = 8  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        SourceOptions().registry = "x"  # type: ignore[misc]


@pytest.mark.skipif(sys.version_info < (3, 10), reason="keyword-only dataclasses need Python 3.10")
def test_options_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        SourceOptions("r.example")  # type: ignore[misc]
    with pytest.raises(TypeError):
        ExportOptions(Selection())  # type: ignore[misc]
    with pytest.raises(TypeError):
        MirrorOptions(Selection(), 4)  # type: ignore[misc]


@pytest.mark.parametrize(("command", "options", "names"), [
    ("export", ExportOptions(selection=Selection()), ("jobs", "level", "threads", "force", "platform", "engine",
                                                      "from_local", "skip_missing", "output", "split_size")),
    ("import", ImportOptions(bundle=Path("b")), ("jobs", "dry_run", "engine", "verify_key", "receipt")),
    ("mirror", MirrorOptions(selection=Selection()), ("jobs", "dry_run")),
    ("manifests new", ManifestsNewOptions(tag="v1"), ("jobs", "force", "output", "previous")),
])  # fmt: skip
def test_defaults_are_the_command_lines(command: str, options: object, names: tuple[str, ...]) -> None:
    """A caller of arcgap.commands that leaves a value out gets what the command line would have given."""
    import typer.main

    from arcgap.cli import app

    group = typer.main.get_command(app)
    for word in command.split():
        group = group.commands[word]  # type: ignore[attr-defined]
    defaults = {param.name: param.default for param in group.params}
    for name in names:
        assert getattr(options, name) == defaults[name], (command, name)
