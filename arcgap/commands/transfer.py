"""Glue between the CLI and the library for export, import and mirror: the options the CLI built → settings →
clients → the operation. No printing here (warnings go to the run's reporter)."""

from __future__ import annotations

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
from arcgap.bundle.reader import open_bundle
from arcgap.commands.clients import ClientPool, registry_side, side_tls
from arcgap.commands.options import (
    ExportOptions,
    ImportOptions,
    MirrorOptions,
    RunContext,
    Selection,
    SourceOptions,
    TargetOptions,
)
from arcgap.commands.settings import Endpoint, collect_endpoint, env_name
from arcgap.errors import UsageError, option, variable
from arcgap.oci.reference import validate_tag
from arcgap.registry.client import RegistryClient
from arcgap.registry.ranged import RANGE_CONNECTIONS
from arcgap.registry.resolve import Wanted
from arcgap.transfer.cache import DEFAULT_MAX_BYTES, BlobCache, cache_root
from arcgap.util.parallel import DEFAULT_JOBS
from arcgap.util.progress import Reporter

# Each command imports what only it needs inside its function: ``arcgap export`` need not load the importer,
# the installer or the receipt code (measured: about 40 ms of every run's start).
if TYPE_CHECKING:
    from arcgap.bundle.signing import VerifyKey
    from arcgap.commands.sourceset import ChainRequest
    from arcgap.installer.build import StagedInstaller
    from arcgap.transfer.export import ExportResult
    from arcgap.transfer.importer import ImportResult
    from arcgap.transfer.mirror import MirrorResult
    from arcgap.transfer.receipt import Receipt
    from arcgap.transfer.sink import ExportOutput


def choose_list(*, names: Sequence[str], release: str | None, images_file: Path | None) -> ImageList | None:
    """The image list from names, a file or a shipped release; None means "the list of the source tag"."""
    if sum((bool(names), release is not None, images_file is not None)) > 1:
        raise UsageError(f"give image names, {option('images')} FILE or {option('release')} TAG, not several of them")
    if names:
        return images_from_names(names)
    if images_file is not None:
        return load_image_list(images_file)
    if release is not None:
        return load_shipped_release(release)
    return None


def wanted_images(image_list: ImageList, endpoint: Endpoint, source_tag: str) -> list[Wanted]:
    wanted: list[Wanted] = []
    for entry in image_list.images:
        ref = entry.source(registry=endpoint.registry, repository=endpoint.repository, tag=source_tag)
        if ref.tag is None:  # pinned by digest only: the bundle still records a tag for the target
            ref = replace(ref, tag=source_tag)
        wanted.append(Wanted(entry.name, ref))
    return wanted


def newest_for_prompt(
    *, ca_file: Path | None, insecure: bool, environ: Mapping[str, str], warn: Callable[[str], None],
) -> Callable[[Endpoint], str]:
    """For the tag prompt's default: the newest release at the source (the newest shipped list, with a
    warning, when it cannot be asked)."""
    def newest(endpoint: Endpoint) -> str:
        from arcgap.commands.sourceset import newest_or_shipped

        with ClientPool(endpoint, side_tls(endpoint, ca_file=ca_file, insecure=insecure), max_connections=2,
                        environ=environ) as pool:
            return newest_or_shipped(pool(endpoint.registry), endpoint, warn)

    return newest


def default_output(endpoint: Endpoint, tag: str) -> Path:
    base = endpoint.repository.rsplit("/", 1)[-1] or "images"
    return Path(f"{base}-{tag}.tar.zst")


