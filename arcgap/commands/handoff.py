"""Glue for ``arcgap handoff``, ``import --handoff`` and ``arcgap preflight``: what a release is (a bundle, a
receipt or an image list), the target's values, then the hand-off files or the preflight. No printing here.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from arcgap.arc import handoff as render
from arcgap.arc.imagelist import ImageList, load_shipped_release, parse_image_list, shipped_releases
from arcgap.bundle.format import TableOfContents
from arcgap.bundle.parts import SIDECAR_FORMAT
from arcgap.bundle.reader import open_bundle
from arcgap.bundle.smallfile import Wording, read_small_file
from arcgap.commands.options import RunContext, TargetOptions
from arcgap.commands.settings import Endpoint, collect_endpoint, env_name
from arcgap.errors import BundleFormatError, LocalIOError, UsageError, option
from arcgap.transfer.preflight import (
    Expected,
    PreflightResult,
    expected_from_list,
    expected_from_receipt,
    expected_from_toc,
)
from arcgap.transfer.receipt import Receipt, is_receipt
from arcgap.util.parallel import DEFAULT_JOBS
from arcgap.util.secret import Secret

# Keyword-only where the language has it (3.10+), as arcgap.commands.options does.
_KW: dict[str, Any] = {"kw_only": True} if sys.version_info >= (3, 10) else {}
INPUT_HINT = "give a bundle (.tar.zst, a part or NAME.parts.yaml), an import receipt or an image list (YAML)"
LIST_FORMAT = "arcgap-images/v1"
_WORDING = Wording(hint=INPUT_HINT, kinds="a bundle, receipt or image list")


@dataclass(frozen=True)
class ReleaseInput:
    """What says which images a release has: exactly one of the three is set."""

    origin: str
    toc: TableOfContents | None = None
    receipt: Receipt | None = None
    image_list: ImageList | None = None


def load_release_input(path: Path) -> ReleaseInput:
    """Detect and read ``path``: a bundle's table of contents (never its blobs), a receipt or an image list."""
    small = read_small_file(path, _WORDING)
    if small is None:
        return _from_bundle(path)
    text, doc = small.text, small.doc
    if is_receipt(doc):
        return ReleaseInput(str(path), receipt=Receipt.from_yaml(text, origin=str(path)))
    if isinstance(doc, dict) and doc.get("format") == SIDECAR_FORMAT:
        return _from_bundle(path)
    if isinstance(doc, dict) and doc.get("format") == LIST_FORMAT:
        try:
            return ReleaseInput(str(path), image_list=parse_image_list(text.decode("utf-8"), origin=str(path)))
        except UnicodeDecodeError:
            raise UsageError(f"image list {path} is not UTF-8 text") from None
    raise BundleFormatError(f"{path}: not a bundle, receipt or image list", hint=INPUT_HINT)


def _from_bundle(path: Path) -> ReleaseInput:
    with open_bundle(path) as reader:  # reads arcgap.yaml (and checks the sidecar's identity), no blob
        return ReleaseInput(str(path), toc=reader.toc)


def choose_input(source: Path | None, release: str | None) -> ReleaseInput | None:
    """The file given, else the shipped list of ``--release`` when there is one (None: no image set known)."""
    if source is not None:
        return load_release_input(source)
    if release is not None:
        return ReleaseInput(f"release {release}", image_list=load_shipped_release(release))
    return None


def target_endpoint(
    given: ReleaseInput | None, target: TargetOptions, context: RunContext, *, ask_password: bool = True,
) -> Endpoint:
    """TARGET_DOCKER_*: option, else environment, else what the receipt recorded, else a prompt.

    ``ask_password=False`` (a hand-off without a secret) keeps the username but never asks for or reads a
    password."""
    receipt = given.receipt if given is not None else None
    defaults = {"registry": receipt.target_registry if receipt else None,
                "repository": receipt.target_repository if receipt else None, "username": None, "tag": None}
    environ = context.environ
    username: str | None = None
    if not ask_password:
        username = next((v.strip() for v in (target.username, environ.get(env_name("target", "username")))
                         if v is not None and v.strip()), None)
        target = replace(target, username=None, password=None)
        environ = {k: v for k, v in environ.items() if k != env_name("target", "username")}
    endpoint = collect_endpoint(target, environ=environ, defaults=defaults, prompt=context.prompt,
                                secret_prompt=context.secret_prompt)
    return endpoint if username is None else replace(endpoint, username=username)


