"""The command line: the only module that prompts, prints or exits. Each command is a thin shell."""

from __future__ import annotations

import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, List, Optional

import typer

try:  # typer >= 0.22 vendors click as typer._click; older releases use click itself
    from typer._click import exceptions as click_exceptions  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on the installed typer
    from click import exceptions as click_exceptions

from arcgap import __version__
from arcgap.errors import ArcgapError, ExitCode, UsageError
from arcgap.progress import PlainReporter, Reporter, RichReporter, human_bytes

app = typer.Typer(
    name="arcgap",
    help="Carry container images across an air gap: export to one verified bundle, import on the far side.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,  # tracebacks could show local variables (passwords)
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


def _interactive() -> bool:
    return sys.stdin.isatty() and sys.stderr.isatty() and os.environ.get("CI", "") in ("", "0", "false")


def _prompt(label: str, default: str | None) -> str:
    return typer.prompt(label, default=default or "", show_default=bool(default), err=True)


def _secret_prompt(label: str) -> str:
    return getpass.getpass(f"{label}: ")


def _reporter(quiet: bool) -> Reporter:
    if quiet:
        return Reporter()
    if sys.stderr.isatty():
        return RichReporter()
    return PlainReporter()


def _read_password_stdin(flag: bool) -> str | None:
    if not flag:
        return None
    data = sys.stdin.readline().rstrip("\r\n")
    if not data:
        raise UsageError("--password-stdin given but standard input is empty", hint="pipe the password in")
    return data


def _emit(result: dict[str, Any], as_json: bool, human: Callable[[], None]) -> None:
    if as_json:
        typer.echo(json.dumps(result, indent=2, sort_keys=False))
    else:
        human()


# -- export ------------------------------------------------------------------------------------------------


@app.command("export")
def export_cmd(
    images: List[str] = typer.Argument(
        None, help="Image names (relative to the source repository) or full references."
    ),
    release: Optional[str] = typer.Option(None, "--release", help="Use a shipped image list (see manifests/)."),
    images_file: Optional[Path] = typer.Option(None, "--images", help="Image list YAML file."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Bundle file to write."),
    source_registry: Optional[str] = typer.Option(None, "--source-registry", help="[env: SOURCE_DOCKER_REGISTRY]"),
    source_repository: Optional[str] = typer.Option(
        None, "--source-repository", help="[env: SOURCE_DOCKER_REPOSITORY]"
    ),
    source_username: Optional[str] = typer.Option(None, "--source-username", help="[env: SOURCE_DOCKER_USERNAME]"),
    source_tag: Optional[str] = typer.Option(None, "--source-tag", help="[env: SOURCE_DOCKER_TAG]"),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the source password from stdin."),
    ca_file: Optional[Path] = typer.Option(None, "--source-ca-file", envvar="SOURCE_DOCKER_CA_FILE",
                                           help="CA bundle (PEM) for the source registry's TLS."),
    insecure: bool = typer.Option(False, "--source-insecure", help="HTTPS without certificate verification."),
    plain_http: bool = typer.Option(False, "--source-plain-http", help="The source speaks plain HTTP."),
    platform: Optional[str] = typer.Option(None, "--platform", help="Keep only os/arch of multi-arch images "
                                           "(changes the digest of an index tag)."),
    jobs: int = typer.Option(4, "--jobs", "-j", min=1, max=32, help="Parallel blob downloads."),
    level: int = typer.Option(3, "--level", min=1, max=22, help="zstd compression level."),
    threads: int = typer.Option(-1, "--threads", help="zstd worker threads (-1: one per CPU)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing output file."),
    no_input: bool = typer.Option(False, "--no-input", "-y", help="Never prompt; use defaults."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    """Pull a release from the source registry into one bundle file.

    Example: arcgap export --release v1.29.0_2024-04-09 -o arc.tar.zst
    """
    from arcgap.commands import run_export

    result = run_export(
        names=images or [],
        release=release,
        images_file=images_file,
        output=output,
        options={"registry": source_registry, "repository": source_repository, "username": source_username,
                 "tag": source_tag},
        password_stdin=_read_password_stdin(password_stdin),
        ca_file=ca_file, insecure=insecure, plain_http=plain_http, platform=platform,
        jobs=jobs, level=level, threads=threads, force=force,
        prompt=None if (no_input or not _interactive()) else _prompt,
        secret_prompt=None if (no_input or not _interactive()) else _secret_prompt,
        reporter=_reporter(quiet),
        warn=lambda text: typer.echo(f"warning: {text}", err=True),
    )

    def human() -> None:
        typer.echo(
            f"wrote {result.output}: {result.images} images, {result.blobs} blobs, "
            f"{human_bytes(result.content_bytes)} of content in {human_bytes(result.bundle_bytes)} "
            f"({human_bytes(result.dedupe_saved_bytes)} saved by sharing) in {result.seconds:.1f} s"
        )

    _emit(result.to_dict(), as_json, human)


# -- import ------------------------------------------------------------------------------------------------


@app.command("import")
def import_cmd(
    bundle: Path = typer.Argument(..., help="Bundle file written by 'arcgap export'."),
    target_registry: Optional[str] = typer.Option(None, "--target-registry", help="[env: TARGET_DOCKER_REGISTRY]"),
    target_repository: Optional[str] = typer.Option(None, "--target-repository",
                                                    help="[env: TARGET_DOCKER_REPOSITORY]"),
    target_username: Optional[str] = typer.Option(None, "--target-username", help="[env: TARGET_DOCKER_USERNAME]"),
    target_tag: Optional[str] = typer.Option(None, "--target-tag",
                                             help="[env: TARGET_DOCKER_TAG] default: each image's own tag"),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the target password from stdin."),
    ca_file: Optional[Path] = typer.Option(None, "--target-ca-file", envvar="TARGET_DOCKER_CA_FILE",
                                           help="CA bundle (PEM) for the target registry's TLS."),
    insecure: bool = typer.Option(False, "--target-insecure", help="HTTPS without certificate verification."),
    plain_http: bool = typer.Option(False, "--target-plain-http", help="The target speaks plain HTTP."),
    jobs: int = typer.Option(4, "--jobs", "-j", min=1, max=32, help="Parallel registry checks."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the mapping and what would move; change nothing."),
    no_input: bool = typer.Option(False, "--no-input", "-y", help="Never prompt; use defaults."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    """Verify a bundle while pushing it into the target registry; tags move only at the end.

    Example: TARGET_DOCKER_REGISTRY=10.0.0.5:5000 TARGET_DOCKER_REPOSITORY=arcdata arcgap import arc.tar.zst
    """
    from arcgap.commands import run_import

    result = run_import(
        bundle=bundle,
        options={"registry": target_registry, "repository": target_repository, "username": target_username,
                 "tag": target_tag},
        password_stdin=_read_password_stdin(password_stdin),
        ca_file=ca_file, insecure=insecure, plain_http=plain_http, jobs=jobs, dry_run=dry_run,
        prompt=None if (no_input or not _interactive()) else _prompt,
        secret_prompt=None if (no_input or not _interactive()) else _secret_prompt,
        reporter=_reporter(quiet),
    )

    def human() -> None:
        for img in result.images:
            typer.echo(f"{img['source']} → {img['target']}  {img['digest']}")
        verb = "would import" if result.dry_run else "imported"
        typer.echo(
            f"{verb} {len(result.images)} images: {result.uploaded_blobs} blobs uploaded "
            f"({human_bytes(result.uploaded_bytes)}), {result.mounted_blobs} mounted, "
            f"{result.skipped_blobs} already present; {human_bytes(result.verified_bytes)} verified "
            f"in {result.seconds:.1f} s"
        )

    _emit(result.to_dict(), as_json, human)


# -- verify / inspect ------------------------------------------------------------------------------------


@app.command("verify")
def verify_cmd(
    bundle: Path = typer.Argument(..., help="Bundle file."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    """Check every blob's size and digest and the bundle's consistency, offline.

    Example: arcgap verify arc.tar.zst
    """
    from arcgap.bundle.reader import open_bundle
    from arcgap.verify import verify_bundle

    with open_bundle(bundle) as reader:
        result = verify_bundle(reader, reporter=_reporter(quiet))
    _emit(result.to_dict(), as_json, lambda: typer.echo(
        f"{bundle}: OK: {result.images} images, {result.blobs} blobs, "
        f"{human_bytes(result.content_bytes)} verified in {result.seconds:.1f} s"))


@app.command("inspect")
def inspect_cmd(
    bundle: Path = typer.Argument(..., help="Bundle file."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
) -> None:
    """List the images, tags, digests, platforms and sizes in a bundle (reads only its table of contents).

    Example: arcgap inspect arc.tar.zst --json
    """
    from arcgap.bundle.reader import open_bundle
    from arcgap.verify import describe

    with open_bundle(bundle) as reader:
        doc = describe(reader.manifest)

    def human() -> None:
        typer.echo(f"bundle {bundle} (format {doc['format_version']}, arcgap {doc['arcgap_version']}, "
                   f"created {doc['created']})")
        typer.echo(f"source {doc['source']['registry']}/{doc['source']['repository']}")
        for img in doc["images"]:
            plats = ", ".join(p["platform"] for p in img["platforms"])
            typer.echo(f"  {img['name']}:{img['tag']}  {img['digest']}  [{plats}]")
        typer.echo(f"{len(doc['images'])} images, {doc['blobs']} blobs, {human_bytes(doc['content_bytes'])}")

    _emit(doc, as_json, human)


# -- entry point -----------------------------------------------------------------------------------------


def _fail(message: str, hint: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    if hint:
        print(f"hint: {hint}", file=sys.stderr)
    return code


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return the exit status; every expected failure becomes two lines on stderr."""
    try:
        app(args=argv, prog_name="arcgap", standalone_mode=False)
        return ExitCode.OK
    except ArcgapError as exc:
        return _fail(exc.message, exc.hint, exc.exit_code)
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        return _fail("aborted", "", ExitCode.INTERRUPTED)
    except click_exceptions.ClickException as exc:
        return _fail(exc.format_message(), "run the command with --help for usage", ExitCode.USAGE)
    except KeyboardInterrupt:
        return _fail("interrupted", "nothing was tagged; run the same command again to finish", ExitCode.INTERRUPTED)
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