@dataclass(frozen=True)
class SourceChoice:
    """The source side as export and mirror collect it: the endpoint, the image list (None: the release's
    images, asked of the source's catalog once the tag is known, else its shipped list), whether ``--release
    latest`` asks the registry for the tag, and whether the default tag follows the source (no tag, release or
    list given: the newest release there, else the newest shipped list with a warning)."""

    endpoint: Endpoint
    image_list: ImageList | None
    default_tag: str
    latest: bool
    follow: bool = False

    def tag(self, client_for: Callable[[str], RegistryClient], reporter: Reporter) -> str:
        """The source tag: the newest release at the source for ``latest`` (and, falling back to the newest
        shipped list, when the default follows the source), else the collected value."""
        e = self.endpoint
        if self.follow and e.tag is None:
            from arcgap.commands.sourceset import newest_or_shipped

            tag = newest_or_shipped(client_for(e.registry), e, reporter.warn)
            reporter.phase(f"source tag (default: the newest release at {e.registry}/{e.repository}): {tag}")
            return tag
        if not self.latest:
            return e.tag or self.default_tag
        tag = latest_release(client_for(e.registry), repository=e.repository)
        reporter.phase(f"newest release at {e.registry}/{e.repository}: {tag}")
        return tag

    def images(self, source_tag: str, warn: Callable[[str], None],
               client_for: Callable[[str], RegistryClient] | None = None, *, jobs: int = DEFAULT_JOBS,
               reporter: Reporter | None = None) -> list[Wanted]:
        """The images at ``source_tag``: the given list, else the release's set from the source's catalog
        (``client_for`` given), else its shipped list."""
        from arcgap.commands.sourceset import release_images, shipped_or_newest

        if self.image_list is not None:
            image_list = self.image_list
        elif client_for is None:
            image_list = shipped_or_newest(source_tag, warn)
        else:
            note = reporter.phase if reporter is not None else (lambda _text: None)
            image_list, _ = release_images(client_for(self.endpoint.registry), self.endpoint, source_tag,
                                           jobs=jobs, warn=warn, note=note)
        return wanted_images(image_list, self.endpoint, source_tag)


def collect_source(
    given: SourceOptions, selection: Selection, context: RunContext, *,
    newest: Callable[[Endpoint], str] | None = None, chain: bool = False,
) -> SourceChoice:
    """The five SOURCE_DOCKER_* values, with defaults from the chosen image list (seed defaults otherwise).

    With no tag, no release and no list, the tag follows the source: ``newest`` (given the endpoint) tells the
    prompt its default, the newest release there; without a prompt it is looked up once connected. For an
    upgrade chain (``chain``) the releases give the tags: no tag is collected."""
    names, release, images_file = selection.names, selection.release, selection.images_file
    if chain and (given.tag or release is not None):
        raise UsageError(f"an upgrade chain takes its tags from the releases: give no {option('source.tag')} with it")
    latest = release == LATEST  # the newest release tag at the source, looked up once connected
    if latest and (names or images_file is not None or given.tag):
        raise UsageError(f"{option('release')} latest chooses the list and the tag: give no image names, "
                         f"{option('images')} or {option('source.tag')} with it")
    # a release without a shipped list is fine: its images come from the source's catalog once connected
    unshipped = release is not None and not latest and release not in shipped_releases()
    if unshipped and (names or images_file is not None):
        raise UsageError(f"give image names, {option('images')} FILE or {option('release')} TAG, not several of them")
    image_list = choose_list(names=names, release=None if (latest or unshipped) else release, images_file=images_file)
    if unshipped:
        validate_tag(release or "")
    default_tag = (None if latest else release) or (image_list.release if image_list else None) \
        or default_release_tag()
    prompt = context.prompt
    follow = not chain and release is None and images_file is None and not names and not given.tag \
        and not context.environ.get(env_name("source", "tag"), "").strip()
    if latest or chain or (follow and (prompt is None or newest is not None)):
        given = replace(given, tag=LATEST)  # as an option it beats SOURCE_DOCKER_TAG and is never asked for
    defaults = {
        "registry": (image_list.registry if image_list else None) or "mcr.microsoft.com",
        "repository": (image_list.repository if image_list else None) or "arcdata",
        "username": None,
        "tag": default_tag,
    }
    endpoint = collect_endpoint(given, environ=context.environ, defaults=defaults, prompt=context.prompt,
                                secret_prompt=context.secret_prompt)
    if chain:
        return SourceChoice(replace(endpoint, tag=None), image_list, default_tag, latest=False)
    if follow and endpoint.tag == LATEST:
        endpoint = replace(endpoint, tag=None)
        if prompt is not None and newest is not None:  # asked last: the default comes from the source
            suggested = newest(endpoint)
            answer = (prompt("source tag", suggested) or "").strip() or suggested
            validate_tag(answer)
            return SourceChoice(replace(endpoint, tag=answer), image_list, suggested, latest=False)
        return SourceChoice(endpoint, image_list, default_tag, latest=False, follow=True)
    # --release TAG: the release's images come from the source's catalog once connected (its shipped list,
    # which gave the defaults above, when the catalog is refused)
    kept = None if (release is not None and not names and images_file is None) else image_list
    return SourceChoice(endpoint, kept, default_tag, latest)