def expected_images(given: ReleaseInput, endpoint: Endpoint, *, release: str | None) -> list[Expected]:
    """The images the target should hold, at ``endpoint``'s repository; with ``release``, only that release's."""
    if given.receipt is not None:
        images = expected_from_receipt(given.receipt, repository=endpoint.repository)
    elif given.toc is not None:
        images = expected_from_toc(given.toc, registry=endpoint.registry, repository=endpoint.repository,
                                        tag=endpoint.tag)
    else:
        assert given.image_list is not None
        tag = endpoint.tag or release or given.image_list.release
        if tag is None:
            raise UsageError(f"{given.origin} names no release tag", hint=f"give {option('release')} TAG or "
                                                                          f"{option('target.tag')} TAG")
        images = expected_from_list(given.image_list, repository=endpoint.repository, tag=tag)
    if release is not None and given.image_list is None:
        chosen = [e for e in images if e.tag == release]
        if not chosen:
            tags = ", ".join(sorted({e.tag for e in images}))
            raise UsageError(f"release {release} is not in {given.origin} (tags: {tags})",
                             hint=f"give one of those tags with {option('release')}, or leave it out")
        images = chosen
    return images


# -- the hand-off -------------------------------------------------------------------------------------------


@dataclass
class HandoffResult:
    directory: Path | None
    handoff: render.Handoff
    files: list[str] = field(default_factory=list)  # names written in ``directory``
    secret_files: list[str] = field(default_factory=list)  # of those, the 0600 ones holding the password
    images: list[str] = field(default_factory=list)  # the release's references at the target
    secret_yaml: bytes | None = None  # the pull secret, only when it goes to standard output
    referrers: render.ReferrerNote | None = None  # the release's signatures, SBOMs, attestations

    def to_dict(self) -> dict[str, Any]:
        h = self.handoff
        return {
            "command": "handoff", "directory": str(self.directory) if self.directory else None,
            "registry": h.registry, "repository": h.repository, "tag": h.tag, "username": h.username,
            "secret_name": h.secret_name, "image_pull_policy": h.pull_policy, "namespace": h.namespace,
            "bootstrapper_image": h.bootstrapper_image, "deployment_profile": render.docker_values(h),
            "extension_config": render.extension_config(h), "files": self.files, "secret_files": self.secret_files,
            "images": self.images,
            "referrers": self.referrers.to_dict() if self.referrers else None,
        }


def planned_files(*, with_secret: bool, secret_to_stdout: bool) -> list[str]:
    names = [render.CONTROL_PATCH, render.CONTROL_FRAGMENT, render.DC_CONFIG_SCRIPT, render.EXTENSION_CONFIG,
             render.EXTENSION_SCRIPT, render.NOTES]
    if with_secret and not secret_to_stdout:
        names += [render.PULL_SECRET, render.EXTENSION_PROTECTED]
    return names


def check_handoff_dir(directory: Path, *, force: bool) -> None:
    """Refuse before anything else happens (an import, a prompt): a file where the directory should be, or a
    hand-off already there (without ``force``)."""
    if directory.exists() and not directory.is_dir():
        raise LocalIOError(f"hand-off directory {directory} is a file", hint="choose another directory")
    if not force and directory.is_dir():
        present = [n for n in planned_files(with_secret=True, secret_to_stdout=False) if (directory / n).exists()]
        if present:
            raise LocalIOError(f"hand-off directory {directory} already holds {', '.join(sorted(present))}",
                               hint=f"choose another directory, or pass {option('force')} to 'arcgap handoff' to "
                                    "replace them")
    parent = directory if directory.is_dir() else (directory.parent if str(directory.parent) else Path("."))
    if parent.exists() and not os.access(parent, os.W_OK | os.X_OK):
        raise LocalIOError(f"cannot write the hand-off to {directory}: permission denied",
                           hint="choose a directory you can write to")


