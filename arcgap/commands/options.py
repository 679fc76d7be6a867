"""The options of one run, built once by the command line: one value per side (registry, repository,
credentials, TLS, tag), one per command, and the run's context (prompts, the reporter that is also the one
warnings channel, the environment). Frozen, keyword-only values; secrets only inside :class:`Secret`."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Optional

from arcgap.registry.defaults import DEFAULT_MIN_BYTES_PER_S, DEFAULT_RETRY_BUDGET_S, DEFAULT_STALL_S
from arcgap.util.parallel import DEFAULT_JOBS
from arcgap.util.progress import Reporter
from arcgap.util.secret import Secret

if TYPE_CHECKING:
    from arcgap.installer.wheelhouse import Target
    from arcgap.registry.ranged import RangedOptions

Prompt = Callable[[str, Optional[str]], str]  # (label, default) → answer
SecretPrompt = Callable[[str], str]

# Keyword-only where the language has it (3.10+); on 3.9 the fields are in the same order, with defaults.
_KW: dict[str, Any] = {"kw_only": True} if sys.version_info >= (3, 10) else {}


@dataclass(frozen=True, **_KW)
class SideOptions:
    """One side as the command line gave it. None: not given, so the environment (SOURCE_DOCKER_* /
    TARGET_DOCKER_*), a prompt or a default decides. The password only ever comes from --password-stdin."""

    side: ClassVar[str] = ""
    registry: str | None = None
    repository: str | None = None
    username: str | None = None
    password: Secret | None = None
    tag: str | None = None
    ca_file: Path | None = None
    insecure: bool = False
    plain_http: bool = False

    def values(self) -> dict[str, str | None]:
        """The four values that may also come from the environment or a prompt."""
        return {"registry": self.registry, "repository": self.repository, "username": self.username,
                "tag": self.tag}


class SourceOptions(SideOptions):
    """The connected registry images are read from (export, mirror, releases, manifests new)."""

    side: ClassVar[str] = "source"


class TargetOptions(SideOptions):
    """The registry images are written to (import, mirror)."""

    side: ClassVar[str] = "target"


@dataclass(frozen=True, **_KW)
class Selection:
    """Which images: names (or full references), an image list file, or a shipped release; none of them
    means the shipped list of the source tag."""

    names: tuple[str, ...] = ()
    release: str | None = None
    images_file: Path | None = None


@dataclass(frozen=True, **_KW)
class ExportOptions:
    selection: Selection
    output: Path | None = None
    platform: str | None = None
    jobs: int = DEFAULT_JOBS
    level: int = 3
    threads: int = -1
    force: bool = False
    split_size: str | None = None
    space_check: bool = True
    cache_dir: Path | None = None
    use_cache: bool = True
    cache_max_bytes: int | None = None  # None: the cache's default cap
    since: tuple[Path, ...] = ()
    sign_key: Path | None = None
    skip_missing: bool = False
    installer_targets: tuple[Target, ...] = ()
    engine: str = "registry"  # arcgap.commands.endpoints.ENGINES
    output_format: str = "bundle"  # arcgap.commands.endpoints.FORMATS
    from_local: bool = False
    releases: tuple[str, ...] = ()  # an upgrade chain: repeated --release (selection.release is then None)
    from_release: str | None = None  # an upgrade chain: the release the site runs (not carried)
    to_release: str | None = None  # ... up to this one (default: the newest at the source)
    referrers: bool = True  # OCI 1.1 referrers (signatures, SBOMs, attestations) of every manifest carried
    referrers_types: tuple[str, ...] = ()  # only these artifactTypes (empty: every type)


@dataclass(frozen=True, **_KW)
class ImportOptions:
    bundle: Path
    jobs: int = DEFAULT_JOBS
    dry_run: bool = False
    verify_key: Path | None = None
    accept_partial_signature: bool = False  # a signature of format < 3 (arcgap.yaml only) passes --verify-key
    receipt: Path | None = None
    engine: str = "registry"


@dataclass(frozen=True, **_KW)
class MirrorOptions:
    selection: Selection
    jobs: int = DEFAULT_JOBS
    dry_run: bool = False


@dataclass(frozen=True, **_KW)
class ReleasesOptions:
    image: str = ""  # the reference image whose tags name the releases ("" → arc-controller)


@dataclass(frozen=True, **_KW)
class ManifestsNewOptions:
    tag: str
    previous: str | None = None
    add: tuple[str, ...] = ()
    output: Path | None = None
    force: bool = False
    jobs: int = 8


@dataclass(frozen=True, **_KW)
class NetworkOptions:
    """How long a run keeps at one registry request: the retry budget per request (429/503/5xx/lost
    connections, waits with full jitter) and the stall window (a body slower than ``min_bytes_per_s`` for
    ``stall_s`` is dropped and resumed). The fields after those are no operator's choice (arcgap learns each
    registry's upload limits itself): None keeps the defaults where they are defined
    (arcgap.registry.transport.RetryPolicy, arcgap.registry.upload.UPLOAD_CHUNK_BYTES,
    arcgap.registry.ranged.RangedOptions, arcgap.transfer.background.BACKGROUND_MAX_BYTES); a fault test gives
    small ones through ``arcgap.cli.run(argv, network=...)``."""

    retry_budget_s: float = DEFAULT_RETRY_BUDGET_S
    stall_s: float = DEFAULT_STALL_S
    min_bytes_per_s: int = DEFAULT_MIN_BYTES_PER_S
    retry_base_delay_s: float | None = None  # the first backoff before full jitter
    upload_chunk_bytes: int | None = None  # bytes per PATCH before what the registry says (min/max, 413)
    ranged: RangedOptions | None = None  # when and how a large blob is read in parallel ranges
    background_max_bytes: int | None = None  # an import holds blobs up to this size to upload them beside the read


@dataclass(frozen=True, **_KW)
class RunContext:
    """What a run may use besides its options: prompts (None: never ask), the reporter (progress, and the one
    channel for warnings) and the environment (the process's, unless a test gives one)."""

    prompt: Prompt | None = None
    secret_prompt: SecretPrompt | None = None
    reporter: Reporter = field(default_factory=Reporter)
    network: NetworkOptions = field(default_factory=NetworkOptions)
    # never in the repr: the environment holds SOURCE_/TARGET_DOCKER_PASSWORD and the signing passphrase
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ, repr=False)

    def warn(self, text: str) -> None:
        self.reporter.warn(text)
