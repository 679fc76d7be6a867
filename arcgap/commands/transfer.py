"""Glue between the CLI and the library: settings → clients → the operation. No printing here."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from arcgap.arc.imagelist import (
    ImageList,
    default_release_tag,
    images_from_names,
    load_image_list,
    load_shipped_release,
    shipped_releases,
)
from arcgap.arc.releases import LATEST, check_at_source, latest_release, skipped_record
from arcgap.bundle.parts import parse_size
from arcgap.bundle.reader import open_bundle
from arcgap.commands.clients import ClientPool, side_tls
from arcgap.commands.settings import Endpoint, Prompt, SecretPrompt, collect_endpoint
from arcgap.errors import UsageError
from arcgap.registry.client import RegistryClient
from arcgap.registry.resolve import Wanted
from arcgap.transfer.cache import DEFAULT_MAX_BYTES, BlobCache, cache_root
from arcgap.util.progress import Reporter

# Each command imports what only it needs inside its function: ``arcgap export`` need not load the importer,
# the installer or the receipt code (measured: about 40 ms of every run's start).
if TYPE_CHECKING:
    from arcgap.bundle.signing import Signer, VerifyKey
    from arcgap.installer.build import StagedInstaller
    from arcgap.installer.wheelhouse import Target
    from arcgap.transfer.export import ExportResult
    from arcgap.transfer.importer import ImportResult
    from arcgap.transfer.mirror import MirrorResult


def choose_list(*, names: Sequence[str], release: str | None, images_file: Path | None) -> ImageList | None:
    """The image list from names, a file or a shipped release; None means "the list of the source tag"."""
    if sum((bool(names), release is not None, images_file is not None)) > 1:
        raise UsageError("give image names, --images FILE or --release TAG, not several of them")
    if names:
        return images_from_names(names)
    if images_file is not None:
        return load_image_list(images_file)
    if release is not None:
        return load_shipped_release(release)
    return None


def list_for_tag(tag: str, warn: Callable[[str], None]) -> ImageList:
    if tag in shipped_releases():
        return load_shipped_release(tag)
    newest = default_release_tag()
    warn(f"no shipped image list for {tag}; using the list of {newest} "
         "(check it against the release notes, or pass --images FILE)")
    return load_shipped_release(newest)


def wanted_images(image_list: ImageList, endpoint: Endpoint, source_tag: str) -> list[Wanted]:
    wanted: list[Wanted] = []
    for entry in image_list.images:
        ref = entry.source(registry=endpoint.registry, repository=endpoint.repository, tag=source_tag)
        if ref.tag is None:  # pinned by digest only: the bundle still records a tag for the target
            ref = replace(ref, tag=source_tag)
        wanted.append(Wanted(entry.name, ref))
    return wanted


def default_output(endpoint: Endpoint, tag: str) -> Path:
    base = endpoint.repository.rsplit("/", 1)[-1] or "images"
    return Path(f"{base}-{tag}.tar.zst")


@dataclass(frozen=True)
class SourceChoice:
    """The source side as export and mirror collect it: the endpoint, the image list (None: the list of the
    source tag, chosen once the tag is known) and whether ``--release latest`` asks the registry for the tag."""

    endpoint: Endpoint
    image_list: ImageList | None
    default_tag: str
    latest: bool

    def tag(self, client_for: Callable[[str], RegistryClient], reporter: Reporter) -> str:
        """The source tag: the newest release at the source for ``latest``, else the collected value."""
        if not self.latest:
            return self.endpoint.tag or self.default_tag
        e = self.endpoint
        tag = latest_release(client_for(e.registry), repository=e.repository)
        reporter.phase(f"newest release at {e.registry}/{e.repository}: {tag}")
        return tag

    def images(self, source_tag: str, warn: Callable[[str], None]) -> list[Wanted]:
        image_list = self.image_list if self.image_list is not None else list_for_tag(source_tag, warn)
        return wanted_images(image_list, self.endpoint, source_tag)


def collect_source(
    *, names: Sequence[str], release: str | None, images_file: Path | None, options: Mapping[str, str | None],
    environ: Mapping[str, str], prompt: Prompt | None, secret_prompt: SecretPrompt | None,
    password_stdin: str | None, plain_http: bool,
) -> SourceChoice:
    """The five SOURCE_DOCKER_* values, with defaults from the chosen image list (seed defaults otherwise)."""
    latest = release == LATEST  # the newest release tag at the source, looked up once connected
    if latest and (names or images_file is not None or options.get("tag")):
        raise UsageError("--release latest chooses the list and the tag: give no image names, --images or "
                         "--source-tag with it")
    image_list = choose_list(names=names, release=None if latest else release, images_file=images_file)
    default_tag = (None if latest else release) or (image_list.release if image_list else None) \
        or default_release_tag()
    if latest:  # as an option it beats SOURCE_DOCKER_TAG and is never asked for
        options = {**options, "tag": LATEST}
    defaults = {
        "registry": (image_list.registry if image_list else None) or "mcr.microsoft.com",
        "repository": (image_list.repository if image_list else None) or "arcdata",
        "username": None,
        "tag": default_tag,
    }
    endpoint = collect_endpoint("source", options=options, environ=environ, defaults=defaults, prompt=prompt,
                                secret_prompt=secret_prompt, password_stdin=password_stdin, plain_http=plain_http)
    return SourceChoice(endpoint, image_list, default_tag, latest)


def run_export(
    *, names: Sequence[str], release: str | None, images_file: Path | None, output: Path | None,
    options: Mapping[str, str | None], password_stdin: str | None, ca_file: Path | None, insecure: bool,
    plain_http: bool, platform: str | None, jobs: int, level: int, threads: int, force: bool,
    prompt: Prompt | None, secret_prompt: SecretPrompt | None, reporter: Reporter,
    warn: Callable[[str], None], environ: Mapping[str, str] | None = None,
    cache_dir: Path | None = None, no_cache: bool = False, cache_max_bytes: int = DEFAULT_MAX_BYTES,
    split_size: str | None = None, space_check: bool = True,
    since: Sequence[Path] = (), sign_key: Path | None = None,
    skip_missing: bool = False, installer_targets: Sequence[Target] = (),
    engine: str = "registry", from_local: bool = False,
) -> ExportResult:
    environ = os.environ if environ is None else environ
    if engine == "docker":
        if since or sign_key or installer_targets or skip_missing or platform or ca_file or insecure:
            raise UsageError("--engine docker does not combine with --since, --sign, --with-installer, "
                             "--skip-missing, --platform or source TLS options",
                             hint="the engine pulls with its own TLS settings (/etc/docker/certs.d)")
        return _run_engine_export(names=names, release=release, images_file=images_file, output=output,
                                  options=options, password_stdin=password_stdin, plain_http=plain_http,
                                  level=level, threads=threads, force=force, split_size=split_size, prompt=prompt,
                                  secret_prompt=secret_prompt, reporter=reporter, warn=warn, environ=environ,
                                  from_local=from_local)
    if from_local:
        raise UsageError("--from-local needs --engine docker")
    from arcgap.transfer.export import export_bundle
    from arcgap.transfer.since import load_bases

    signer = _signer(sign_key, environ)  # a wrong key or passphrase stops before any download
    bases = load_bases(since)
    split_bytes = parse_size(split_size) if split_size is not None else None  # a usage error before any download
    cache = None if no_cache else BlobCache(cache_root(cache_dir, environ), max_bytes=cache_max_bytes)
    choice = collect_source(names=names, release=release, images_file=images_file, options=options, environ=environ,
                            prompt=prompt, secret_prompt=secret_prompt, password_stdin=password_stdin,
                            plain_http=plain_http)
    endpoint = choice.endpoint
    tls = side_tls(endpoint, ca_file=ca_file, insecure=insecure)
    staged: StagedInstaller | None = None
    try:
        with ClientPool(endpoint, tls, max_connections=jobs + 4, environ=environ) as pool:
            source_tag = choice.tag(pool, reporter)
            wanted, skipped = check_at_source(pool, choice.images(source_tag, warn), jobs=jobs,
                                              skip_missing=skip_missing)
            for item in skipped:
                warn(f"skipping {item.reference}: not at the source (--skip-missing; recorded in the bundle)")
            output = output or default_output(endpoint, source_tag)
            if installer_targets:  # built first (a pip failure costs seconds, not an export); placed after it
                reporter.phase(f"building the installer for {', '.join(t.label for t in installer_targets)}")
                from arcgap.installer.build import installer_dir, stage_installer

                staged = stage_installer(installer_dir(output), targets=installer_targets, overwrite=force)
            result = export_bundle(
                pool, wanted, output=output, skipped_images=skipped_record(skipped),
                source_registry=endpoint.registry, source_repository=endpoint.repository,
                jobs=jobs, level=level, threads=threads, platform=platform, overwrite=force, reporter=reporter,
                split_bytes=split_bytes, space_check=space_check,
                cache=cache, bases=bases, signer=signer,
            )
        if staged is not None:
            result = replace(result, installer=staged.publish().to_dict())
    finally:
        if staged is not None:
            staged.discard()
        if cache is not None:
            cache.prune()  # least recently used out, down to the cap; also after a failed export
            for problem in cache.stats.problems:
                warn(problem)
    return result if cache is None else replace(result, cache=cache.stats.to_dict())


def run_import(
    *, bundle: Path, options: Mapping[str, str | None], password_stdin: str | None, ca_file: Path | None,
    insecure: bool, plain_http: bool, jobs: int, dry_run: bool, prompt: Prompt | None,
    secret_prompt: SecretPrompt | None, reporter: Reporter, environ: Mapping[str, str] | None = None,
    verify_key: Path | None = None, receipt: Path | None = None,
    engine: str = "registry", warn: Callable[[str], None] | None = None,
) -> ImportResult:
    environ = os.environ if environ is None else environ
    if engine == "docker":
        return _run_engine_import(bundle=bundle, options=options, password_stdin=password_stdin, ca_file=ca_file,
                                  insecure=insecure, plain_http=plain_http, dry_run=dry_run, prompt=prompt,
                                  secret_prompt=secret_prompt, reporter=reporter, environ=environ,
                                  verify_key=verify_key, warn=warn or reporter.warn)  # type: ignore[return-value]
    from arcgap.transfer.importer import import_bundle
    from arcgap.transfer.receipt import (
        build_receipt,
        bundle_label,
        check_receipt_path,
        default_receipt_path,
        utc_now,
        write_receipt,
    )

    key = verify_key_from(verify_key)
    started = utc_now()
    receipt_path = receipt or default_receipt_path(bundle, started)
    if not dry_run:
        check_receipt_path(receipt_path)  # before anything moves, not after
    # Every blob is verified by digest and the tar by zstd's checksum: parts are hashed only to name damage.
    with open_bundle(bundle, hash_parts=False) as reader:  # read the table of contents before asking anything
        signature = reader.signature()
        if key is not None:  # refused before any question or connection
            from arcgap.bundle.signing import check_signature

            check_signature(reader.manifest_bytes, signature, key, origin=reader.origin)
        defaults = {"registry": None, "repository": None, "username": None, "tag": None}
        endpoint = collect_endpoint("target", options=options, environ=environ, defaults=defaults, prompt=prompt,
                                    secret_prompt=secret_prompt, password_stdin=password_stdin,
                                    plain_http=plain_http)
        tls = side_tls(endpoint, ca_file=ca_file, insecure=insecure)
        with ClientPool(endpoint, tls, max_connections=jobs + 4, environ=environ) as pool:
            result = import_bundle(reader, pool(endpoint.registry), target_repository=endpoint.repository,
                                   target_tag=endpoint.tag, jobs=jobs, reporter=reporter, dry_run=dry_run)
        if not dry_run:
            done = build_receipt(
                bundle_name=bundle_label(bundle), identity=reader.identity, manifest=reader.manifest,
                signed_by=signature.key_fingerprint if signature else None, signature_checked=key is not None,
                registry=endpoint.registry, repository=endpoint.repository, result=result, moment=utc_now(),
            )
            write_receipt(receipt_path, done)
            result.receipt_file, result.receipt = receipt_path, done.to_dict()
        return result


def run_mirror(
    *, names: Sequence[str], release: str | None, images_file: Path | None,
    source_options: Mapping[str, str | None], target_options: Mapping[str, str | None],
    source_password_stdin: str | None, target_password_stdin: str | None,
    source_ca_file: Path | None, source_insecure: bool, source_plain_http: bool,
    target_ca_file: Path | None, target_insecure: bool, target_plain_http: bool,
    jobs: int, dry_run: bool, prompt: Prompt | None, secret_prompt: SecretPrompt | None, reporter: Reporter,
    warn: Callable[[str], None], environ: Mapping[str, str] | None = None,
) -> MirrorResult:
    """Both sides' five values (source first, as export asks them, then target, as import does), then the copy."""
    from arcgap.transfer.mirror import mirror_images

    environ = os.environ if environ is None else environ
    choice = collect_source(names=names, release=release, images_file=images_file, options=source_options,
                            environ=environ, prompt=prompt, secret_prompt=secret_prompt,
                            password_stdin=source_password_stdin, plain_http=source_plain_http)
    source = choice.endpoint
    target = collect_endpoint("target", options=target_options, environ=environ,
                              defaults={"registry": None, "repository": None, "username": None, "tag": None},
                              prompt=prompt, secret_prompt=secret_prompt, password_stdin=target_password_stdin,
                              plain_http=target_plain_http)
    source_tls = side_tls(source, ca_file=source_ca_file, insecure=source_insecure)
    target_tls = side_tls(target, ca_file=target_ca_file, insecure=target_insecure)
    with ClientPool(source, source_tls, max_connections=jobs + 4, environ=environ) as sources, \
            ClientPool(target, target_tls, max_connections=jobs + 4, environ=environ) as targets:
        source_tag = choice.tag(sources, reporter)
        # Every missing image is named at once, before the target is touched.
        wanted, _ = check_at_source(sources, choice.images(source_tag, warn), jobs=jobs, skip_missing=False)
        return mirror_images(sources, targets(target.registry), wanted, source_registry=source.registry,
                             source_repository=source.repository, target_repository=target.repository,
                             target_tag=target.tag, jobs=jobs, reporter=reporter, dry_run=dry_run)


