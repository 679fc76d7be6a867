"""Synthetic Arc-like releases pushed straight to a registry: deterministic, parameterised by size.

:func:`generate_release` pushes ``<repository>/<name>:<tag>`` for the 22 Arc data services images. All images
share one base layer, half of them a second; each has its own app layer(s); every third image is OCI (the
rest docker v2); ``multiarch_names`` become amd64+arm64 indexes; some manifests are indented by 3 (as
dockerd writes them), so they are not canonical JSON. The same seed gives the same digests.

:func:`push_small_set` pushes the handful of shapes tests need (docker, OCI, shared base, both index kinds,
an indented manifest) in a few KB.

CLI (for ``make demo`` / ``make bench``)::

    python -m devtools.synth --registry-url https://127.0.0.1:5000 --ca-file ca.crt \\
        --username arcuser --password-env SRC_PASSWORD --sizes demo

prints ``{"name": "sha256:…", …}``.

Layers, pushers and image builders live in :mod:`devtools.layers` and :mod:`devtools.images` and are
re-exported here.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devtools.images import Flavor, HasRawClient, ImageInfo, Pusher, push_image, push_index
from devtools.layers import Layer, build_layer, make_layer, write_layer_file
from devtools.registries import Endpoint

__all__ = [
    "ARC_IMAGES",
    "SIZES",
    "ImageInfo",
    "Layer",
    "Pusher",
    "SmallSet",
    "generate_release",
    "generate_release_infos",
    "make_layer",
    "push_image",
    "push_index",
    "push_small_set",
    "write_layer_file",
]

ARC_IMAGES: tuple[str, ...] = (
    "arc-bootstrapper", "arc-ci-launcher", "arc-controller", "arc-controller-db", "arc-dns",
    "arc-ha-orchestrator", "arc-ha-supervisor", "arc-kafka", "arc-monitor-collectd",
    "arc-monitor-opensearch", "arc-monitor-opensearch-dashboards", "arc-monitor-fluentbit",
    "arc-monitor-grafana", "arc-monitor-influxdb", "arc-monitor-opentelemetry-collector",
    "arc-monitor-telegraf", "arc-postgres-14", "arc-postgresql-agent", "arc-sb-plugin",
    "arc-security-support", "arc-service-proxy", "arc-sqlmi",
)  # fmt: skip

KiB, MiB = 1 << 10, 1 << 20
# name -> (base_layer_bytes, app_layer_bytes): content sizes; blobs are about half as large.
SIZES: dict[str, tuple[int, int]] = {
    "small": (24 * KiB, 8 * KiB),  # ~0.4 MB of blobs
    "demo": (16 * MiB, 2 * MiB),  # ~40 MB of blobs
    "bench": (128 * MiB, 24 * MiB),  # ~400 MB of blobs
}
FILE_THRESHOLD = 256 * MiB  # layers larger than this are generated into files and streamed
ARCHES: tuple[tuple[str, str | None], ...] = (("amd64", None), ("arm64", "v8"))


@dataclass(frozen=True)
class _LayerSpec:
    seed: str
    size: int


@dataclass(frozen=True)
class _ImagePlan:
    name: str
    flavor: Flavor
    indent: int | None
    layers: dict[str, tuple[_LayerSpec, ...]]  # arch -> layers (one arch unless multi-arch)


def _plan(
    names: Sequence[str], multiarch: Sequence[str], base: int, app: int, seed: int, base_seed: int | None = None
) -> list[_ImagePlan]:
    bseed = seed if base_seed is None else base_seed
    base0 = _LayerSpec(f"{bseed}:base:0", base)
    base1 = _LayerSpec(f"{bseed}:base:1", max(base // 2, 1))
    plans: list[_ImagePlan] = []
    for i, name in enumerate(names):
        bases = (base0, base1) if i % 2 == 0 else (base0,)
        arches = ARCHES if name in multiarch else ARCHES[:1]
        per_arch: dict[str, tuple[_LayerSpec, ...]] = {}
        for arch, _ in arches:
            apps = [_LayerSpec(f"{seed}:{name}:{arch}:app:0", app)]
            if i % 4 == 3:
                apps.append(_LayerSpec(f"{seed}:{name}:{arch}:app:1", max(app // 4, 1)))
            per_arch[arch] = bases + tuple(apps)
        flavor: Flavor = "oci" if i % 3 == 1 else "docker"
        plans.append(_ImagePlan(name, flavor, 3 if i % 5 == 2 else None, per_arch))
    if plans and not any(p.indent for p in plans):
        plans[0] = _ImagePlan(plans[0].name, plans[0].flavor, 3, plans[0].layers)
    return plans


def _build_layers(
    specs: Sequence[_LayerSpec], compressible: float, workdir: Path, threads: int
) -> dict[_LayerSpec, Layer]:
    def build(spec: _LayerSpec) -> Layer:
        path = None
        if spec.size > FILE_THRESHOLD:
            path = workdir / (spec.seed.replace(":", "_") + ".tar.gz")
        return build_layer(spec.seed, spec.size, compressible=compressible, path=path)

    with ThreadPoolExecutor(max_workers=max(threads, 1)) as pool:
        return dict(zip(specs, pool.map(build, specs)))


def generate_release_infos(
    registry: HasRawClient,
    *,
    repository: str = "arcdata",
    tag: str = "v1.29.0_2024-04-09",
    names: Sequence[str] | None = None,
    base_layer_bytes: int,
    app_layer_bytes: int,
    multiarch_names: Sequence[str] = ("arc-controller",),
    seed: int = 0,
    compressible: float = 0.5,
    workdir: Path | None = None,
    threads: int = 2,
    base_seed: int | None = None,
) -> dict[str, ImageInfo]:
    """Like :func:`generate_release`, returning the full :class:`ImageInfo` of each top-level manifest.

    ``base_seed`` (default: ``seed``) seeds the shared base layers alone: two releases with the same
    ``base_seed`` and different ``seed`` share their base layers and differ in every app layer.
    """
    plans = _plan(list(names or ARC_IMAGES), multiarch_names, base_layer_bytes, app_layer_bytes, seed, base_seed)
    specs = list(dict.fromkeys(spec for p in plans for layers in p.layers.values() for spec in layers))
    with ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="arcgap-synth-")))
        built = _build_layers(specs, compressible, Path(workdir), threads)
        pusher = stack.enter_context(Pusher(registry))

        def push(plan: _ImagePlan) -> ImageInfo:
            repo = f"{repository}/{plan.name}"
            labels = {"org.arcgap.synth.name": plan.name, "org.arcgap.synth.seed": str(seed)}
            if len(plan.layers) == 1:
                layers = [built[s] for s in plan.layers["amd64"]]
                return push_image(
                    pusher, repo, tag, layers=layers, flavor=plan.flavor, indent=plan.indent, labels=labels
                )
            children = [
                push_image(
                    pusher, repo, None, layers=[built[s] for s in plan.layers[arch]], flavor=plan.flavor,
                    arch=arch, variant=variant, labels=labels,
                )
                for arch, variant in ARCHES
            ]  # fmt: skip
            return push_index(pusher, repo, tag, children, flavor=plan.flavor, indent=plan.indent)

        results: dict[str, ImageInfo] = {}
        if plans:
            results[plans[0].name] = push(plans[0])  # first: the shared bases, mounted by the others
        with ThreadPoolExecutor(max_workers=max(threads, 1)) as pool:
            for plan, info in zip(plans[1:], pool.map(push, plans[1:])):
                results[plan.name] = info
        return {p.name: results[p.name] for p in plans}


def generate_release(
    registry: HasRawClient,
    *,
    repository: str = "arcdata",
    tag: str = "v1.29.0_2024-04-09",
    names: Sequence[str] | None = None,
    base_layer_bytes: int,
    app_layer_bytes: int,
    multiarch_names: Sequence[str] = ("arc-controller",),
    seed: int = 0,
    compressible: float = 0.5,
    workdir: Path | None = None,
    threads: int = 2,
    base_seed: int | None = None,
) -> dict[str, str]:
    """Push a synthetic release; returns ``{name: top-level manifest digest}`` in ``names`` order."""
    infos = generate_release_infos(
        registry,
        repository=repository,
        tag=tag,
        names=names,
        base_layer_bytes=base_layer_bytes,
        app_layer_bytes=app_layer_bytes,
        multiarch_names=multiarch_names,
        seed=seed,
        compressible=compressible,
        workdir=workdir,
        threads=threads,
        base_seed=base_seed,
    )
    return {name: info.digest for name, info in infos.items()}


SMALL_SET_ROLES = ("docker", "oci", "index_docker", "index_oci", "indented")  # the images push_small_set pushes


@dataclass(frozen=True)
class SmallSet:
    """The small fixture set: ``images`` keyed by role (see :func:`push_small_set`)."""

    registry: Any
    images: dict[str, ImageInfo]

    def __getitem__(self, role: str) -> ImageInfo:
        return self.images[role]

    @property
    def shared_base(self) -> str:
        """Digest of the base layer shared by ``docker`` and ``oci``."""
        return self.images["docker"].layer_digests[0]


def push_small_set(
    registry: HasRawClient, *, prefix: str = "synth", tag: str = "v1", seed: str = "small"
) -> SmallSet:
    """Push the small set; roles:

    - ``docker``: docker v2 image, ``prefix/docker-image:tag`` (base + own app layer);
    - ``oci``: OCI image, ``prefix/oci-image:tag``, sharing the base layer with ``docker``;
    - ``index_docker``: docker manifest list amd64 + arm64, ``prefix/multiarch:tag``;
    - ``index_oci``: OCI image index amd64 + arm64, ``prefix/multiarch-oci:tag``;
    - ``indented``: docker v2 manifest serialised with indent=3, ``prefix/indented:tag``.
    """
    base = make_layer(f"{seed}:base", 6 * KiB)

    def app(name: str) -> bytes:
        return make_layer(f"{seed}:{name}", 2 * KiB)

    images: dict[str, ImageInfo] = {}
    with Pusher(registry) as p:
        images["docker"] = push_image(p, f"{prefix}/docker-image", tag, layers=[base, app("docker")])
        images["oci"] = push_image(p, f"{prefix}/oci-image", tag, layers=[base, app("oci")], flavor="oci")
        for role, repo, flavor in (
            ("index_docker", f"{prefix}/multiarch", "docker"),
            ("index_oci", f"{prefix}/multiarch-oci", "oci"),
        ):
            children = [
                push_image(
                    p, repo, None, layers=[base, app(f"{repo}:{arch}")], flavor=flavor, arch=arch, variant=v
                )
                for arch, v in ARCHES
            ]
            images[role] = push_index(p, repo, tag, children, flavor=flavor)  # type: ignore[arg-type]
        images["indented"] = push_image(
            p, f"{prefix}/indented", tag, layers=[base, app("indented")], indent=3
        )
    return SmallSet(registry=registry, images=images)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m devtools.synth``: push a synthetic release and print ``{name: digest}`` as JSON."""
    ap = argparse.ArgumentParser(prog="python -m devtools.synth", description=main.__doc__)
    ap.add_argument("--registry-url", required=True, help="e.g. http://127.0.0.1:5000")
    ap.add_argument("--ca-file", type=Path)
    ap.add_argument("--username")
    ap.add_argument("--password-env", help="name of the environment variable holding the password")
    ap.add_argument("--sizes", choices=sorted(SIZES), default="small")
    ap.add_argument("--repository", default="arcdata")
    ap.add_argument("--tag", default="v1.29.0_2024-04-09")
    ap.add_argument("--names", nargs="*", help="image names (default: the 22 Arc images)")
    ap.add_argument("--multiarch", nargs="*", default=["arc-controller"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--netns", help="push from inside this network namespace")
    args = ap.parse_args(argv)
    password = os.environ.get(args.password_env) if args.password_env else None
    if args.password_env and password is None:
        ap.error(f"${args.password_env} is not set")
    endpoint = Endpoint.from_url(
        args.registry_url, ca_file=args.ca_file, username=args.username, password=password, netns=args.netns
    )
    base, app = SIZES[args.sizes]
    digests = generate_release(
        endpoint,
        repository=args.repository,
        tag=args.tag,
        names=args.names,
        base_layer_bytes=base,
        app_layer_bytes=app,
        multiarch_names=args.multiarch,
        seed=args.seed,
    )
    json.dump(digests, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
