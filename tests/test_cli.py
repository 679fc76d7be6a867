"""The CLI surface: every command has help with an example and is documented; usage errors are two lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from arcgap.cli import app, run

COMMANDS = ("export", "import", "verify", "inspect")
README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example_and_is_in_the_readme(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "Example: arcgap" in out or "Example:" in out
    assert f"arcgap {command}" in README


def test_registered_commands_are_the_documented_ones() -> None:
    names = {c.name for c in app.registered_commands}
    assert names == set(COMMANDS)


def test_unknown_option_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["verify", "--bogus"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == ["error: No such option: --bogus", "hint: run the command with --help for usage"]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from arcgap import __version__

    assert run(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"arcgap {__version__}"


def test_password_is_not_an_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["import", "x", "--target-password", "secret"]) == 2
    assert "No such option: --target-password" in capsys.readouterr().err