def _run_engine_export(
    *, names: Sequence[str], release: str | None, images_file: Path | None, output: Path | None,
    options: Mapping[str, str | None], password_stdin: str | None, plain_http: bool, level: int, threads: int,
    force: bool, split_size: str | None, prompt: Prompt | None, secret_prompt: SecretPrompt | None,
    reporter: Reporter, warn: Callable[[str], None], environ: Mapping[str, str], from_local: bool,
) -> ExportResult:
    """--engine docker: the engine pulls (with auth_config) or already holds the images; docker save → bundle."""
    from arcgap.dockerengine import auth_config, connect
    from arcgap.dockerengine.save import EngineImage, engine_export
    from arcgap.oci.reference import parse_reference, validate_repository, validate_tag
    from arcgap.transfer.export import creation_time

    split_bytes = parse_size(split_size) if split_size is not None else None
    if release == LATEST:
        raise UsageError("--release latest is not available with --engine docker", hint="name the release")
    images: list[EngineImage] = []
    auth = None
    if from_local:
        if not names or release is not None or images_file is not None:
            raise UsageError("--from-local takes the local images' names as arguments (e.g. myapp:dev)")
        for name in names:
            full = name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"
            parse_reference(full)  # a usage error for a malformed name
            path, _, tag = full.rpartition(":")
            first, _, rest = path.partition("/")
            if rest and ("." in first or ":" in first or first == "localhost"):
                path = rest  # the bundle names images without their registry
            images.append(EngineImage(validate_repository(path), validate_tag(tag), full, pull=False))
        registry, repository = "local", ""
        output = output or Path("local-images.tar.zst")
    else:
        choice = collect_source(names=names, release=release, images_file=images_file, options=options,
                                environ=environ, prompt=prompt, secret_prompt=secret_prompt,
                                password_stdin=password_stdin, plain_http=plain_http)
        endpoint = choice.endpoint
        source_tag = endpoint.tag or choice.default_tag  # --release latest was refused above
        for w in choice.images(source_tag, warn):
            tag = w.reference.tag or source_tag
            images.append(EngineImage(w.name, tag, f"{w.reference.registry}/{w.reference.repository}:{tag}"))
        auth = auth_config(endpoint.username, endpoint.password)
        registry, repository = endpoint.registry, endpoint.repository
        output = output or default_output(endpoint, source_tag)
    warn("the Docker engine holds one platform per image and saves layers uncompressed: multi-platform indexes "
         "become single-platform manifests and manifest digests differ from the registry's (image IDs = config "
         "digests are kept)")
    client = connect(environ)
    try:
        return engine_export(client, images, output=output, source_registry=registry, source_repository=repository,
                             auth=auth, level=level, threads=threads, overwrite=force, split_bytes=split_bytes,
                             reporter=reporter, created=creation_time())
    finally:
        client.close()


