"""``--engine docker``: export and import through the local Docker engine (docker save / load and push) instead
of the OCI Distribution API. Glue only: options → settings → arcgap.dockerengine."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from arcgap.arc.releases import LATEST
from arcgap.bundle.reader import open_bundle
from arcgap.commands.options import ExportOptions, ImportOptions, RunContext, SourceOptions, TargetOptions
from arcgap.commands.transfer import chain_request, collect_source, collect_target, default_output, verify_key_from
from arcgap.errors import UsageError, option

if TYPE_CHECKING:
    from arcgap.dockerengine.save import DockerImage
    from arcgap.transfer.export import ExportResult
    from arcgap.transfer.importer import ImportResult
    from arcgap.transfer.sink import ExportOutput


def _local_images(names: tuple[str, ...]) -> list[DockerImage]:
    """--from-local: the images the engine already holds, named as arguments (e.g. myapp:dev)."""
    from arcgap.dockerengine.save import DockerImage
    from arcgap.oci.reference import parse_reference, validate_repository, validate_tag

    images: list[DockerImage] = []
    for name in names:
        full = name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"
        parse_reference(full)  # a usage error for a malformed name
        path, _, tag = full.rpartition(":")
        first, _, rest = path.partition("/")
        if rest and ("." in first or ":" in first or first == "localhost"):
            path = rest  # the bundle names images without their registry
        images.append(DockerImage(validate_repository(path), validate_tag(tag), full, pull=False))
    return images


def check_docker_export(source: SourceOptions, options: ExportOptions) -> None:
    """What the engine's export cannot do, refused before anything else is read or asked."""
    o = options
    if o.since or o.sign_key or o.installer_targets or o.skip_missing or o.platform or source.ca_file \
            or source.insecure:
        raise UsageError(f"{option('engine')} docker does not combine with {option('since')}, {option('sign')}, "
                         f"{option('with_installer')}, {option('skip_missing')}, {option('platform')} or source "
                         "TLS options",
                         hint="the engine pulls with its own TLS settings (/etc/docker/certs.d)")
    if chain_request(o) is not None:
        raise UsageError(f"{option('engine')} docker carries one release a bundle",
                         hint=f"leave out {option('engine')} docker")


def run_docker_export(source: SourceOptions, options: ExportOptions, context: RunContext, *,
                      output: Callable[[Path], ExportOutput]) -> ExportResult:
    """The engine pulls (with auth_config) or already holds the images; docker save → ``output(default name)``
    (:func:`arcgap.commands.endpoints.export_output`: a bundle, an OCI layout)."""
    from arcgap.dockerengine import auth_config, connect
    from arcgap.dockerengine.save import DockerImage, docker_export
    from arcgap.transfer.export import creation_time

    o, selection = options, options.selection
    if selection.release == LATEST:
        raise UsageError(f"{option('release')} latest is not available with {option('engine')} docker",
                         hint="name the release")
    auth = None
    if o.from_local:
        if not selection.names or selection.release is not None or selection.images_file is not None:
            raise UsageError(f"{option('from_local')} takes the local images' names as arguments (e.g. myapp:dev)")
        images = _local_images(selection.names)
        registry, repository = "local", ""
        out = output(Path("local-images.tar.zst"))
    else:
        choice = collect_source(source, selection, context)
        endpoint = choice.endpoint
        source_tag = endpoint.tag or choice.default_tag  # --release latest was refused above
        images = []
        for w in choice.images(source_tag, context.warn):
            tag = w.reference.tag or source_tag
            images.append(DockerImage(w.name, tag, f"{w.reference.registry}/{w.reference.repository}:{tag}"))
        auth = auth_config(endpoint.username, endpoint.password)
        registry, repository = endpoint.registry, endpoint.repository
        out = output(default_output(endpoint, source_tag))
    context.warn("the Docker engine holds one platform per image and saves layers uncompressed: multi-platform "
                 "indexes become single-platform manifests and manifest digests differ from the registry's (image "
                 "IDs = config digests are kept)")
    client = connect(context.environ)
    try:
        return docker_export(client, images, output=out, source_registry=registry, source_repository=repository,
                             auth=auth, reporter=context.reporter, created=creation_time())
    finally:
        client.close()


def run_docker_import(target: TargetOptions, options: ImportOptions, context: RunContext) -> ImportResult:
    """The bundle's import into the engine's sink: verified while streaming into ``docker load``, pushed through the
    engine, every tag re-read through it."""
    if options.dry_run:
        raise UsageError(f"{option('dry_run')} is not available with {option('engine')} docker")
    if target.ca_file is not None or target.insecure:
        raise UsageError(f"with {option('engine')} docker the engine's own TLS settings apply",
                         hint="put the CA in /etc/docker/certs.d/HOST:PORT/ca.crt on the engine's machine")
    from arcgap.dockerengine import auth_config, connect
    from arcgap.dockerengine.load import docker_import

    key = verify_key_from(options.verify_key)
    with open_bundle(options.bundle) as reader:
        if key is not None:
            from arcgap.bundle.signing import check_bundle_signature

            check_bundle_signature(reader, key, accept_partial=options.accept_partial_signature)
        endpoint = collect_target(target, context)
        client = connect(context.environ)
        try:
            return docker_import(reader, client, registry=endpoint.registry, repository=endpoint.repository,
                                 target_tag=endpoint.tag, auth=auth_config(endpoint.username, endpoint.password),
                                 jobs=options.jobs, reporter=context.reporter, warn=context.warn)
        finally:
            client.close()
