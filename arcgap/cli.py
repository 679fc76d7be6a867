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
    release: Optional[str] = typer.Option(None, "--release", help="Use a shipped image list (see manifests/); "
                                          "'latest': the newest release tag at the source."),
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
    no_input: bool = typer.Option(False, "--no-input", "-y", help="Never prompt; use defaults."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    """Pull a release from the source registry into one bundle file.

    Example: arcgap export --release v1.29.0_2024-04-09 -o arc.tar.zst
    """
    from arcgap.cache import parse_cache_size
    from arcgap.commands import check_engine, run_export
    from arcgap.wheelhouse import foreign_host_warning, targets_for

    installer = with_installer or bool(installer_platform) or bool(installer_python)
    installer_targets = targets_for(installer_platform or [], installer_python or []) if installer else []
    if installer_targets and foreign_host_warning(installer_targets):
        typer.echo(f"warning: {foreign_host_warning(installer_targets)}", err=True)
    result = run_export(
        names=images or [],
        release=release,
        images_file=images_file,
        output=output,
        options={"registry": source_registry, "repository": source_repository, "username": source_username,
                 "tag": source_tag},
        password_stdin=_read_password_stdin(password_stdin),
        ca_file=ca_file, insecure=insecure, plain_http=plain_http, platform=platform,
        jobs=jobs, level=level, threads=threads, force=force, split_size=split_size, space_check=not no_space_check,
        prompt=None if (no_input or not _interactive()) else _prompt,
        secret_prompt=None if (no_input or not _interactive()) else _secret_prompt,
        reporter=_reporter(quiet),
        warn=lambda text: typer.echo(f"warning: {text}", err=True),
        cache_dir=cache_dir, no_cache=no_cache, cache_max_bytes=parse_cache_size(cache_max_size),
        since=since or [], sign_key=sign,
        skip_missing=skip_missing, installer_targets=installer_targets,
        engine=check_engine(engine), from_local=from_local,
    )

    def human() -> None:
        typer.echo(
            f"wrote {result.output}: {result.images} images, {result.blobs} blobs, "
            f"{human_bytes(result.content_bytes)} of content in {human_bytes(result.bundle_bytes)} "
            f"({human_bytes(result.dedupe_saved_bytes)} saved by sharing) in {result.seconds:.1f} s"
        )
        if len(result.parts) > 1 or (result.parts and result.parts[0] != str(result.output)):
            typer.echo(f"in {len(result.parts)} parts: {Path(result.parts[0]).name} … {Path(result.parts[-1]).name}; "
                       f"carry {result.sidecar} with them (sizes and sha256 of every part)")
        if result.cache and result.cache["hits"]:
            typer.echo(f"{result.cache['hits']} blobs ({human_bytes(result.cache['hit_bytes'])}) "
                       "came from the blob cache")
        if result.relies_on:
            typer.echo(f"differential: {result.relied_on_blobs} blobs ({human_bytes(result.relied_on_bytes)}) "
                       f"left out; the target must hold them from {', '.join(result.relies_on)}")
        if result.signed_by:
            typer.echo(f"signed by {result.signed_by}")
        if result.skipped_images:
            typer.echo(f"skipped {len(result.skipped_images)} images not at the source (listed in arcgap.yaml): "
                       + ", ".join(s["name"] for s in result.skipped_images))
        if result.installer:
            inst = result.installer
            typer.echo(f"installer {inst['directory']}: {len(inst['files'])} files "
                       f"({human_bytes(inst['total_bytes'])}) for "
                       + ", ".join(t["label"] for t in inst["targets"])
                       + f"; on the far side: sh {inst['install_script']}")

    _emit(result.to_dict(), as_json, human)


# -- import ------------------------------------------------------------------------------------------------


@app.command("import")
def import_cmd(
    bundle: Path = typer.Argument(..., help="Bundle file written by 'arcgap export', one of its parts (NAME.003) "
                                  "or its NAME.parts.yaml."),
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
    verify_key: Optional[Path] = typer.Option(None, "--verify-key", help="Refuse the bundle unless this Ed25519 "
                                              "public key (NAME.pub) signed it; checked before any push."),
    receipt: Optional[Path] = typer.Option(None, "--receipt", help="Where to write the import receipt (default: "
                                           "./arcgap-receipt-<bundle>-<UTC time>.yaml)."),
    engine: str = typer.Option("registry", "--engine", help="registry (default: OCI Distribution API, every "
                               "digest kept) or docker (docker load + push through the local engine, DOCKER_HOST; "
                               "digests may change)."),
    no_input: bool = typer.Option(False, "--no-input", "-y", help="Never prompt; use defaults."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    """Verify a bundle while pushing it into the target registry; tags move only at the end.

    Example: TARGET_DOCKER_REGISTRY=10.0.0.5:5000 TARGET_DOCKER_REPOSITORY=arcdata arcgap import arc.tar.zst
    """
    from arcgap.commands import check_engine, run_import

    result = run_import(
        bundle=bundle, engine=check_engine(engine), warn=lambda text: typer.echo(f"warning: {text}", err=True),
        options={"registry": target_registry, "repository": target_repository, "username": target_username,
                 "tag": target_tag},
        password_stdin=_read_password_stdin(password_stdin),
        ca_file=ca_file, insecure=insecure, plain_http=plain_http, jobs=jobs, dry_run=dry_run,
        verify_key=verify_key, receipt=receipt,
        prompt=None if (no_input or not _interactive()) else _prompt,
        secret_prompt=None if (no_input or not _interactive()) else _secret_prompt,
        reporter=_reporter(quiet),
    )

    def human() -> None:
        for img in result.images:
            typer.echo(f"{img['source']} → {img['target']}  {img['digest']}  {img['action']}")
        if engine == "docker":
            changed = result.to_dict()["digests_changed"]
            typer.echo(f"imported {len(result.images)} images through the Docker engine: "
                       f"{human_bytes(result.verified_bytes)} verified in {result.seconds:.1f} s; "
                       f"{changed} digests differ from the bundle's (see --json)")
            return
        verb = "would import" if result.dry_run else "imported"
        typer.echo(
            f"{verb} {len(result.images)} images: {result.uploaded_blobs} blobs uploaded "
            f"({human_bytes(result.uploaded_bytes)}), {result.mounted_blobs} mounted, "
            f"{result.skipped_blobs} already present; {human_bytes(result.verified_bytes)} verified "
            f"in {result.seconds:.1f} s"
        )
        if result.skipped_tags:
            typer.echo(f"{result.skipped_tags} tags already pointed at their digest and were left alone")
        if result.receipt_file is not None:
            typer.echo(f"receipt: {result.receipt_file}")

    _emit(result.to_dict(), as_json, human)


# -- mirror ------------------------------------------------------------------------------------------------


@app.command("mirror")
def mirror_cmd(
    images: List[str] = typer.Argument(
        None, help="Image names (relative to the source repository) or full references."
    ),
    release: Optional[str] = typer.Option(None, "--release", help="Use a shipped image list (see manifests/); "
                                          "'latest': the newest release tag at the source."),
    images_file: Optional[Path] = typer.Option(None, "--images", help="Image list YAML file."),
    source_registry: Optional[str] = typer.Option(None, "--source-registry", help="[env: SOURCE_DOCKER_REGISTRY]"),
    source_repository: Optional[str] = typer.Option(
        None, "--source-repository", help="[env: SOURCE_DOCKER_REPOSITORY]"
    ),
    source_username: Optional[str] = typer.Option(None, "--source-username", help="[env: SOURCE_DOCKER_USERNAME]"),
    source_tag: Optional[str] = typer.Option(None, "--source-tag", help="[env: SOURCE_DOCKER_TAG]"),
    source_password_stdin: bool = typer.Option(
        False, "--source-password-stdin", help="Read the source password from the first line of stdin."),
    source_ca_file: Optional[Path] = typer.Option(None, "--source-ca-file", envvar="SOURCE_DOCKER_CA_FILE",
                                                  help="CA bundle (PEM) for the source registry's TLS."),
    source_insecure: bool = typer.Option(False, "--source-insecure", help="Source: HTTPS without verification."),
    source_plain_http: bool = typer.Option(False, "--source-plain-http", help="The source speaks plain HTTP."),
    target_registry: Optional[str] = typer.Option(None, "--target-registry", help="[env: TARGET_DOCKER_REGISTRY]"),
    target_repository: Optional[str] = typer.Option(None, "--target-repository",
                                                    help="[env: TARGET_DOCKER_REPOSITORY]"),
    target_username: Optional[str] = typer.Option(None, "--target-username", help="[env: TARGET_DOCKER_USERNAME]"),
    target_tag: Optional[str] = typer.Option(None, "--target-tag",
                                             help="[env: TARGET_DOCKER_TAG] default: each image's own tag"),
    target_password_stdin: bool = typer.Option(
        False, "--target-password-stdin", help="Read the target password from stdin (the second line when "
        "--source-password-stdin is also given)."),
    target_ca_file: Optional[Path] = typer.Option(None, "--target-ca-file", envvar="TARGET_DOCKER_CA_FILE",
                                                  help="CA bundle (PEM) for the target registry's TLS."),
    target_insecure: bool = typer.Option(False, "--target-insecure", help="Target: HTTPS without verification."),
    target_plain_http: bool = typer.Option(False, "--target-plain-http", help="The target speaks plain HTTP."),
    jobs: int = typer.Option(4, "--jobs", "-j", min=1, max=32, help="Parallel blob copies."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the mapping and what would move; change nothing."),
    no_input: bool = typer.Option(False, "--no-input", "-y", help="Never prompt; use defaults."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    """Copy a release straight from the source registry to the target, no bundle; tags move only at the end.

    Example: arcgap mirror --release latest --target-registry 10.0.0.5:5000 --target-repository arcdata
    """
    from arcgap.commands import run_mirror

    interactive = not no_input and _interactive()
    result = run_mirror(
        names=images or [], release=release, images_file=images_file,
        source_options={"registry": source_registry, "repository": source_repository, "username": source_username,
                        "tag": source_tag},
        target_options={"registry": target_registry, "repository": target_repository, "username": target_username,
                        "tag": target_tag},
        source_password_stdin=_read_password_stdin(source_password_stdin),
        target_password_stdin=_read_password_stdin(target_password_stdin),
        source_ca_file=source_ca_file, source_insecure=source_insecure, source_plain_http=source_plain_http,
        target_ca_file=target_ca_file, target_insecure=target_insecure, target_plain_http=target_plain_http,
        jobs=jobs, dry_run=dry_run,
        prompt=_prompt if interactive else None, secret_prompt=_secret_prompt if interactive else None,
        reporter=_reporter(quiet),
        warn=lambda text: typer.echo(f"warning: {text}", err=True),
    )

    def human() -> None:
        for img in result.images:
            typer.echo(f"{img['source']} → {img['target']}  {img['digest']}  {img['action']}")
        if result.dry_run:
            typer.echo(
                f"would mirror {len(result.images)} images from {result.source} to {result.target}: "
                f"{human_bytes(result.missing_bytes)} to copy, {human_bytes(result.present_bytes)} of "
                f"{human_bytes(result.content_bytes)} already at the target; nothing changed")
            return
        typer.echo(
            f"mirrored {len(result.images)} images: {result.uploaded_blobs} blobs copied "
            f"({human_bytes(result.uploaded_bytes)}), {result.mounted_blobs} mounted, "
            f"{result.skipped_blobs} already present; {human_bytes(result.verified_bytes)} verified "
            f"in {result.seconds:.1f} s"
        )
        if result.skipped_tags:
            typer.echo(f"{result.skipped_tags} tags already pointed at their digest and were left alone")

    _emit(result.to_dict(), as_json, human)


# -- cache -----------------------------------------------------------------------------------------------

cache_app = typer.Typer(help="The blob cache of 'arcgap export': downloaded blobs kept by digest.",
                        no_args_is_help=True)
app.add_typer(cache_app, name="cache")
CACHE_DIR_OPTION = typer.Option(None, "--cache-dir", help="Blob cache directory "
                                "(default: $XDG_CACHE_HOME/arcgap or ~/.cache/arcgap).")


@cache_app.command("info")
def cache_info_cmd(
    cache_dir: Optional[Path] = CACHE_DIR_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
) -> None:
    """Show where the blob cache is, how many blobs it holds and their size.

    Example: arcgap cache info --json
    """
    from arcgap.cache import BlobCache, cache_root

    info = BlobCache(cache_root(cache_dir, os.environ)).info()
    _emit(info.to_dict("cache info"), as_json, lambda: typer.echo(
        f"{info.path}: {info.entries} blobs, {human_bytes(info.size_bytes)}"
        + (f", {info.partial_files} partial downloads" if info.partial_files else "")))


@cache_app.command("clear")
def cache_clear_cmd(
    cache_dir: Optional[Path] = CACHE_DIR_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
) -> None:
    """Remove every blob from the cache (the next export downloads everything again).

    Example: arcgap cache clear
    """
    from arcgap.cache import BlobCache, cache_root

    info = BlobCache(cache_root(cache_dir, os.environ)).clear()
    _emit(info.to_dict("cache clear"), as_json, lambda: typer.echo(
        f"removed {info.entries} blobs ({human_bytes(info.size_bytes)}) from {info.path}"))


# -- verify / inspect ------------------------------------------------------------------------------------


@app.command("verify")
def verify_cmd(
    bundle: Path = typer.Argument(..., help="Bundle file, one of its parts (NAME.003) or its NAME.parts.yaml."),
    verify_key: Optional[Path] = typer.Option(None, "--verify-key", help="Also require a signature by this "
                                              "Ed25519 public key (NAME.pub)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    """Check every blob's size and digest and the bundle's consistency, offline.

    Example: arcgap verify arc.tar.zst
    """
    from arcgap.bundle.reader import open_bundle
    from arcgap.commands import verify_key_from
    from arcgap.verify import verify_bundle

    key = verify_key_from(verify_key)  # cryptography is loaded only with --verify-key
    with open_bundle(bundle) as reader:
        result = verify_bundle(reader, reporter=_reporter(quiet), verify_key=key)
    parts = reader.parts
    listed = parts is not None and (parts.split or parts.sidecar is not None)  # README: "in parts or with its sidecar"
    _emit({**result.to_dict(), **(parts.to_dict() if listed else {})}, as_json, lambda: typer.echo(
        f"{bundle}: OK: {result.images} images, {result.blobs} blobs, "
        f"{human_bytes(result.content_bytes)} verified in {result.seconds:.1f} s{_parts_note(parts)}"
        + _verify_notes(result)))


def _verify_notes(result: Any) -> str:
    """Signature and differential lines for verify (``result`` is an arcgap.verify.VerifyResult)."""
    notes = ""
    if result.signed_by:
        how = "checked with --verify-key" if result.signature_checked else "not checked: pass --verify-key PUB"
        notes += f"\nsigned by {result.signed_by} ({how})"
    if result.relies_on:
        notes += (f"\ndifferential: relies on {result.relied_on_blobs} blobs "
                  f"({human_bytes(result.relied_on_bytes)}) from {', '.join(result.relies_on)}, counted as "
                  "present at the target; import checks they are there before it sends anything")
    return notes


def _parts_note(parts: Any) -> str:
    """How the files were checked, for the verify line (``parts`` is an arcgap.bundle.partstream.PartSet)."""
    if parts is None or (parts.sidecar is None and not parts.split):
        return ""
    if parts.sidecar is None:
        return f"; {len(parts.files)} parts read, without {parts.base.name}.parts.yaml to check each one"
    if not parts.split:
        return f"; size and sha256 match {parts.sidecar.name}"
    return f"; all {len(parts.files)} parts match {parts.sidecar.name}"


@app.command("inspect")
def inspect_cmd(
    bundle: Path = typer.Argument(..., help="Bundle file, one of its parts (NAME.003) or its NAME.parts.yaml."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
) -> None:
    """List the images, tags, digests, platforms and sizes in a bundle (reads only its table of contents).

    Example: arcgap inspect arc.tar.zst --json
    """
    from arcgap.bundle.reader import open_bundle
    from arcgap.verify import describe

    with open_bundle(bundle) as reader:
        doc = describe(reader.manifest, reader.signature())
        parts = reader.parts
    if parts is not None and (parts.split or parts.sidecar is not None):
        doc.update(parts.to_dict())

    def human() -> None:
        typer.echo(f"bundle {bundle} (format {doc['format_version']}, arcgap {doc['arcgap_version']}, "
                   f"created {doc['created']})")
        typer.echo(f"source {doc['source']['registry']}/{doc['source']['repository']}")
        for img in doc["images"]:
            plats = ", ".join(p["platform"] for p in img["platforms"])
            typer.echo(f"  {img['name']}:{img['tag']}  {img['digest']}  [{plats}]")
        typer.echo(f"{len(doc['images'])} images, {doc['blobs']} blobs, {human_bytes(doc['content_bytes'])}")
        for base in doc["relies_on"]:
            typer.echo(f"relies on {base['blobs']} blobs ({human_bytes(base['bytes'])}) from {base['bundle']} "
                       f"({base['identity']}), which the target must hold")
        if doc["signed_by"]:
            typer.echo(f"signed by {doc['signed_by']}")
        if doc["skipped_images"]:
            typer.echo(f"left out at export (not at the source, --skip-missing): {len(doc['skipped_images'])} images: "
                       + ", ".join(s["source"] for s in doc["skipped_images"]))
        if parts is not None and parts.split:
            typer.echo(f"in {len(parts.files)} parts: {parts.files[0].path.name} … {parts.files[-1].path.name}"
                       + (f", listed in {parts.sidecar.name}" if parts.sidecar else ""))

    _emit(doc, as_json, human)


# -- keygen ----------------------------------------------------------------------------------------------


@app.command("keygen")
def keygen_cmd(
    output: Path = typer.Option(..., "--output", "-o", help="Writes OUTPUT.key (private, mode 0600) and "
                                "OUTPUT.pub (public)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
) -> None:
    """Create an Ed25519 key pair for signing bundles (PEM; encrypted when ARCGAP_KEY_PASSPHRASE is set).

    Example: arcgap keygen --output release-signing
    """
    from arcgap.signing import PASSPHRASE_ENV, generate_key

    keys = generate_key(output, passphrase=os.environ.get(PASSPHRASE_ENV) or None)
    doc = {"command": "keygen", "private_key": str(keys.private), "public_key": str(keys.public),
           "fingerprint": str(keys.fingerprint), "encrypted": keys.encrypted}
    _emit(doc, as_json, lambda: typer.echo(
        f"wrote {keys.private} (private{', encrypted' if keys.encrypted else ''}: keep it on the connected side) "
        f"and {keys.public} (public: give it to the importing side)\nfingerprint {keys.fingerprint}"))


# -- releases / manifests new (connected side) ----------------------------------------------------------------

SOURCE_REGISTRY_OPTION = typer.Option(None, "--source-registry", help="[env: SOURCE_DOCKER_REGISTRY]")
SOURCE_REPOSITORY_OPTION = typer.Option(None, "--source-repository", help="[env: SOURCE_DOCKER_REPOSITORY]")
SOURCE_USERNAME_OPTION = typer.Option(None, "--source-username", help="[env: SOURCE_DOCKER_USERNAME]")
SOURCE_PASSWORD_STDIN_OPTION = typer.Option(False, "--password-stdin", help="Read the source password from stdin.")
SOURCE_CA_FILE_OPTION = typer.Option(None, "--source-ca-file", envvar="SOURCE_DOCKER_CA_FILE",
                                     help="CA bundle (PEM) for the source registry's TLS.")
SOURCE_INSECURE_OPTION = typer.Option(False, "--source-insecure", help="HTTPS without certificate verification.")
SOURCE_PLAIN_HTTP_OPTION = typer.Option(False, "--source-plain-http", help="The source speaks plain HTTP.")
NO_INPUT_OPTION = typer.Option(False, "--no-input", "-y", help="Never prompt; use defaults.")
JSON_OPTION = typer.Option(False, "--json", help="Print the result as JSON on stdout.")


@app.command("releases")
def releases_cmd(
    image: str = typer.Option("arc-controller", "--image", help="The image whose tags list names the releases."),
    show_all: bool = typer.Option(False, "--all", help="Also show tags that are not releases (dev builds, previews)."),
    source_registry: Optional[str] = SOURCE_REGISTRY_OPTION,
    source_repository: Optional[str] = SOURCE_REPOSITORY_OPTION,
    source_username: Optional[str] = SOURCE_USERNAME_OPTION,
    password_stdin: bool = SOURCE_PASSWORD_STDIN_OPTION,
    ca_file: Optional[Path] = SOURCE_CA_FILE_OPTION,
    insecure: bool = SOURCE_INSECURE_OPTION,
    plain_http: bool = SOURCE_PLAIN_HTTP_OPTION,
    no_input: bool = NO_INPUT_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """List the release tags at the source, newest first, marking those with a shipped image list.

    Example: arcgap releases --json
    """
    from arcgap.releasecmds import run_releases

    result = run_releases(
        image=image,
        options={"registry": source_registry, "repository": source_repository, "username": source_username},
        password_stdin=_read_password_stdin(password_stdin), ca_file=ca_file, insecure=insecure,
        plain_http=plain_http, prompt=None if (no_input or not _interactive()) else _prompt,
        secret_prompt=None if (no_input or not _interactive()) else _secret_prompt,
    )

    def human() -> None:
        typer.echo(f"{result.registry}/{result.repository}/{result.image}: {len(result.releases)} releases"
                   + (f", newest {result.latest}" if result.latest else ""))
        for rel in result.releases:
            typer.echo(f"  {rel.tag}" + ("  (shipped list)" if rel.shipped else ""))
        if show_all and result.other_tags:
            typer.echo(f"other tags ({len(result.other_tags)}):")
            for tag in result.other_tags:
                typer.echo(f"  {tag}")
        elif result.other_tags:
            typer.echo(f"and {len(result.other_tags)} other tags (--all shows them)")

    _emit(result.to_dict(), as_json, human)


manifests_app = typer.Typer(help="Image lists of the releases (manifests/).", no_args_is_help=True)
app.add_typer(manifests_app, name="manifests")


@manifests_app.command("new")
def manifests_new_cmd(
    tag: str = typer.Argument(..., help="The release tag to write a list for."),
    previous: Optional[str] = typer.Option(None, "--from", help="Start from this shipped release or list file "
                                           "(default: the newest shipped list)."),
    add: Optional[List[str]] = typer.Option(None, "--add", help="Also check and include this image (repeatable)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="List file to write (default: "
                                          "manifests/TAG.yaml when ./manifests exists, else ./TAG.yaml)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing list file."),
    jobs: int = typer.Option(8, "--jobs", "-j", min=1, max=32, help="Parallel registry checks."),
    source_registry: Optional[str] = SOURCE_REGISTRY_OPTION,
    source_repository: Optional[str] = SOURCE_REPOSITORY_OPTION,
    source_username: Optional[str] = SOURCE_USERNAME_OPTION,
    password_stdin: bool = SOURCE_PASSWORD_STDIN_OPTION,
    ca_file: Optional[Path] = SOURCE_CA_FILE_OPTION,
    insecure: bool = SOURCE_INSECURE_OPTION,
    plain_http: bool = SOURCE_PLAIN_HTTP_OPTION,
    no_input: bool = NO_INPUT_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Write a release's image list from the previous one, keeping the images the source has at TAG.

    Example: arcgap manifests new v1.30.0_2024-05-14 --output manifests/v1.30.0_2024-05-14.yaml
    """
    from arcgap.releasecmds import run_manifests_new

    result = run_manifests_new(
        tag=tag, previous=previous, add=add or [], output=output, force=force, jobs=jobs,
        options={"registry": source_registry, "repository": source_repository, "username": source_username},
        password_stdin=_read_password_stdin(password_stdin), ca_file=ca_file, insecure=insecure,
        plain_http=plain_http, prompt=None if (no_input or not _interactive()) else _prompt,
        secret_prompt=None if (no_input or not _interactive()) else _secret_prompt,
    )
    for name in result.missing:
        typer.echo(f"warning: {name} has no tag {tag} at {result.registry}/{result.repository}: left out", err=True)

    def human() -> None:
        typer.echo(f"wrote {result.output}: {len(result.images)} images for {tag} (from {result.previous}"
                   + (f", {len(result.added)} added" if result.added else "")
                   + (f", {len(result.missing)} left out" if result.missing else "") + ")")

    _emit(result.to_dict(), as_json, human)


# -- wheelhouse (the offline installer on its own) --------------------------------------------------------------


@app.command("wheelhouse")
def wheelhouse_cmd(
    output: Path = typer.Option(Path(f"arcgap-{__version__}.installer"), "--output", "-o",
                                help="Directory to write."),
    installer_platform: Optional[List[str]] = typer.Option(
        None, "--installer-platform", help="manylinux2014_x86_64 or manylinux2014_aarch64 (repeatable; default: "
        "this machine)."),
    installer_python: Optional[List[str]] = typer.Option(
        None, "--installer-python", help="CPython 3.9 … 3.13 (repeatable; default: this Python)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing directory."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Write arcgap and every dependency as wheels, with install.sh and SHA256SUMS, for an offline machine.

    Example: arcgap wheelhouse -o arcgap.installer --installer-platform manylinux2014_x86_64 --installer-python 3.11
    """
    from arcgap.installer import build_installer
    from arcgap.wheelhouse import foreign_host_warning, targets_for

    targets = targets_for(installer_platform or [], installer_python or [])
    if foreign_host_warning(targets):
        typer.echo(f"warning: {foreign_host_warning(targets)}", err=True)
    result = build_installer(output, targets=targets, overwrite=force)
    doc = {"command": "wheelhouse", **result.to_dict()}
    _emit(doc, as_json, lambda: typer.echo(
        f"wrote {result.directory}: {len(result.files)} files ({human_bytes(result.total_bytes)}) for "
        + ", ".join(t.label for t in result.targets) + f"; install offline with: sh {output}/install.sh VENV"))


# -- login / logout ----------------------------------------------------------------------------------------------


@app.command("login")
def login_cmd(
    registry: str = typer.Argument(..., help="Registry host[:port]; http://host:port for plain HTTP."),
    username: Optional[str] = typer.Option(None, "--username", "-u", help="User name (asked on a terminal)."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from stdin."),
    ca_file: Optional[Path] = typer.Option(None, "--ca-file", help="CA bundle (PEM) for the registry's TLS."),
    insecure: bool = typer.Option(False, "--insecure", help="HTTPS without certificate verification."),
    plain_http: bool = typer.Option(False, "--plain-http", help="The registry speaks plain HTTP."),
    no_input: bool = NO_INPUT_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Check a user name and password at a registry, then store them as 'docker login' does.

    Example: arcgap login registry.local:5000 --username ops --password-stdin < password.txt
    """
    from arcgap.login import login, registry_host, tls_for
    from arcgap.secret import Secret

    host, plain = registry_host(registry)
    tls = tls_for(plain, plain_http=plain_http, insecure=insecure, ca_file=ca_file)
    interactive = not no_input and _interactive()
    if not username and interactive:
        username = _prompt("Username", None)
    if not username:
        raise UsageError("no username given", hint="pass --username (or run on a terminal to be asked)")
    password = _read_password_stdin(password_stdin)
    if password is None and interactive:
        password = _secret_prompt("Password")
    if not password:
        raise UsageError("no password given", hint="pipe it with --password-stdin (never as an option)")
    result = login(host, username=username, password=Secret(password), tls=tls)
    if not result.helper:
        typer.echo(f"warning: the password is stored unencrypted in {result.stored_in}; configure a credential "
                   "helper (credsStore or credHelpers) to keep it out of the file", err=True)
    _emit(result.to_dict(), as_json, lambda: typer.echo(
        f"login succeeded: {result.username} at {result.registry}, stored in {result.stored_in}"))


@app.command("logout")
def logout_cmd(
    registry: str = typer.Argument(..., help="Registry host[:port]."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Forget the credentials stored for a registry (config.json and its credential helper).

    Example: arcgap logout registry.local:5000
    """
    from arcgap.login import logout

    result = logout(registry)
    _emit(result.to_dict(), as_json, lambda: typer.echo(
        f"removed the login for {result.registry}" if result.removed else f"not logged in to {result.registry}"))


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
