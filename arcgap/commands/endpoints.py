"""Where each side's options lead, decided in one place: the way images come in (a registry, a bundle file or
its parts, the Docker Engine) and the way they go out (a registry, a bundle, an OCI layout directory, the
Docker Engine). Nothing else compares engine or format names; the commands below run one copy over the pair.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from arcgap.commands.options import (
    ExportOptions,
    ImportOptions,
    MirrorOptions,
    RunContext,
    SourceOptions,
    TargetOptions,
)
from arcgap.errors import UsageError, option

if TYPE_CHECKING:
    from arcgap.bundle.signing import Signer
    from arcgap.commands.settings import Endpoint
    from arcgap.transfer.export import ExportResult
    from arcgap.transfer.importer import ImportResult
    from arcgap.transfer.mirror import MirrorResult
    from arcgap.transfer.receipt import Receipt
    from arcgap.transfer.sink import ExportOutput

REGISTRY = "registry"  # the OCI Distribution API: every digest kept
DOCKER = "docker"  # the local Docker Engine: docker save / load and push
ENGINES = (REGISTRY, DOCKER)
BUNDLE = "bundle"  # one zstd bundle file (or its parts) with arcgap.yaml
OCI_LAYOUT = "oci-layout"  # an OCI image layout directory
FORMATS = (BUNDLE, OCI_LAYOUT)


def check_engine(engine: str) -> str:
    if engine not in ENGINES:
        raise UsageError(f"unknown engine {engine!r}", hint="the engines: registry (the default) or docker")
    return engine


def check_format(output_format: str) -> str:
    if output_format not in FORMATS:
        raise UsageError(f"unknown output format {output_format!r}",
                         hint="the formats: bundle (the default) or oci-layout")
    return output_format


def through_docker(engine: str) -> bool:
    """The Docker Engine moves the images (its own TLS settings, no receipt, digests may change)."""
    return engine == DOCKER


def export_output(options: ExportOptions, environ: Mapping[str, str]) -> Callable[[Path], ExportOutput]:
    """The way out of an export (registry or engine), given the default name: checked, and a signing key loaded, before
    anything is downloaded. ``--output`` wins over the default."""
    o = options
    if o.output_format == OCI_LAYOUT:
        from arcgap.transfer.ocilayout import LayoutOutput

        if o.sign_key is not None or o.split_size is not None or o.since:
            raise UsageError("an OCI layout holds whole, unsigned images in one directory: it does not combine "
                             f"with {option('sign')}, {option('split_size')} or {option('since')}",
                             hint="leave those out, or write a bundle")
        return lambda default: LayoutOutput(o.output or _layout_name(default), overwrite=o.force)
    from arcgap.bundle.parts import parse_size
    from arcgap.transfer.export import BundleOutput

    signer = _signer(o.sign_key, environ)  # a wrong key or passphrase stops before any download
    split_bytes = parse_size(o.split_size) if o.split_size is not None else None
    return lambda default: BundleOutput(o.output or default, level=o.level, threads=o.threads, overwrite=o.force,
                                        split_bytes=split_bytes, space_check=o.space_check, signer=signer)


def _signer(sign_key: Path | None, environ: Mapping[str, str]) -> Signer | None:
    if sign_key is None:
        return None
    from arcgap.bundle.signing import PASSPHRASE_ENV, load_signer  # cryptography is loaded only when a key is used

    return load_signer(sign_key, passphrase=environ.get(PASSPHRASE_ENV) or None)


def _layout_name(bundle: Path) -> Path:
    """``arcdata-TAG.tar.zst`` → ``arcdata-TAG.oci`` (a directory)."""
    name = bundle.name[:-len(".tar.zst")] if bundle.name.endswith(".tar.zst") else bundle.name
    return bundle.with_name(name + ".oci")


def run_export(source: SourceOptions, options: ExportOptions, context: RunContext) -> ExportResult:
    """Registry or Docker Engine → bundle or OCI layout."""
    if through_docker(options.engine):
        from arcgap.commands.docker import check_docker_export, run_docker_export

        check_docker_export(source, options)
        return run_docker_export(source, options, context, output=export_output(options, context.environ))
    from arcgap.commands.transfer import run_registry_export

    return run_registry_export(source, options, context, output=export_output(options, context.environ))


def run_import(
    target: TargetOptions, options: ImportOptions, context: RunContext, *,
    after_import: Callable[[Endpoint, Receipt], None] | None = None,
) -> ImportResult:
    """Bundle → registry, or → the Docker Engine (``docker load``, then its push)."""
    if through_docker(options.engine):
        from arcgap.commands.docker import run_docker_import

        return run_docker_import(target, options, context)
    from arcgap.commands.transfer import run_registry_import

    return run_registry_import(target, options, context, after_import=after_import)


def run_mirror(source: SourceOptions, target: TargetOptions, options: MirrorOptions,
               context: RunContext) -> MirrorResult:
    """Registry → registry."""
    from arcgap.commands.transfer import run_mirror as registry_mirror

    return registry_mirror(source, target, options, context)