def check_engine(engine: str) -> str:
    if engine not in ("registry", "docker"):
        raise UsageError(f"unknown engine {engine!r}", hint="--engine registry (default) or --engine docker")
    return engine


def _run_engine_import(
    *, bundle: Path, options: Mapping[str, str | None], password_stdin: str | None, ca_file: Path | None,
    insecure: bool, plain_http: bool, dry_run: bool, prompt: Prompt | None, secret_prompt: SecretPrompt | None,
    reporter: Reporter, environ: Mapping[str, str], verify_key: Path | None, warn: Callable[[str], None],
):  # -> arcgap.dockerengine.load.EngineImportResult
    """--engine docker: verify while streaming into ``docker load``, then push through the engine."""
    if dry_run:
        raise UsageError("--dry-run is not available with --engine docker")
    if ca_file is not None or insecure:
        raise UsageError("with --engine docker the engine's own TLS settings apply",
                         hint="put the CA in /etc/docker/certs.d/HOST:PORT/ca.crt on the engine's machine")
    from arcgap.dockerengine import connect
    from arcgap.dockerengine.load import engine_import

    key = verify_key_from(verify_key)
    with open_bundle(bundle) as reader:
        signature = reader.signature()
        if key is not None:
            from arcgap.bundle.signing import check_signature

            check_signature(reader.manifest_bytes, signature, key, origin=reader.origin)
        defaults = {"registry": None, "repository": None, "username": None, "tag": None}
        endpoint = collect_endpoint("target", options=options, environ=environ, defaults=defaults, prompt=prompt,
                                    secret_prompt=secret_prompt, password_stdin=password_stdin,
                                    plain_http=plain_http)
        client = connect(environ)
        try:
            return engine_import(reader, client, registry=endpoint.registry, repository=endpoint.repository,
                                 target_tag=endpoint.tag, username=endpoint.username, password=endpoint.password,
                                 reporter=reporter, warn=warn)
        finally:
            client.close()


def _signer(sign_key: Path | None, environ: Mapping[str, str]) -> Signer | None:
    if sign_key is None:
        return None
    from arcgap.bundle.signing import PASSPHRASE_ENV, load_signer  # cryptography is loaded only when a key is used

    return load_signer(sign_key, passphrase=environ.get(PASSPHRASE_ENV) or None)


def verify_key_from(path: Path | None) -> VerifyKey | None:
    """The public key of --verify-key (None without it); cryptography is imported only here."""
    if path is None:
        return None
    from arcgap.bundle.signing import load_verify_key

    return load_verify_key(path)