def collect_target(given: TargetOptions, context: RunContext) -> Endpoint:
    """The five TARGET_DOCKER_* values; registry and repository have no default."""
    defaults = {"registry": None, "repository": None, "username": None, "tag": None}
    return collect_endpoint(given, environ=context.environ, defaults=defaults, prompt=context.prompt,
                            secret_prompt=context.secret_prompt)


def run_registry_export(source: SourceOptions, options: ExportOptions, context: RunContext, *,
                        output: Callable[[Path], ExportOutput]) -> ExportResult:
    """Registry → ``output(default name)`` (:func:`arcgap.commands.endpoints.export_output`: a bundle, a layout)."""
    o = options
    if o.from_local:
        raise UsageError(f"{option('from_local')} needs {option('engine')} docker")
    from arcgap.transfer.export import export_bundle
    from arcgap.transfer.referrers import ReferrerOptions
    from arcgap.transfer.since import load_bases

    environ, reporter = context.environ, context.reporter
    bases = load_bases(o.since)
    cap = DEFAULT_MAX_BYTES if o.cache_max_bytes is None else o.cache_max_bytes
    cache = BlobCache(cache_root(o.cache_dir, environ), max_bytes=cap) if o.use_cache else None
    chain = chain_request(o)
    choice = collect_source(source, o.selection, context, chain=chain is not None,
                            newest=newest_for_prompt(ca_file=source.ca_file, insecure=source.insecure,
                                                     environ=environ, warn=context.warn))
    endpoint = choice.endpoint
    # TLS options are checked here, before any request
    pools = registry_side(endpoint, source, jobs=o.jobs, environ=environ, network=context.network,
                          warn=context.warn, extra_connections=RANGE_CONNECTIONS)
    staged: StagedInstaller | None = None
    try:
        with pools as pool:
            releases: list[str] = []
            if chain is not None:
                from arcgap.commands.sourceset import chain_tags

                releases = chain_tags(pool(endpoint.registry), endpoint, chain, context.warn)
                reporter.phase(f"releases in this bundle, oldest first: {', '.join(releases)}")
            wanted, skipped = [], []
            for source_tag in releases or [choice.tag(pool, reporter)]:
                some, gaps = check_at_source(pool, choice.images(source_tag, context.warn, pool, jobs=o.jobs,
                                                                 reporter=reporter),
                                             jobs=o.jobs, skip_missing=o.skip_missing)
                wanted += some
                skipped += gaps
            for item in skipped:
                context.warn(f"skipping {item.reference}: not at the source ({option('skip_missing')}; recorded in "
                             "the bundle)")
            out = output(default_output(endpoint, f"{releases[0]}_to_{releases[-1]}" if releases else source_tag))
            output = out.path
            if o.installer_targets:  # built first (a pip failure costs seconds, not an export); placed after it
                reporter.phase(f"building the installer for {', '.join(t.label for t in o.installer_targets)}")
                from arcgap.installer.build import installer_dir, stage_installer

                staged = stage_installer(installer_dir(output), targets=o.installer_targets, overwrite=o.force)
            result = export_bundle(
                pool, wanted, output=out, skipped_images=skipped_record(skipped),
                source_registry=endpoint.registry, source_repository=endpoint.repository,
                jobs=o.jobs, platform=o.platform, reporter=reporter, cache=cache, bases=bases, releases=releases,
                referrers=ReferrerOptions(o.referrers, frozenset(o.referrers_types)), ranged=context.network.ranged,
            )
        if staged is not None:
            result = replace(result, installer=staged.publish().to_dict())
    finally:
        if staged is not None:
            staged.discard()
        if cache is not None:
            cache.prune()  # least recently used out, down to the cap; also after a failed export
            for problem in cache.stats.problems:
                context.warn(problem)
    return result if cache is None else replace(result, cache=cache.stats.to_dict())


