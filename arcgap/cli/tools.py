"""The other commands: the blob cache, releases and image lists, the installer, logins."""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import typer

from arcgap import __version__
from arcgap.cli.common import (
    JSON_OPTION,
    NO_INPUT_OPTION,
    SOURCE,
    SOURCE_PASSWORD_STDIN_OPTION,
    app,
    emit,
    interactive,
    prompt,
    read_password_stdin,
    run_context,
    say,
    secret_prompt,
    source_options,
    warn,
)
from arcgap.errors import UsageError
from arcgap.util.parallel import DEFAULT_JOBS
from arcgap.util.progress import human_bytes
from arcgap.util.safetext import safe

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
    from arcgap.transfer.cache import BlobCache, cache_root

    info = BlobCache(cache_root(cache_dir, os.environ)).info()
    emit(info.to_dict("cache info"), as_json, lambda: say(
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
    from arcgap.transfer.cache import BlobCache, cache_root

    info = BlobCache(cache_root(cache_dir, os.environ)).clear()
    emit(info.to_dict("cache clear"), as_json, lambda: say(
        f"removed {info.entries} blobs ({human_bytes(info.size_bytes)}) from {info.path}"))



# -- releases / manifests new (connected side) ----------------------------------------------------------------



@app.command("releases")
def releases_cmd(
    image: str = typer.Option("arc-controller", "--image", help="The image whose tags list names the releases."),
    show_all: bool = typer.Option(False, "--all", help="Also show tags that are not releases (dev builds, previews)."),
    release: Optional[str] = typer.Option(None, "--release", metavar="TAG", help="Show the images of release TAG "
                                          "at the source (its catalog; the shipped list when refused)."),
    sizes: bool = typer.Option(False, "--sizes", help="With --release: each image's size and the release's "
                               "(reads manifests and configs, no layers)."),
    from_release: Optional[str] = typer.Option(None, "--from-release", metavar="TAG", help="Show the upgrade "
                                               "chain after TAG (the release the site runs), oldest first."),
    to_release: Optional[str] = typer.Option(None, "--to-release", metavar="TAG",
                                             help="The end of the --from-release chain (default: the newest)."),
    jobs: int = typer.Option(DEFAULT_JOBS, "--jobs", "-j", min=1, max=32, help="Parallel registry requests."),
    source_registry: Optional[str] = SOURCE.registry,
    source_repository: Optional[str] = SOURCE.repository,
    source_username: Optional[str] = SOURCE.username,
    password_stdin: bool = SOURCE_PASSWORD_STDIN_OPTION,
    ca_file: Optional[Path] = SOURCE.ca_file,
    insecure: bool = SOURCE.insecure,
    plain_http: bool = SOURCE.plain_http,
    no_input: bool = NO_INPUT_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """List the release tags at the source, newest first, marking those with a shipped image list.

    Example: arcgap releases --json; arcgap releases --release v1.29.0_2024-04-09 --sizes;
    arcgap releases --from-release v1.39.0_2025-05-13
    """
    from arcgap.commands.options import ReleasesOptions
    from arcgap.commands.releases import run_chain, run_release_images, run_releases

    source = source_options(registry=source_registry, repository=source_repository, username=source_username,
                            password_stdin=password_stdin, ca_file=ca_file, insecure=insecure, plain_http=plain_http)
    # quiet: these commands show no progress, and warnings print either way
    context = run_context(no_input=no_input, quiet=True)
    if sizes and release is None:
        raise UsageError("--sizes goes with --release TAG")
    if release is not None and (from_release or to_release):
        raise UsageError("give --release TAG or --from-release TAG [--to-release TAG], not both")
    if from_release or to_release:
        if from_release is None:
            raise UsageError("--to-release needs --from-release (the release the site runs)")
        chain = run_chain(source, context, start=from_release, end=to_release)
        emit(chain.to_dict(), as_json, lambda: say(
            f"upgrade chain at {chain.registry}/{chain.repository}, oldest first: {chain.start} (the site's) → "
            + " → ".join(chain.releases)))
        return
    if release is not None:
        found = run_release_images(source, context, tag=release, sizes=sizes, jobs=jobs)

        def show() -> None:
            say(f"{found.registry}/{found.repository} {found.tag}: {len(found.images)} images "
                       f"(from {found.origin})")
            if found.refused:
                say(f"the catalog was refused: {found.refused}")
            by_name = {s.name: s for s in found.sizes}
            for name in found.images:
                size = by_name.get(name)
                say(f"  {name}" + (f"  {human_bytes(size.bytes)}" if size else ""))
            if found.total_bytes is not None:
                say(f"total {human_bytes(found.total_bytes)} (a layer shared by several images counted once)")
            if found.diff is not None and not found.diff.same:
                say(found.diff.describe())
            if found.untagged:
                say(f"under {found.repository}/ without the tag {found.tag}: {', '.join(found.untagged)}")

        emit(found.to_dict(), as_json, show)
        return
    result = run_releases(source, ReleasesOptions(image=image), context)

    def human() -> None:
        say(f"{result.registry}/{result.repository}/{result.image}: {len(result.releases)} releases"
                   + (f", newest {result.latest}" if result.latest else ""))
        for rel in result.releases:
            say(f"  {safe(rel.tag)}" + ("  (shipped list)" if rel.shipped else ""))
        if show_all and result.other_tags:
            say(f"other tags ({len(result.other_tags)}):")
            for tag in result.other_tags:
                say(f"  {safe(tag)}")  # tags come from the registry's answer
        elif result.other_tags:
            say(f"and {len(result.other_tags)} other tags (--all shows them)")

    emit(result.to_dict(), as_json, human)


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
    source_registry: Optional[str] = SOURCE.registry,
    source_repository: Optional[str] = SOURCE.repository,
    source_username: Optional[str] = SOURCE.username,
    password_stdin: bool = SOURCE_PASSWORD_STDIN_OPTION,
    ca_file: Optional[Path] = SOURCE.ca_file,
    insecure: bool = SOURCE.insecure,
    plain_http: bool = SOURCE.plain_http,
    no_input: bool = NO_INPUT_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Write a release's image list from the previous one, keeping the images the source has at TAG.

    Example: arcgap manifests new v1.30.0_2024-05-14 --output manifests/v1.30.0_2024-05-14.yaml
    """
    from arcgap.commands.options import ManifestsNewOptions
    from arcgap.commands.releases import run_manifests_new

    options = ManifestsNewOptions(tag=tag, previous=previous, add=tuple(add or ()), output=output, force=force,
                                  jobs=jobs)
    source = source_options(registry=source_registry, repository=source_repository, username=source_username,
                            password_stdin=password_stdin, ca_file=ca_file, insecure=insecure, plain_http=plain_http)
    result = run_manifests_new(source, options, run_context(no_input=no_input, quiet=True))
    for name in result.missing:
        warn(f"{name} has no tag {tag} at {result.registry}/{result.repository}: left out")

    def human() -> None:
        say(f"wrote {result.output}: {len(result.images)} images for {tag} (from {result.previous}"
                   + (f", {len(result.added)} added" if result.added else "")
                   + (f", {len(result.missing)} left out" if result.missing else "") + ")")

    emit(result.to_dict(), as_json, human)


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
    from arcgap.installer.build import build_installer
    from arcgap.installer.wheelhouse import foreign_host_warning, targets_for

    targets = targets_for(installer_platform or [], installer_python or [])
    note = foreign_host_warning(targets)
    if note:
        warn(note)
    result = build_installer(output, targets=targets, overwrite=force)
    doc = {"command": "wheelhouse", **result.to_dict()}
    emit(doc, as_json, lambda: say(
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
    from arcgap.commands.login import login, registry_host, tls_for
    from arcgap.util.secret import Secret

    host, plain = registry_host(registry)
    tls = tls_for(plain, plain_http=plain_http, insecure=insecure, ca_file=ca_file)
    asking = not no_input and interactive()
    if not username and asking:
        username = prompt("Username", None)
    if not username:
        raise UsageError("no username given", hint="pass --username (or run on a terminal to be asked)")
    password = read_password_stdin(password_stdin)
    if password is None and asking:
        password = secret_prompt("Password")
    if not password:
        raise UsageError("no password given", hint="pipe it with --password-stdin (never as an option)")
    result = login(host, username=username, password=Secret(password), tls=tls)
    if not result.helper:
        warn(f"the password is stored unencrypted in {result.stored_in}; configure a credential helper "
             "(credsStore or credHelpers) to keep it out of the file")
    emit(result.to_dict(), as_json, lambda: say(
        f"login succeeded: {result.username} at {result.registry}, stored in {result.stored_in}"))


@app.command("logout")
def logout_cmd(
    registry: str = typer.Argument(..., help="Registry host[:port]."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Forget the credentials stored for a registry (config.json and its credential helper).

    Example: arcgap logout registry.local:5000
    """
    from arcgap.commands.login import logout

    result = logout(registry)
    emit(result.to_dict(), as_json, lambda: say(
        f"removed the login for {result.registry}" if result.removed else f"not logged in to {result.registry}"))

