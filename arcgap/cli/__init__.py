"""The command line: the only place that prompts, prints or exits. Each command is a thin shell over
arcgap.commands.

The commands live in :mod:`arcgap.cli.transfer` (export, import, mirror), :mod:`arcgap.cli.bundle` (verify,
inspect, keygen), :mod:`arcgap.cli.tools` (cache, releases, manifests, wheelhouse, login, logout) and
:mod:`arcgap.cli.handoff` (handoff, preflight); importing them registers them on the one typer ``app``
(:mod:`arcgap.cli.common`). :func:`run` turns every expected failure into ``error:`` / ``hint:`` lines and an exit
code; a registry's neutral error gets its hint there (:mod:`arcgap.cli.hints`), worded for the side whose registry
failed.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import TYPE_CHECKING

import typer

try:  # typer >= 0.22 vendors click as typer._click; older releases use click itself
    from typer._click import exceptions as click_exceptions  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on the installed typer
    from click import exceptions as click_exceptions

from arcgap.cli.common import app, stop_progress
from arcgap.cli.hints import hint_for, words
from arcgap.errors import ArcgapError, ExitCode
from arcgap.util.safetext import safe

if TYPE_CHECKING:
    from arcgap.commands.options import NetworkOptions

__all__ = ["app", "main", "run"]

# Importing a module registers its commands, and --help lists them in that order: the transfers first.
for _module in ("arcgap.cli.transfer", "arcgap.cli.bundle", "arcgap.cli.tools", "arcgap.cli.handoff"):
    importlib.import_module(_module)


MAX_LINE_CHARS = 1000  # an error line quotes at most this much of any value (a 1 MiB 'created' was echoed whole)


def _excerpt(line: str) -> str:
    if len(line) <= MAX_LINE_CHARS:
        return line
    return f"{line[:MAX_LINE_CHARS]}… ({len(line) - MAX_LINE_CHARS} more characters)"


def _fail(message: str, hint: str, code: int) -> int:
    """Exactly one ``error:`` line and one ``hint:`` line: text from a bundle or a registry is escaped."""
    stop_progress()  # a failed run never reached its reporter's close(): the bar would cover these lines
    print(f"error: {_excerpt(safe(words(message)))}", file=sys.stderr)
    if hint:
        print(f"hint: {_excerpt(safe(words(hint)))}", file=sys.stderr)
    return code


def run(argv: list[str] | None = None, *, network: NetworkOptions | None = None) -> int:
    """Run the CLI and return the exit status; every expected failure becomes two lines on stderr.

    ``network``: the run's network settings before ``--retry-budget`` / ``--stall-timeout`` apply (None: the
    defaults); how a caller in the same process (a fault test) gives a quick retry pacing, a small upload chunk,
    the range settings of large blob reads or how large a blob an import holds, without patching globals."""
    try:
        app(args=argv, prog_name="arcgap", standalone_mode=False, obj=network)
        return ExitCode.OK
    except ArcgapError as exc:
        return _fail(exc.message, hint_for(exc), exc.exit_code)
    except typer.Exit as exc:
        return exc.exit_code
    except SystemExit as exc:  # typer's --show-completion/--install-completion and shell completion exit here
        if isinstance(exc.code, int) or exc.code is None:
            return exc.code or ExitCode.OK
        print(exc.code, file=sys.stderr)
        return ExitCode.INTERNAL
    except typer.Abort:
        return _fail("aborted", "", ExitCode.INTERRUPTED)
    except click_exceptions.ClickException as exc:
        return _fail(exc.format_message(), "run the command with --help for usage", ExitCode.USAGE)
    except KeyboardInterrupt:
        return _fail("interrupted", "tags move last, each only once its image is complete; "
                     "run the same command again to finish", ExitCode.INTERRUPTED)
    except BrokenPipeError:
        return ExitCode.OK
    except Exception as exc:  # a bug: say so in one line; the traceback only on request (never locals)
        if os.environ.get("ARCGAP_DEBUG"):
            raise
        return _fail(f"internal error: {type(exc).__name__}: {exc}",
                     "this is a bug in arcgap; rerun with ARCGAP_DEBUG=1 for the traceback and report it",
                     ExitCode.INTERNAL)


def main() -> None:
    sys.exit(run())
