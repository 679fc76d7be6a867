"""What every command module of the CLI shares: the typer app, prompts, progress, warnings, output, the common
option declarations, and the builders that turn a command's parameters into its options objects, once."""

from __future__ import annotations

import getpass
import json
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

import typer

try:  # typer >= 0.22 vendors click as typer._click; older releases use click itself
    from typer._click.globals import get_current_context  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on the installed typer
    from click import get_current_context

from arcgap import __version__
from arcgap.cli.hints import words
from arcgap.errors import UsageError
from arcgap.registry.defaults import (
    DEFAULT_MIN_BYTES_PER_S,
    DEFAULT_RETRY_BUDGET_S,
    DEFAULT_STALL_S,
    MAX_RETRY_AFTER_S,
)
from arcgap.util.progress import PlainReporter, Reporter, RichReporter
from arcgap.util.secret import Secret

if TYPE_CHECKING:
    from arcgap.commands.options import RunContext, SourceOptions, TargetOptions
from arcgap.util.safetext import safe, safe_lines

app = typer.Typer(
    name="arcgap",
    help="Carry container images across an air gap: export to one verified bundle, import on the far side.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,  # tracebacks could show local variables (passwords)
    rich_markup_mode=None,  # help texts such as "[env: SOURCE_DOCKER_TAG]" are literal, not markup
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"arcgap {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    """arcgap moves a release of container images from a connected registry to an isolated one."""


def interactive() -> bool:
    return sys.stdin.isatty() and sys.stderr.isatty() and os.environ.get("CI", "") in ("", "0", "false")


def prompt(label: str, default: str | None) -> str:
    return typer.prompt(label, default=default or "", show_default=bool(default), err=True)


def secret_prompt(label: str) -> str:
    return getpass.getpass(f"{label}: ")


def warn(text: str) -> None:
    """The one way a warning reaches the user: ``warning: …`` on stderr, with or without --quiet."""
    typer.echo(f"warning: {safe(words(text))}", err=True)


class QuietReporter(Reporter):
    """--quiet: no progress (phases, per-image lines, byte counts), but warnings still print (README, "Output")."""

    def warn(self, text: str) -> None:
        warn(text)


class _WordedRich(RichReporter):
    def warn(self, text: str) -> None:
        super().warn(words(text))


class _WordedPlain(PlainReporter):
    def warn(self, text: str) -> None:
        super().warn(words(text))


_LIVE: list[Reporter] = []  # progress bars drawn on the terminal: stopped before an error line is printed


def reporter_for(quiet: bool) -> Reporter:
    """Progress for this run; every reporter prints warnings on stderr (a bar keeps them above itself)."""
    if quiet:
        return QuietReporter()
    if sys.stderr.isatty():
        reporter = _WordedRich()  # a warning from below names settings as data: spelled here
        _LIVE.append(reporter)
        return reporter
    return _WordedPlain()


def stop_progress() -> None:
    """Stop every live progress bar, so that the ``error:``/``hint:`` lines that follow stand on their own."""
    while _LIVE:
        _LIVE.pop().close()


def read_password_stdin(flag: bool) -> str | None:
    if not flag:
        return None
    data = sys.stdin.readline().rstrip("\r\n")
    if not data:
        raise UsageError("--password-stdin given but standard input is empty", hint="pipe the password in")
    return data


def say(text: object, *, err: bool = False) -> None:
    """Every human line arcgap prints: control and format characters escaped (a value from a receipt, a bundle
    or a registry can neither forge a line's content with an escape sequence nor retitle the terminal)."""
    typer.echo(safe_lines(text), err=err)


def emit(result: dict[str, Any], as_json: bool, human: Callable[[], None]) -> None:
    if as_json:
        typer.echo(json.dumps(result, indent=2, sort_keys=False))
    else:
        human()


def run_context(*, no_input: bool, quiet: bool = False, retry_budget: float | None = None,
                stall_timeout: float | None = None) -> RunContext:
    """Prompts only on a terminal and without ``--no-input``; the reporter of ``--quiet`` or not; the retry
    budget and stall window of the commands that have those options (None: the run's, which
    :func:`arcgap.cli.run` may be given, else the defaults)."""
    from arcgap.commands.options import NetworkOptions, RunContext

    asking = not no_input and interactive()
    ctx = get_current_context(silent=True)
    given = ctx.find_root().obj if ctx is not None else None
    network = given if isinstance(given, NetworkOptions) else NetworkOptions()
    if retry_budget is not None:
        network = replace(network, retry_budget_s=retry_budget)
    if stall_timeout is not None:
        network = replace(network, stall_s=stall_timeout)
    return RunContext(prompt=prompt if asking else None, secret_prompt=secret_prompt if asking else None,
                      reporter=reporter_for(quiet), network=network)


def _password(from_stdin: bool) -> Secret | None:
    text = read_password_stdin(from_stdin)
    return None if text is None else Secret(text)


def source_options(
    *, registry: Optional[str], repository: Optional[str], username: Optional[str], tag: Optional[str] = None,
    password_stdin: bool, ca_file: Optional[Path], insecure: bool, plain_http: bool,
) -> SourceOptions:
    """The source side as given; with ``password_stdin`` the first line of stdin is read now."""
    from arcgap.commands.options import SourceOptions

    return SourceOptions(registry=registry, repository=repository, username=username, tag=tag,
                         password=_password(password_stdin), ca_file=ca_file, insecure=insecure,
                         plain_http=plain_http)


def target_options(
    *, registry: Optional[str], repository: Optional[str], username: Optional[str], tag: Optional[str],
    password_stdin: bool, ca_file: Optional[Path], insecure: bool, plain_http: bool,
) -> TargetOptions:
    """The target side as given; with ``password_stdin`` the next line of stdin is read now."""
    from arcgap.commands.options import TargetOptions

    return TargetOptions(registry=registry, repository=repository, username=username, tag=tag,
                         password=_password(password_stdin), ca_file=ca_file, insecure=insecure,
                         plain_http=plain_http)


NO_INPUT_OPTION = typer.Option(False, "--no-input", "-y", help="Never prompt; use defaults.")
JSON_OPTION = typer.Option(False, "--json", help="Print the result as JSON on stdout.")
ACCEPT_PARTIAL_SIGNATURE_OPTION = typer.Option(
    False, "--accept-partial-signature", help="With --verify-key, accept a bundle of an older format (before 3) "
    "whose signature covers arcgap.yaml only, not oci-layout, index.json and manifest.json.")
QUIET_OPTION = typer.Option(False, "--quiet", "-q", help="No progress output.")
RETRY_BUDGET_OPTION = typer.Option(
    DEFAULT_RETRY_BUDGET_S, "--retry-budget", metavar="SECONDS", min=0.0,
    help="How long one registry request keeps being retried after 429, 5xx or a lost connection (waits with "
         f"jitter, Retry-After honoured up to {MAX_RETRY_AFTER_S:.0f} s); a throttling registry also gets fewer "
         "requests at once.")
STALL_TIMEOUT_OPTION = typer.Option(
    DEFAULT_STALL_S, "--stall-timeout", metavar="SECONDS", min=1.0,
    help=f"A transfer that moves less than {DEFAULT_MIN_BYTES_PER_S // 1024} KiB/s for this long (a stall or a "
         "trickle) is dropped and resumed from the bytes already held.")

# The five values of each side (seed procedure: SOURCE_/TARGET_DOCKER_*; the password is never an option) and
# the transport of each side, shared by every command that talks to that side.
@dataclass(frozen=True)
class SideParameters:
    """The typer declarations of one side's options (each command spells its parameters out with these)."""

    registry: Any
    repository: Any
    username: Any
    tag: Any
    ca_file: Any
    insecure: Any
    plain_http: Any


def _side(side: str, *, tag_note: str = "") -> SideParameters:
    env = f"{side.upper()}_DOCKER"

    def value(name: str, note: str = "") -> Any:
        return typer.Option(None, f"--{side}-{name}", help=f"[env: {env}_{name.upper()}]{note}")

    return SideParameters(
        registry=value("registry"), repository=value("repository"), username=value("username"),
        tag=value("tag", tag_note),
        ca_file=typer.Option(None, f"--{side}-ca-file", envvar=f"{env}_CA_FILE",
                             help=f"CA bundle (PEM) for the {side} registry's TLS."),
        insecure=typer.Option(False, f"--{side}-insecure",
                              help=f"{side.capitalize()}: HTTPS without certificate verification."),
        plain_http=typer.Option(False, f"--{side}-plain-http", help=f"The {side} speaks plain HTTP."),
    )


SOURCE = _side("source")
TARGET = _side("target", tag_note=" default: each image's own tag")
SOURCE_PASSWORD_STDIN_OPTION = typer.Option(False, "--password-stdin", help="Read the source password from stdin.")

# What to copy: export and mirror take the same three ways of naming images.
IMAGES_ARGUMENT = typer.Argument(None, help="Image names (relative to the source repository) or full references.")
RELEASE_OPTION = typer.Option(None, "--release", help="A release tag: its images as the source's catalog has "
                              "them (else its shipped list, see manifests/); 'latest': the newest release tag at "
                              "the source.")
IMAGES_FILE_OPTION = typer.Option(None, "--images", help="Image list YAML file.")
DRY_RUN_OPTION = typer.Option(False, "--dry-run", help="Show the mapping and what would move; change nothing.")

