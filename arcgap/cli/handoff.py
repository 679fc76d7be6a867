"""The commands of the month's last steps on the isolated side: handoff (what the data controller needs to pull
from the private registry) and preflight (is every image of the release really at the target)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from arcgap.cli.common import (
    JSON_OPTION,
    NO_INPUT_OPTION,
    TARGET,
    app,
    emit,
    run_context,
    say,
    target_options,
)
from arcgap.errors import NotFoundError, TargetMismatchError, UsageError
from arcgap.util.parallel import DEFAULT_JOBS
from arcgap.util.safetext import safe

if TYPE_CHECKING:
    from arcgap.commands.options import RunContext
    from arcgap.commands.settings import Endpoint
    from arcgap.transfer.receipt import Receipt

RELEASE_HELP = ("The release (its tag at the target): in a receipt or bundle holding several, which one "
                "(default: the newest).")


@app.command("handoff")
def handoff_cmd(
    receipt: Optional[Path] = typer.Option(None, "--receipt", help="The import receipt of the release (or a "
                                           "bundle, or an image list): which images, at which target."),
    bundle: Optional[Path] = typer.Option(None, "--bundle", help="The bundle instead of a receipt (only its "
                                          "arcgap.yaml is read)."),
    release: Optional[str] = typer.Option(None, "--release", help=RELEASE_HELP),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Directory to write (default: "
                                          "./arc-handoff-<tag>)."),
    target_registry: Optional[str] = TARGET.registry,
    target_repository: Optional[str] = TARGET.repository,
    target_username: Optional[str] = TARGET.username,
    target_tag: Optional[str] = TARGET.tag,
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the target password from stdin."),
    secret_name: str = typer.Option("arc-private-registry", "--secret-name", help="Name of the pull secret "
                                    "(spec.credentials.dockerRegistry)."),
    namespace: Optional[str] = typer.Option(None, "--namespace", help="Write this namespace into the pull secret "
                                            "(default: none; kubectl apply -n NAMESPACE)."),
    pull_policy: str = typer.Option("Always", "--image-pull-policy", help="spec.docker.imagePullPolicy: Always "
                                    "(Microsoft's default), IfNotPresent or Never."),
    secret_stdout: bool = typer.Option(False, "--secret-stdout", help="Print the pull secret on stdout instead "
                                       "of writing it (for kubectl apply -f -); no file holds the password."),
    no_secret: bool = typer.Option(False, "--no-secret", help="Write no pull secret and ask for no password."),
    force: bool = typer.Option(False, "--force", help="Replace the files of an earlier hand-off in --output."),
    no_input: bool = NO_INPUT_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Write what the Arc data controller needs to pull the release from the private registry: deployment-profile
    values, the pull secret (0600), the Arc data services extension settings. Needs no network.

    Example: arcgap handoff --receipt arcgap-receipt-arc-20260102T101500Z.yaml -o arc-handoff
    """
    from arcgap.commands.handoff import HandoffOptions, run_handoff

    if receipt is not None and bundle is not None:
        raise UsageError("give --receipt or --bundle, not both")
    if secret_stdout and (as_json or no_secret):
        raise UsageError("--secret-stdout prints the secret on stdout: it combines with neither --json nor "
                         "--no-secret")
    options = HandoffOptions(source=receipt or bundle, release=release, output=output, secret_name=secret_name,
                             pull_policy=pull_policy, namespace=namespace, secret_to_stdout=secret_stdout,
                             no_secret=no_secret, force=force)
    target = target_options(registry=target_registry, repository=target_repository, username=target_username,
                            tag=target_tag, password_stdin=password_stdin, ca_file=None, insecure=False,
                            plain_http=False)
    result = run_handoff(target, options, run_context(no_input=no_input))
    if result.secret_yaml is not None:
        sys.stdout.write(result.secret_yaml.decode())
        sys.stdout.flush()

    def human() -> None:
        h = result.handoff
        where = f"{result.directory}: " if result.directory is not None else ""
        say(f"hand-off for {h.registry}/{h.repository}, release {h.tag}: {where}"
                   + ", ".join(result.files), err=secret_stdout)
        if result.secret_files:
            say(f"secret files (0600, hold the password): {', '.join(result.secret_files)}",
                       err=secret_stdout)
        if result.directory is not None:
            say(f"next: {result.directory / 'NEXT-STEPS.md'}", err=secret_stdout)

    emit(result.to_dict(), as_json, human)