def run_registry_import(
    target: TargetOptions, options: ImportOptions, context: RunContext, *,
    after_import: Callable[[Endpoint, Receipt], None] | None = None,
) -> ImportResult:
    """Bundle → registry. ``after_import`` (``import --handoff``) gets the target's values and the receipt once
    it is written."""
    o = options
    from arcgap.transfer.importer import import_bundle
    from arcgap.transfer.receipt import (
        build_receipt,
        bundle_label,
        check_receipt_path,
        default_receipt_path,
        utc_now,
        write_receipt,
    )

    key = verify_key_from(o.verify_key)
    started = utc_now()
    receipt_path = o.receipt or default_receipt_path(o.bundle, started)
    if not o.dry_run:
        check_receipt_path(receipt_path)  # before anything moves, not after
    # Every blob is verified by digest and the tar by zstd's checksum: parts are hashed only to name damage.
    with open_bundle(o.bundle, hash_parts=False) as reader:  # read the table of contents before asking anything
        signature = reader.signature()
        if key is not None:  # refused before any question or connection
            from arcgap.bundle.signing import check_bundle_signature

            check_bundle_signature(reader, key, accept_partial=o.accept_partial_signature)
        endpoint = collect_target(target, context)
        if endpoint.tag is not None and len(reader.toc.releases) > 1:
            raise UsageError(f"the bundle carries {len(reader.toc.releases)} releases: one target tag would "
                             "put them all on the same tag", hint=f"leave out {option('target.tag')} / "
                             f"{variable('target.tag')}: each release keeps its own tag")
        with registry_side(endpoint, target, jobs=o.jobs, environ=context.environ, network=context.network,
                           warn=context.warn) as pool:
            result = import_bundle(reader, pool(endpoint.registry), target_repository=endpoint.repository,
                                   target_tag=endpoint.tag, jobs=o.jobs, reporter=context.reporter,
                                   dry_run=o.dry_run, background_max_bytes=context.network.background_max_bytes)
        if not o.dry_run:
            done = build_receipt(
                bundle_name=bundle_label(o.bundle), identity=reader.identity, toc=reader.toc,
                signed_by=signature.key_fingerprint if signature else None, signature_checked=key is not None,
                registry=endpoint.registry, repository=endpoint.repository, result=result, moment=utc_now(),
            )
            receipt_path = write_receipt(receipt_path, done, renumber=o.receipt is None)
            result.receipt_file, result.receipt = receipt_path, done.to_dict()
            if after_import is not None:
                after_import(endpoint, done)
        return result


def run_mirror(
    source: SourceOptions, target: TargetOptions, options: MirrorOptions, context: RunContext
) -> MirrorResult:
    """Both sides' five values (source first, as export asks them, then target, as import does), then the copy."""
    from arcgap.transfer.mirror import mirror_images

    o, environ, reporter = options, context.environ, context.reporter
    choice = collect_source(source, o.selection, context,
                            newest=newest_for_prompt(ca_file=source.ca_file, insecure=source.insecure,
                                                     environ=environ, warn=context.warn))
    src = choice.endpoint
    dst = collect_target(target, context)
    net = {"network": context.network, "warn": context.warn}
    source_side = registry_side(src, source, jobs=o.jobs, environ=environ, extra_connections=RANGE_CONNECTIONS,
                                **net)
    target_side = registry_side(dst, target, jobs=o.jobs, environ=environ, **net)
    with source_side as sources, target_side as targets:
        source_tag = choice.tag(sources, reporter)
        # Every missing image is named at once, before the target is touched.
        wanted, _ = check_at_source(sources, choice.images(source_tag, context.warn, sources, jobs=o.jobs,
                                                           reporter=reporter),
                                    jobs=o.jobs, skip_missing=False)
        return mirror_images(sources, targets(dst.registry), wanted, source_registry=src.registry,
                             source_repository=src.repository, target_repository=dst.repository,
                             target_tag=dst.tag, jobs=o.jobs, reporter=reporter, dry_run=o.dry_run,
                             ranged=context.network.ranged)


def chain_request(options: ExportOptions) -> ChainRequest | None:
    """Several releases in one bundle: repeated --release, or --from-release [--to-release]."""
    if len(options.releases) < 2 and not options.from_release and not options.to_release:
        return None
    from arcgap.commands.sourceset import ChainRequest

    given = options.releases or ((options.selection.release,) if options.selection.release else ())
    return ChainRequest(tuple(given), options.from_release, options.to_release)  # refuses --release with --from


def verify_key_from(path: Path | None) -> VerifyKey | None:
    """The public key of --verify-key (None without it); cryptography is imported only here."""
    if path is None:
        return None
    from arcgap.bundle.signing import load_verify_key

    return load_verify_key(path)
