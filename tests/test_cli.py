"""The CLI surface: every command has help with an example and is documented; usage errors are two lines."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from arcgap.cli import app, run

COMMANDS = (
    "export", "import", "verify", "inspect", "keygen", "cache info", "cache clear",
    "releases", "manifests new", "wheelhouse", "login", "logout", "mirror",
    "handoff", "preflight",
)  # fmt: skip
ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
DOCS = README + "".join(p.read_text() for p in sorted((ROOT / "docs").glob("*.md")))
JSON_DOC = (ROOT / "docs" / "json.md").read_text()


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example_and_is_in_the_readme(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run([*command.split(), "--help"]) == 0
    flowing = " ".join(capsys.readouterr().out.split())  # help wraps to the terminal: compare the words
    # an example of this very command (after any VAR=value settings), not merely the word "Example:"
    assert re.search(rf"Example: (?:\S+=\S+ )*arcgap {command} ", flowing), flowing
    assert f"arcgap {command}" in README  # one example per command on the README's first page
    assert f"arcgap {command}" in DOCS


def test_registered_commands_are_the_documented_ones() -> None:
    names = {c.name for c in app.registered_commands}
    for group in app.registered_groups:
        assert group.typer_instance is not None
        names |= {f"{group.name} {c.name}" for c in group.typer_instance.registered_commands}
    assert names == set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_json_output_documented(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run([*command.split(), "--help"]) == 0
    assert "--json" in capsys.readouterr().out
    assert f"| `arcgap {command}` |" in JSON_DOC


def test_show_completion_prints_a_script(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    # typer detects the running shell; this switch (typer's own) makes it take the shell as the option's value
    monkeypatch.setenv("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", "1")
    assert run(["--show-completion", "bash"]) == 0
    out = capsys.readouterr().out
    assert "_ARCGAP_COMPLETE=complete_bash" in out and "complete -o default -F _arcgap_completion arcgap" in out
    assert run(["--show-completion", "zsh"]) == 0
    assert "#compdef arcgap" in capsys.readouterr().out


def test_completion_answers_through_the_entry_point(monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("_ARCGAP_COMPLETE", "complete_bash")
    monkeypatch.setenv("COMP_WORDS", "arcgap rel")
    monkeypatch.setenv("COMP_CWORD", "1")
    assert run([]) == 0
    assert capsys.readouterr().out.split() == ["releases"]


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


def test_help_lists_the_transfers_first() -> None:
    assert [c.name for c in app.registered_commands][:5] == ["export", "import", "mirror", "verify", "inspect"]


def test_an_error_line_stops_the_progress_bar_first(monkeypatch: pytest.MonkeyPatch) -> None:
    # A run that fails never reaches its reporter's close(); the live bar must not stay drawn over error/hint.
    import sys

    from arcgap import cli
    from arcgap.cli import common

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    reporter = common.reporter_for(quiet=False)
    reporter.start(10, images=1, label="importing")
    live = reporter._progress.live  # type: ignore[attr-defined]
    assert live.is_started
    assert cli._fail("boom", "try again", 6) == 6
    assert not live.is_started


def test_every_human_line_escapes_control_characters(capsys: pytest.CaptureFixture[str]) -> None:
    """A receipt's platform string with an OSC sequence and a line feed (issue 17) neither retitles the
    terminal nor forges an ``OK`` line: say() escapes every control character, and values from files that
    could hold a line feed are passed through safe() first."""
    from arcgap.cli.common import say
    from arcgap.util.safetext import safe

    say(f"INCOMPLETE r  {safe('linux/amd64' + chr(10) + 'OK all ready' + chr(27) + ']0;owned' + chr(7))}")
    out = capsys.readouterr().out
    assert out == "INCOMPLETE r  linux/amd64\\x0aOK all ready\\x1b]0;owned\\x07\n"
    assert "\x1b" not in out and out.count("\n") == 1


def test_an_error_line_quotes_a_bounded_excerpt(capsys: pytest.CaptureFixture[str]) -> None:
    from arcgap.cli import _fail

    assert _fail("sidecar of another bundle created " + "x" * (1 << 20), "h" * 5000, 8) == 8
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(len(line) < 1100 for line in err)
    assert err[0].endswith(f"… ({(1 << 20) + 34 - 1000} more characters)")