@app.command("preflight")
def preflight_cmd(
    source: Optional[Path] = typer.Argument(None, help="What the target should hold: a bundle (or its part or "
                                            "NAME.parts.yaml), an import receipt or an image list."),
    release: Optional[str] = typer.Option(None, "--release", help="Only this release's images; without SOURCE, "
                                          "the shipped image list of this release (presence only)."),
    target_registry: Optional[str] = TARGET.registry,
    target_repository: Optional[str] = TARGET.repository,
    target_username: Optional[str] = TARGET.username,
    target_tag: Optional[str] = TARGET.tag,
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the target password from stdin."),
    ca_file: Optional[Path] = TARGET.ca_file,
    insecure: bool = TARGET.insecure,
    plain_http: bool = TARGET.plain_http,
    blobs: bool = typer.Option(False, "--blobs", help="Also HEAD every config and layer of every platform."),
    jobs: int = typer.Option(DEFAULT_JOBS, "--jobs", "-j", min=1, max=32, help="Images checked in parallel."),
    no_input: bool = NO_INPUT_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Check, before deploying, that every image of the release is at the target under its reference, at its
    digest, every platform of an index included. Only the target is contacted. Exit 4: something is missing;
    exit 10: a tag points at another digest.

    Example: arcgap preflight arcgap-receipt-arc-20260102T101500Z.yaml
    """
    from arcgap.commands.handoff import PreflightOptions, run_preflight
    from arcgap.transfer.preflight import DIFFERENT, INCOMPLETE, MISSING

    target = target_options(registry=target_registry, repository=target_repository, username=target_username,
                            tag=target_tag, password_stdin=password_stdin, ca_file=ca_file, insecure=insecure,
                            plain_http=plain_http)
    result = run_preflight(target, PreflightOptions(source=source, release=release, jobs=jobs, blobs=blobs),
                           run_context(no_input=no_input))
    registry = result.registry

    def human() -> None:
        for check in result.checks:
            ref = check.expected.reference(registry)
            if check.status == MISSING:
                say(f"MISSING    {safe(ref)}")
            elif check.status == DIFFERENT:
                say(f"DIFFERENT  {safe(ref)}  is {safe(check.found)}, expected {check.expected.digest}")
            elif check.status == INCOMPLETE:
                for problem in check.problems:
                    say(f"INCOMPLETE {safe(ref)}  {safe(problem)}")
        unverified = result.count("present")
        note = f" ({unverified} by presence only: the input names no digests)" if unverified else ""
        say(f"{len(result.checks) - len(result.failed)} of {len(result.checks)} images ready at "
                   f"{registry}/{result.repository}{note} in {result.seconds:.1f} s")

    emit(result.to_dict(), as_json, human)
    if result.ok:
        return
    missing, different, incomplete = result.count(MISSING), result.count(DIFFERENT), result.count(INCOMPLETE)
    parts = [f"{n} {what}" for n, what in ((missing, "missing"), (different, "at another digest"),
                                            (incomplete, "incomplete")) if n]
    first = result.failed[0].expected.reference(registry)
    message = (f"preflight: {len(result.failed)} of {len(result.checks)} images are not ready at "
               f"{registry}/{result.repository} ({', '.join(parts)}; first: {first})")
    hint = "import the release's bundle again (tags already right are left alone), then run preflight again"
    if different:
        raise TargetMismatchError(message, hint=hint)
    raise NotFoundError(message, hint=hint)


def import_handoff(directory: Path, *, engine: str, dry_run: bool, context: RunContext,
                   done: list[dict[str, Any]]) -> Callable[[Endpoint, Receipt], None] | None:
    """For ``import --handoff DIR``: the directory is checked before the import; the hand-off is written after
    the receipt (nothing with --dry-run, as for the receipt). ``done`` receives the hand-off's JSON."""
    from arcgap.commands.endpoints import through_docker
    from arcgap.commands.handoff import check_handoff_dir, handoff_after_import

    if through_docker(engine):
        raise UsageError("--handoff needs the default engine (--engine docker writes no receipt)",
                         hint="after the import run 'arcgap handoff --release TAG' with the target's values")
    if dry_run:
        return None
    check_handoff_dir(directory, force=False)

    def after(endpoint: Endpoint, receipt: Receipt) -> None:
        done.append(handoff_after_import(directory, endpoint, receipt, context).to_dict())

    return after
