"""Glue between the CLI and the library: settings → clients → the operation. No printing here."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from arcgap.bundle.reader import open_bundle
from arcgap.errors import UsageError
from arcgap.export import ExportResult, export_bundle
from arcgap.imagelist import (
    ImageList,
    default_release_tag,
    images_from_names,
    load_image_list,
    load_shipped_release,
    shipped_releases,
)
from arcgap.importer import ImportResult, import_bundle
from arcgap.progress import Reporter
from arcgap.registry.client import RegistryClient
from arcgap.registry.credentials import Credentials, lookup_credentials
from arcgap.registry.transport import TLSOptions
from arcgap.resolve import Wanted
from arcgap.settings import Endpoint, Prompt, SecretPrompt, collect_endpoint


def _credentials(endpoint: Endpoint, registry: str, environ: Mapping[str, str]) -> Credentials | None:
    """Explicit username/password for the endpoint's own registry; otherwise docker/podman stored logins."""
    if registry == endpoint.registry and endpoint.username is not None and endpoint.password is not None:
        return Credentials(endpoint.username, endpoint.password, source="options")
    return lookup_credentials(registry, environ=environ)


class ClientPool:
    """One client per registry host, created on first use, with the endpoint's TLS choice for its own host."""

    def __init__(
        self, endpoint: Endpoint, tls: TLSOptions, *, max_connections: int, environ: Mapping[str, str]
    ) -> None:
        self.endpoint = endpoint
        self.environ = environ
        self.tls = tls
        self.max_connections = max_connections
        self._clients: dict[str, RegistryClient] = {}
        self._lock = threading.Lock()

    def __call__(self, registry: str) -> RegistryClient:
        with self._lock:
            client = self._clients.get(registry)
            if client is None:
                tls = self.tls if registry == self.endpoint.registry else TLSOptions()
                client = RegistryClient(
                    registry,
                    role=self.endpoint.role,
                    credentials=_credentials(self.endpoint, registry, self.environ),
                    tls=tls,
                    max_connections=self.max_connections,
                )
                self._clients[registry] = client
            return client

    def close(self) -> None:
        for client in self._clients.values():
            client.close()


def _tls(endpoint: Endpoint, *, ca_file: Path | None, insecure: bool) -> TLSOptions:
    if ca_file is not None and not ca_file.is_file():
        raise UsageError(f"CA file {ca_file} does not exist", hint=f"check --{endpoint.role}-ca-file")
    if endpoint.plain_http and (insecure or ca_file):
        raise UsageError(f"--{endpoint.role}-plain-http cannot be combined with TLS options")
    return TLSOptions(plain_http=endpoint.plain_http, insecure=insecure, ca_file=ca_file)


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


def run_export(
    *, names: Sequence[str], release: str | None, images_file: Path | None, output: Path | None,
    options: Mapping[str, str | None], password_stdin: str | None, ca_file: Path | None, insecure: bool,
    plain_http: bool, platform: str | None, jobs: int, level: int, threads: int, force: bool,
    prompt: Prompt | None, secret_prompt: SecretPrompt | None, reporter: Reporter,
    warn: Callable[[str], None], environ: Mapping[str, str] | None = None,
) -> ExportResult:
    environ = os.environ if environ is None else environ
    image_list = choose_list(names=names, release=release, images_file=images_file)
    default_tag = release or (image_list.release if image_list else None) or default_release_tag()
    defaults = {
        "registry": (image_list.registry if image_list else None) or "mcr.microsoft.com",
        "repository": (image_list.repository if image_list else None) or "arcdata",
        "username": None,
        "tag": default_tag,
    }
    endpoint = collect_endpoint("source", options=options, environ=environ, defaults=defaults, prompt=prompt,
                                secret_prompt=secret_prompt, password_stdin=password_stdin, plain_http=plain_http)
    tls = _tls(endpoint, ca_file=ca_file, insecure=insecure)
    source_tag = endpoint.tag or default_tag
    if image_list is None:
        image_list = list_for_tag(source_tag, warn)
    wanted = wanted_images(image_list, endpoint, source_tag)
    pool = ClientPool(endpoint, tls, max_connections=jobs + 4, environ=environ)
    try:
        return export_bundle(
            pool, wanted, output=output or default_output(endpoint, source_tag),
            source_registry=endpoint.registry, source_repository=endpoint.repository,
            jobs=jobs, level=level, threads=threads, platform=platform, overwrite=force, reporter=reporter,
        )
    finally:
        pool.close()


def run_import(
    *, bundle: Path, options: Mapping[str, str | None], password_stdin: str | None, ca_file: Path | None,
    insecure: bool, plain_http: bool, jobs: int, dry_run: bool, prompt: Prompt | None,
    secret_prompt: SecretPrompt | None, reporter: Reporter, environ: Mapping[str, str] | None = None,
) -> ImportResult:
    environ = os.environ if environ is None else environ
    with open_bundle(bundle) as reader:  # read the table of contents before asking anything
        defaults = {"registry": None, "repository": None, "username": None, "tag": None}
        endpoint = collect_endpoint("target", options=options, environ=environ, defaults=defaults, prompt=prompt,
                                    secret_prompt=secret_prompt, password_stdin=password_stdin,
                                    plain_http=plain_http)
        tls = _tls(endpoint, ca_file=ca_file, insecure=insecure)
        pool = ClientPool(endpoint, tls, max_connections=jobs + 4, environ=environ)
        try:
            return import_bundle(reader, pool(endpoint.registry), target_repository=endpoint.repository,
                                 target_tag=endpoint.tag, jobs=jobs, reporter=reporter, dry_run=dry_run)
        finally:
            pool.close()