def _write(directory: Path, name: str, data: bytes, *, secret: bool) -> None:
    """Atomically, through a temporary file that mkstemp creates 0600: a secret is never readable by others,
    not even for a moment; other files are made 0644 before the rename."""
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600 if secret else 0o644)
        os.replace(tmp, directory / name)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_handoff(
    directory: Path | None, h: render.Handoff, *, password: Secret | None, images: Sequence[str],
    secret_to_stdout: bool = False, referrers: render.ReferrerNote | None = None,
) -> HandoffResult:
    """Render every file and write them into ``directory`` (created if missing). The pull secret and the
    extension's protected settings are written only with a password, 0600; with ``secret_to_stdout`` the secret
    is returned for the caller to print instead, and no file holds the password."""
    with_secret = h.username is not None and password is not None
    result = HandoffResult(directory, h, images=list(images), referrers=referrers)
    if with_secret and secret_to_stdout:
        assert password is not None
        result.secret_yaml = render.pull_secret_yaml(h, password)
    if directory is None:
        return result
    files: list[tuple[str, bytes, bool]] = [
        (render.CONTROL_PATCH, _json(render.control_patch(h)), False),
        (render.CONTROL_FRAGMENT, _json(render.control_fragment(h)), False),
        (render.DC_CONFIG_SCRIPT, render.dc_config_script(h).encode(), False),
        (render.EXTENSION_CONFIG, _json(render.extension_config(h)), False),
        (render.EXTENSION_SCRIPT, render.extension_script(h).encode(), False),
    ]
    if with_secret and not secret_to_stdout:
        assert password is not None
        files += [(render.PULL_SECRET, render.pull_secret_yaml(h, password), True),
                  (render.EXTENSION_PROTECTED, render.extension_protected(password), True)]
    notes = render.notes(h, references=images, secret_written=with_secret and not secret_to_stdout,
                         secret_to_stdout=with_secret and secret_to_stdout, referrers=referrers)
    files.append((render.NOTES, notes.encode(), False))
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for name, data, secret in files:
            _write(directory, name, data, secret=secret)
    except OSError as exc:
        raise LocalIOError(f"cannot write the hand-off to {directory}: {exc.strerror or exc}",
                           hint=f"choose a directory you can write to ({option('output')})") from None
    result.files = [name for name, _, _ in files]
    result.secret_files = [name for name, _, secret in files if secret]
    return result


def _json(doc: object) -> bytes:
    return (json.dumps(doc, indent=2) + "\n").encode()


def handoff_for(
    images: Sequence[Expected], endpoint: Endpoint, *, release: str | None, secret_name: str, pull_policy: str,
    namespace: str | None,
) -> tuple[render.Handoff, list[str]]:
    """The hand-off values for the release among ``images`` (the newest, or ``release``), and its references."""
    tag = render.choose_release([e.tag for e in images], release) if images else (release or endpoint.tag)
    if tag is None:
        raise UsageError("which release? nothing names its tag", hint=f"give {option('receipt')} FILE, a bundle, or "
                                                                      f"{option('release')} TAG")
    h = render.Handoff(registry=endpoint.registry, repository=endpoint.repository, tag=tag,
                       username=endpoint.username, secret_name=secret_name, pull_policy=pull_policy,
                       namespace=namespace)
    refs = [e.reference(endpoint.registry) for e in images if e.tag == tag]
    return h, refs


@dataclass(frozen=True, **_KW)
class HandoffOptions:
    """``arcgap handoff``: where the release comes from, where the files go, and the names in them."""

    source: Path | None = None  # a receipt, a bundle or an image list; None: --release alone
    release: str | None = None
    output: Path | None = None  # None: ./arc-handoff-<tag>
    secret_name: str = render.DEFAULT_SECRET_NAME
    pull_policy: str = render.DEFAULT_PULL_POLICY
    namespace: str | None = None
    secret_to_stdout: bool = False
    no_secret: bool = False
    force: bool = False


