"""The commands that move images: export, import and mirror."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, List, Optional

import typer

from arcgap.cli.common import (
    ACCEPT_PARTIAL_SIGNATURE_OPTION,
    DRY_RUN_OPTION,
    IMAGES_ARGUMENT,
    IMAGES_FILE_OPTION,
    JSON_OPTION,
    NO_INPUT_OPTION,
    QUIET_OPTION,
    RELEASE_OPTION,
    RETRY_BUDGET_OPTION,
    SOURCE,
    SOURCE_PASSWORD_STDIN_OPTION,
    STALL_TIMEOUT_OPTION,
    TARGET,
    app,
    emit,
    run_context,
    say,
    source_options,
    target_options,
    warn,
)
from arcgap.util.parallel import DEFAULT_JOBS
from arcgap.util.progress import human_bytes
from arcgap.util.safetext import safe

if TYPE_CHECKING:
    from arcgap.installer.wheelhouse import Target

# -- export ------------------------------------------------------------------------------------------------


@app.command("export")
def export_cmd(
    images: List[str] = IMAGES_ARGUMENT,
    release: Optional[List[str]] = typer.Option(
        None, "--release", help="A release tag: its images as the source's catalog has them (else its shipped "
        "list, see manifests/); 'latest': the newest release tag at the source. Repeat it for several releases "
        "in one bundle."),
    from_release: Optional[str] = typer.Option(
        None, "--from-release", metavar="TAG", help="An upgrade chain: every release after TAG (the one the site "
        "runs) up to --to-release or the newest at the source, in one bundle. Repeated --release: a given set."),
    to_release: Optional[str] = typer.Option(None, "--to-release", metavar="TAG",
                                             help="The newest release of a --from-release chain."),
    images_file: Optional[Path] = IMAGES_FILE_OPTION,
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Bundle file (or, with --format "
                                          "oci-layout, the directory) to write."),
    output_format: str = typer.Option("bundle", "--format", help="bundle (default: one zstd file with arcgap.yaml, "
                                      "for 'arcgap import') or oci-layout (an OCI image layout directory for "
                                      "skopeo, crane or oras; images named NAME:TAG)."),
    source_registry: Optional[str] = SOURCE.registry,
    source_repository: Optional[str] = SOURCE.repository,
    source_username: Optional[str] = SOURCE.username,
    source_tag: Optional[str] = SOURCE.tag,
    password_stdin: bool = SOURCE_PASSWORD_STDIN_OPTION,
    ca_file: Optional[Path] = SOURCE.ca_file,
    insecure: bool = SOURCE.insecure,
    plain_http: bool = SOURCE.plain_http,
    platform: Optional[str] = typer.Option(None, "--platform", help="Keep only os/arch of multi-arch images "
                                           "(changes the digest of an index tag)."),
    jobs: int = typer.Option(DEFAULT_JOBS, "--jobs", "-j", min=1, max=32, help="Parallel blob downloads."),
    level: int = typer.Option(3, "--level", min=1, max=22, help="zstd compression level."),
    threads: int = typer.Option(-1, "--threads", help="zstd worker threads (-1: one per CPU)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing output file."),
    split_size: Optional[str] = typer.Option(
        None, "--split-size", metavar="SIZE", help="Write NAME.001, NAME.002, … of at most SIZE each: fat32 "
        "(4 GiB − 1), dvd (4.7 GB), bd25 (25 GB), or a number with a unit: 700MB, 4GiB (KB/MB/GB/TB or KiB/MiB/…)."),
    no_space_check: bool = typer.Option(False, "--no-space-check",
                                        help="Write even when the output directory looks too small for the bundle."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Blob cache directory "
                                             "(default: $XDG_CACHE_HOME/arcgap or ~/.cache/arcgap)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Neither read nor fill the blob cache."),
    since: Optional[List[Path]] = typer.Option(
        None, "--since", help="Leave out blobs the far side holds: an earlier bundle, its NAME.parts.yaml, or an "
        "import receipt (repeatable)."),
    sign: Optional[Path] = typer.Option(None, "--sign", help="Sign arcgap.yaml with this Ed25519 private key "
                                        "(NAME.key from 'arcgap keygen'; passphrase from ARCGAP_KEY_PASSPHRASE)."),
    cache_max_size: str = typer.Option("20GiB", "--cache-max-size", help="Cap of the blob cache; least "
                                       "recently used blobs go after the export (KB/MB/GB or KiB/MiB/GiB)."),
    skip_missing: bool = typer.Option(False, "--skip-missing", help="Export the images the source has at the tag "
                                      "and record the missing ones in the bundle (default: name them and stop)."),
    with_installer: bool = typer.Option(False, "--with-installer", help="Also write NAME.installer/: arcgap and "
                                        "its dependencies as wheels, install.sh and SHA256SUMS, for the far side."),
    installer_platform: Optional[List[str]] = typer.Option(
        None, "--installer-platform", help="Wheels for manylinux2014_x86_64 or manylinux2014_aarch64 (repeatable; "
        "default: this machine). Implies --with-installer."),
    installer_python: Optional[List[str]] = typer.Option(
        None, "--installer-python", help="Wheels for CPython 3.9 … 3.13 (repeatable; default: this Python). "
        "Implies --with-installer."),
    engine: str = typer.Option("registry", "--engine", help="registry (default: OCI Distribution API, every "
                               "digest kept) or docker (the local engine pulls, docker save is converted; "
                               "DOCKER_HOST)."),
    from_local: bool = typer.Option(False, "--from-local", help="With --engine docker: export images the local "
                                    "engine holds, named as arguments (e.g. myapp:dev); nothing is pulled."),
    no_referrers: bool = typer.Option(False, "--no-referrers", help="Leave out the images' OCI referrers "
                                      "(signatures, SBOMs, attestations; carried by default)."),
    referrers_type: Optional[List[str]] = typer.Option(
        None, "--referrers-type", metavar="TYPE", help="Carry only referrers of this artifactType (repeatable); "
        "legacy cosign tags are always carried."),
    no_input: bool = NO_INPUT_OPTION,
    as_json: bool = JSON_OPTION,
    quiet: bool = QUIET_OPTION,
    retry_budget: float = RETRY_BUDGET_OPTION,
    stall_timeout: float = STALL_TIMEOUT_OPTION,
) -> None:
    """Pull a release from the source registry into one bundle file.

    Example: arcgap export --release v1.29.0_2024-04-09 -o arc.tar.zst

    Upgrade chain: arcgap export --from-release v1.39.0_2025-05-13 -o up.tar.zst
    """
    from arcgap.commands.endpoints import check_engine, check_format, run_export
    from arcgap.commands.options import ExportOptions, Selection
    from arcgap.transfer.cache import parse_cache_size

    installer_targets: list[Target] = []
    if with_installer or installer_platform or installer_python:  # packaging is imported only then (~15 ms)
        from arcgap.installer.wheelhouse import foreign_host_warning, targets_for

        installer_targets = targets_for(installer_platform or [], installer_python or [])
        note = foreign_host_warning(installer_targets)
        if note:
            warn(note)
    options = ExportOptions(
        selection=Selection(names=tuple(images or ()), release=release[0] if len(release or ()) == 1 else None,
                            images_file=images_file),
        releases=tuple(release or ()) if len(release or ()) > 1 else (), from_release=from_release,
        to_release=to_release,
        output=output, platform=platform, jobs=jobs, level=level, threads=threads, force=force,
        split_size=split_size, space_check=not no_space_check, cache_dir=cache_dir, use_cache=not no_cache,
        cache_max_bytes=parse_cache_size(cache_max_size), since=tuple(since or ()), sign_key=sign,
        skip_missing=skip_missing, installer_targets=tuple(installer_targets), engine=check_engine(engine),
        output_format=check_format(output_format), from_local=from_local, referrers=not no_referrers,
        referrers_types=tuple(referrers_type or ()),
    )
    source = source_options(registry=source_registry, repository=source_repository, username=source_username,
                            tag=source_tag, password_stdin=password_stdin, ca_file=ca_file, insecure=insecure,
                            plain_http=plain_http)
    result = run_export(source, options, run_context(
        no_input=no_input, quiet=quiet, retry_budget=retry_budget, stall_timeout=stall_timeout))

    def human() -> None:
        say(
            f"wrote {result.output}: {result.images} images, {result.blobs} blobs, "
            f"{human_bytes(result.content_bytes)} of content in {human_bytes(result.bundle_bytes)} "
            f"({human_bytes(result.dedupe_saved_bytes)} saved by sharing) in {result.seconds:.1f} s"
        )
        if len(result.parts) > 1 or (result.parts and result.parts[0] != str(result.output)):
            say(f"in {len(result.parts)} parts: {Path(result.parts[0]).name} … {Path(result.parts[-1]).name}; "
                       f"carry {result.sidecar} with them (sizes and sha256 of every part)")
        if result.cache and result.cache["hits"]:
            say(f"{result.cache['hits']} blobs ({human_bytes(result.cache['hit_bytes'])}) "
                       "came from the blob cache")
        if result.relies_on:
            say(f"differential: {result.relied_on_blobs} blobs ({human_bytes(result.relied_on_bytes)}) "
                       f"left out; the target must hold them from {', '.join(result.relies_on)}")
        if result.chain:
            ch = result.chain
            say(f"{len(ch['releases'])} releases, oldest first: "
                       + ", ".join(r["tag"] for r in ch["releases"])
                       + f"; one bundle per release would carry {human_bytes(ch['separate_bytes'])}, this one "
                       f"carries {human_bytes(ch['carried_bytes'])} ({human_bytes(ch['saved_bytes'])} saved by "
                       "sharing across releases)")
        if result.signed_by:
            say(f"signed by {result.signed_by}")
        if result.referrers and result.referrers["referrers"]:
            how = ", ".join(f"{n} by {k}" for k, n in sorted(result.referrers["found_by"].items()))
            say(f"{result.referrers['referrers']} referrers (signatures, SBOMs, attestations): {how}")
        if result.skipped_images:
            say(f"skipped {len(result.skipped_images)} images not at the source (listed in arcgap.yaml): "
                       + ", ".join(s["name"] for s in result.skipped_images))
        if result.installer:
            inst = result.installer
            say(f"installer {inst['directory']}: {len(inst['files'])} files "
                       f"({human_bytes(inst['total_bytes'])}) for "
                       + ", ".join(t["label"] for t in inst["targets"])
                       + f"; on the far side: sh {inst['install_script']}")

    emit(result.to_dict(), as_json, human)


# -- import ------------------------------------------------------------------------------------------------


@app.command("import")
def import_cmd(
    bundle: Path = typer.Argument(..., help="Bundle file written by 'arcgap export', one of its parts (NAME.003) "
                                  "or its NAME.parts.yaml."),
    target_registry: Optional[str] = TARGET.registry,
    target_repository: Optional[str] = TARGET.repository,
    target_username: Optional[str] = TARGET.username,
    target_tag: Optional[str] = TARGET.tag,
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the target password from stdin."),
    ca_file: Optional[Path] = TARGET.ca_file,
    insecure: bool = TARGET.insecure,
    plain_http: bool = TARGET.plain_http,
    jobs: int = typer.Option(DEFAULT_JOBS, "--jobs", "-j", min=1, max=32, help="Parallel registry checks."),
    dry_run: bool = DRY_RUN_OPTION,
    verify_key: Optional[Path] = typer.Option(None, "--verify-key", help="Refuse the bundle unless this Ed25519 "
                                              "public key (NAME.pub) signed it; checked before any push."),
    accept_partial_signature: bool = ACCEPT_PARTIAL_SIGNATURE_OPTION,
    receipt: Optional[Path] = typer.Option(None, "--receipt", help="Where to write the import receipt (default: "
                                           "./arcgap-receipt-<bundle>-<UTC time>.yaml)."),
    handoff: Optional[Path] = typer.Option(None, "--handoff", help="After the import, write the data controller's "
                                           "hand-off (profile values, pull secret 0600, extension settings) into "
                                           "this directory; see 'arcgap handoff'."),
    engine: str = typer.Option("registry", "--engine", help="registry (default: OCI Distribution API, every "
                               "digest kept) or docker (docker load + push through the local engine, DOCKER_HOST; "
                               "digests may change)."),
    no_input: bool = NO_INPUT_OPTION,
    as_json: bool = JSON_OPTION,
    quiet: bool = QUIET_OPTION,
    retry_budget: float = RETRY_BUDGET_OPTION,
    stall_timeout: float = STALL_TIMEOUT_OPTION,
) -> None:
    """Verify a bundle while pushing it into the target registry; tags move only at the end.

    Example: TARGET_DOCKER_REGISTRY=10.0.0.5:5000 TARGET_DOCKER_REPOSITORY=arcdata arcgap import arc.tar.zst
    """
    from arcgap.commands.endpoints import check_engine, run_import, through_docker
    from arcgap.commands.options import ImportOptions

    options = ImportOptions(bundle=bundle, jobs=jobs, dry_run=dry_run, verify_key=verify_key,
                            accept_partial_signature=accept_partial_signature, receipt=receipt,
                            engine=check_engine(engine))
    target = target_options(registry=target_registry, repository=target_repository, username=target_username,
                            tag=target_tag, password_stdin=password_stdin, ca_file=ca_file, insecure=insecure,
                            plain_http=plain_http)
    context = run_context(
        no_input=no_input, quiet=quiet, retry_budget=retry_budget, stall_timeout=stall_timeout)
    handed: list[dict[str, Any]] = []  # the hand-off's JSON, once written
    after_import = None
    if handoff is not None:
        from arcgap.cli.handoff import import_handoff

        after_import = import_handoff(handoff, engine=engine, dry_run=dry_run, context=context, done=handed)
    result = run_import(target, options, context, after_import=after_import)

    def human() -> None:
        for img in result.images:
            say(safe(f"{img['source']} → {img['target']}  {img['digest']}  {img['action']}"))
        if through_docker(engine):
            changed = result.to_dict()["digests_changed"]
            say(f"imported {len(result.images)} images through the Docker engine: "
                       f"{human_bytes(result.verified_bytes)} verified in {result.seconds:.1f} s; "
                       f"{changed} digests differ from the bundle's (see --json)")
            return
        verb = "would import" if result.dry_run else "imported"
        say(
            f"{verb} {len(result.images)} images: {result.uploaded_blobs} blobs uploaded "
            f"({human_bytes(result.uploaded_bytes)}), {result.mounted_blobs} mounted, "
            f"{result.skipped_blobs} already present; {human_bytes(result.verified_bytes)} verified "
            f"in {result.seconds:.1f} s"
        )
        if result.skipped_tags:
            say(f"{result.skipped_tags} tags already pointed at their digest and were left alone")
        if result.referrers and result.referrers["target_api"] is not None:
            say(referrers_line(result.referrers))
        if result.receipt_file is not None:
            say(f"receipt: {safe(result.receipt_file)}")
        for h in handed:
            say(f"hand-off: {h['directory']} (release {h['tag']}; next: {h['directory']}/NEXT-STEPS.md)")

    emit({**result.to_dict(), **({"handoff": handed[0]} if handed else {})}, as_json, human)


# -- mirror ------------------------------------------------------------------------------------------------


@app.command("mirror")
def mirror_cmd(
    images: List[str] = IMAGES_ARGUMENT,
    release: Optional[str] = RELEASE_OPTION,
    images_file: Optional[Path] = IMAGES_FILE_OPTION,
    source_registry: Optional[str] = SOURCE.registry,
    source_repository: Optional[str] = SOURCE.repository,
    source_username: Optional[str] = SOURCE.username,
    source_tag: Optional[str] = SOURCE.tag,
    source_password_stdin: bool = typer.Option(
        False, "--source-password-stdin", help="Read the source password from the first line of stdin."),
    source_ca_file: Optional[Path] = SOURCE.ca_file,
    source_insecure: bool = SOURCE.insecure,
    source_plain_http: bool = SOURCE.plain_http,
    target_registry: Optional[str] = TARGET.registry,
    target_repository: Optional[str] = TARGET.repository,
    target_username: Optional[str] = TARGET.username,
    target_tag: Optional[str] = TARGET.tag,
    target_password_stdin: bool = typer.Option(
        False, "--target-password-stdin", help="Read the target password from stdin (the second line when "
        "--source-password-stdin is also given)."),
    target_ca_file: Optional[Path] = TARGET.ca_file,
    target_insecure: bool = TARGET.insecure,
    target_plain_http: bool = TARGET.plain_http,
    jobs: int = typer.Option(DEFAULT_JOBS, "--jobs", "-j", min=1, max=32, help="Parallel blob copies."),
    dry_run: bool = DRY_RUN_OPTION,
    no_input: bool = NO_INPUT_OPTION,
    as_json: bool = JSON_OPTION,
    quiet: bool = QUIET_OPTION,
    retry_budget: float = RETRY_BUDGET_OPTION,
    stall_timeout: float = STALL_TIMEOUT_OPTION,
) -> None:
    """Copy a release straight from the source registry to the target, no bundle; tags move only at the end.

    Example: arcgap mirror --release latest --target-registry 10.0.0.5:5000 --target-repository arcdata
    """
    from arcgap.commands.endpoints import run_mirror
    from arcgap.commands.options import MirrorOptions, Selection

    options = MirrorOptions(selection=Selection(names=tuple(images or ()), release=release, images_file=images_file),
                            jobs=jobs, dry_run=dry_run)
    # The source password is the first line of stdin, the target's the next: built in this order.
    source = source_options(registry=source_registry, repository=source_repository, username=source_username,
                            tag=source_tag, password_stdin=source_password_stdin, ca_file=source_ca_file,
                            insecure=source_insecure, plain_http=source_plain_http)
    target = target_options(registry=target_registry, repository=target_repository, username=target_username,
                            tag=target_tag, password_stdin=target_password_stdin, ca_file=target_ca_file,
                            insecure=target_insecure, plain_http=target_plain_http)
    result = run_mirror(source, target, options, run_context(
        no_input=no_input, quiet=quiet, retry_budget=retry_budget, stall_timeout=stall_timeout))

    def human() -> None:
        for img in result.images:
            say(safe(f"{img['source']} → {img['target']}  {img['digest']}  {img['action']}"))
        if result.dry_run:
            say(
                f"would mirror {len(result.images)} images from {result.source} to {result.target}: "
                f"{human_bytes(result.missing_bytes)} to copy, {human_bytes(result.present_bytes)} of "
                f"{human_bytes(result.content_bytes)} already at the target; nothing changed")
            return
        say(
            f"mirrored {len(result.images)} images: {result.uploaded_blobs} blobs copied "
            f"({human_bytes(result.uploaded_bytes)}), {result.mounted_blobs} mounted, "
            f"{result.skipped_blobs} already present; {human_bytes(result.verified_bytes)} verified "
            f"in {result.seconds:.1f} s"
        )
        if result.skipped_tags:
            say(f"{result.skipped_tags} tags already pointed at their digest and were left alone")
        if result.referrers and result.referrers["target_api"] is not None:
            say(referrers_line(result.referrers))

    emit(result.to_dict(), as_json, human)


def referrers_line(placed: dict) -> str:
    """How import or mirror placed referrers, in one line (arcgap.transfer.referrerplace.Placed.to_dict())."""
    total = placed["by_api"] + placed["by_fallback"] + placed["by_tag"]
    line = (f"{total} referrers placed by the {placed['way']} ({placed['by_api']} acknowledged by the referrers API, "
            f"{placed['by_fallback']} in {len(placed['fallback_tags'])} fallback tag indexes, "
            f"{placed['by_tag']} cosign tags)")
    if placed["unplaced"]:
        line += f"; not findable: {len(placed['unplaced'])}"
    return line