def run_handoff(target: TargetOptions, options: HandoffOptions, context: RunContext) -> HandoffResult:
    """``arcgap handoff``: no network at all; the receipt (or bundle, or release) and the target's values."""
    o = options
    if o.source is not None:
        given: ReleaseInput | None = load_release_input(o.source)
    elif o.release is not None and o.release in shipped_releases():
        given = choose_input(None, o.release)  # the shipped list names the images (for the notes)
    else:
        given = None  # the tag alone: --release or TARGET_DOCKER_TAG
    output = o.output
    if output is not None:
        check_handoff_dir(output, force=o.force)  # before any prompt
    endpoint = target_endpoint(given, target, context, ask_password=not o.no_secret)
    images = expected_images(given, endpoint, release=None) if given is not None else []
    h, refs = handoff_for(images, endpoint, release=o.release, secret_name=o.secret_name,
                          pull_policy=o.pull_policy, namespace=o.namespace)
    if images and not any(e.name == render.BOOTSTRAPPER and e.tag == h.tag for e in images):
        context.warn(f"the release has no {render.BOOTSTRAPPER} image at the target: {h.bootstrapper_image} "
                     "(systemDefaultValues.image) will not pull")
    if output is None:
        output = Path(f"arc-handoff-{h.tag}")
        check_handoff_dir(output, force=o.force)
    return write_handoff(output, h, password=None if o.no_secret else endpoint.password, images=refs,
                         secret_to_stdout=o.secret_to_stdout, referrers=referrer_note(images, h.tag))


def handoff_after_import(directory: Path, endpoint: Endpoint, receipt: Receipt, context: RunContext) -> HandoffResult:
    """``import --handoff DIR``: the hand-off of the release just imported, with the import's own credentials."""
    images = expected_from_receipt(receipt, repository=endpoint.repository)
    h, refs = handoff_for(images, endpoint, release=None, secret_name=render.DEFAULT_SECRET_NAME,
                          pull_policy=render.DEFAULT_PULL_POLICY, namespace=None)
    if not any(e.name == render.BOOTSTRAPPER and e.tag == h.tag for e in images):
        context.warn(f"the release has no {render.BOOTSTRAPPER} image: {h.bootstrapper_image} will not pull")
    placed = receipt.referrers or {}  # this run's own Placed.to_dict(), not a file read back
    count = sum(int(placed.get(k) or 0) for k in ("by_api", "by_fallback", "by_tag"))
    note = render.ReferrerNote(way=placed.get("way"), placed=count) if count else None
    return write_handoff(directory, h, password=endpoint.password, images=refs, referrers=note)


def referrer_note(images: Sequence[Expected], tag: str) -> render.ReferrerNote | None:
    """What a bundle says travels with the release ``tag``: its referrers, by kind (a receipt or a list: None)."""
    kinds: dict[str, int] = {}
    for e in images:
        if e.tag == tag:
            for r in e.referrers:
                kinds[r.kind] = kinds.get(r.kind, 0) + 1
    return render.ReferrerNote(kinds=tuple(sorted(kinds.items()))) if kinds else None


# -- the preflight ------------------------------------------------------------------------------------------


@dataclass(frozen=True, **_KW)
class PreflightOptions:
    """``arcgap preflight``: what the target should hold (a file, or a shipped release) and how hard to look."""

    source: Path | None = None
    release: str | None = None
    jobs: int = DEFAULT_JOBS
    blobs: bool = False


def run_preflight(target: TargetOptions, options: PreflightOptions, context: RunContext) -> PreflightResult:
    """``arcgap preflight``: only the target is asked."""
    from arcgap.commands.clients import ClientPool, side_tls
    from arcgap.transfer.preflight import preflight

    o = options
    if o.source is None and o.release is None:
        raise UsageError("what should the target hold?", hint=INPUT_HINT + f", or {option('release')} TAG for a "
                                                                           "shipped list")
    given = choose_input(o.source, o.release)
    assert given is not None
    endpoint = target_endpoint(given, target, context)
    images = expected_images(given, endpoint, release=o.release)
    tls = side_tls(endpoint, ca_file=target.ca_file, insecure=target.insecure)
    # The pool tells a registry's error which side it comes from: its hint names TARGET_DOCKER_*.
    with ClientPool(endpoint, tls, max_connections=o.jobs + 2, environ=context.environ) as pool:
        return preflight(pool(endpoint.registry), images, repository=endpoint.repository, jobs=o.jobs,
                         blobs=o.blobs)
