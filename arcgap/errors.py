"""The one exception root: every expected failure carries a message, a hint and an exit code.

Only ``arcgap.cli`` turns these into ``error: …`` / ``hint: …`` on stderr and an exit status. Errors from a
registry are neutral: they carry a :class:`RegistryDetail` (what the registry did, in its own terms) and no
hint; the command line knows which side (source or target) the registry serves and adds the hint.

A message or hint below ``arcgap.cli`` never spells a command-line option or an environment variable: it names
the setting as data with :func:`option` / :func:`variable` (a neutral key such as ``output`` or ``target.tag``),
and :func:`arcgap.cli.hints.words` writes the names the command line uses (``--output``, ``TARGET_DOCKER_TAG``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

# A setting named in a text: NUL-delimited, so no path, reference or registry answer can spell one by accident.
_SETTING = re.compile("\x00(option|variable):([a-z0-9_.]+)\x00")


def option(key: str) -> str:
    """The command-line option for setting ``key`` (``output``, ``force``, ``target.repository``), as a fact in
    a text; the command line words it (:func:`arcgap.cli.hints.words`)."""
    return f"\x00option:{key}\x00"


def variable(key: str) -> str:
    """The environment variable for setting ``key`` (``target.tag``, ``sign.passphrase``), as a fact in a text."""
    return f"\x00variable:{key}\x00"


def settings_in(text: str) -> tuple[tuple[str, str], ...]:
    """The settings a text names, as (``"option"``/``"variable"``, key) pairs in order."""
    return tuple((m.group(1), m.group(2)) for m in _SETTING.finditer(text))


def spell(text: str, word: Callable[[str, str], str]) -> str:
    """``text`` with every named setting replaced by ``word(kind, key)`` (the command line's name for it)."""
    return _SETTING.sub(lambda m: word(m.group(1), m.group(2)), text)


class ExitCode:
    """Documented exit statuses (README, "Exit codes")."""

    OK = 0
    INTERNAL = 1  # a bug: unexpected exception
    USAGE = 2  # bad options, bad image list, missing required value
    AUTH = 3  # wrong or missing credentials, access denied
    NOT_FOUND = 4  # image, tag or repository does not exist at the source/target
    NETWORK = 5  # registry unreachable, TLS failure, repeated transient failures
    REGISTRY = 6  # the registry answered with an error we cannot work around
    INTEGRITY = 7  # bundle corrupt or truncated, digest/size mismatch
    BUNDLE_FORMAT = 8  # not a bundle, unsupported format version, hostile member
    LOCAL_IO = 9  # disk full, permission denied, file exists
    TARGET_MISMATCH = 10  # target digest differs from the bundle after push
    SIGNATURE = 11  # --verify-key given: the bundle is unsigned, signed by another key, or its arcgap.yaml changed
    INTERRUPTED = 130


class Fault:
    """What went wrong at a registry (``RegistryDetail.fault``): facts, not advice."""

    UNREACHABLE = "unreachable"  # no connection, or it broke (after the retries)
    TLS_UNTRUSTED = "tls-untrusted"  # the certificate chain is not trusted
    TLS_HANDSHAKE = "tls-handshake"  # TLS failed otherwise (often: the registry speaks plain HTTP)
    TLS_EXPIRED = "tls-expired"  # the certificate expired (or is not valid yet): the date is in the message
    TLS_OTHER_NAME = "tls-other-name"  # the certificate is issued for other names (``RegistryDetail.names``)
    NOT_A_REGISTRY = "not-a-registry"  # GET /v2/ answered neither 200 nor 401
    UNAUTHORIZED = "unauthorized"  # 401 that a fresh token did not cure
    DENIED = "denied"  # 403
    NOT_FOUND = "not-found"  # 404
    TRANSIENT = "transient"  # 408/429/5xx until the retries ran out
    CREDENTIALS = "credentials"  # credentials missing, or refused by the token server
    MALFORMED = "malformed"  # an answer that breaks the protocol (e.g. a header that is no digest)
    NO_REPOSITORY = "no-repository"  # the repository does not exist and pushing does not create it (ECR)
    NAME_REFUSED = "name-refused"  # the registry refuses the repository name (NAME_INVALID: e.g. too deep a path)
    STORAGE_FULL = "storage-full"  # the registry says its storage is full (errno 28, "no space left on device")
    DIGEST_REFUSED = "digest-refused"  # the registry says the bytes it got do not match the digest (DIGEST_INVALID)
    SPARSE_INDEX = "sparse-index"  # the registry refuses an index whose child manifests it lacks (a platform filter)
    BAD_CONTENT = "bad-content"  # the registry served bytes that do not match their digest
    ANSWER = "answer"  # any other error status


@dataclass(frozen=True)
class RegistryDetail:
    """A registry failure in the registry's terms: which registry, during what (the operation and its object,
    e.g. ``fetching manifest host/repo:tag``), the HTTP status and the ``errors[].code`` values of the answer."""

    registry: str
    operation: str
    fault: str  # a Fault value
    status: int = 0
    codes: tuple[str, ...] = ()
    names: tuple[str, ...] = ()  # TLS_OTHER_NAME: the names the certificate is issued for


class ArcgapError(Exception):
    """Base of every expected failure.

    ``detail`` is set on errors from a registry; ``origin`` is the registry client that raised it and ``side``
    ("source"/"target") what the command layer learned from it, so the command line can add the hint.
    """

    exit_code: ClassVar[int] = ExitCode.INTERNAL
    default_hint: ClassVar[str] = ""

    def __init__(self, message: str, *, hint: str | None = None, detail: RegistryDetail | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint
        self.detail = detail
        self.origin: object | None = None
        self.side: str | None = None

    def __str__(self) -> str:
        return self.message

    @property
    def settings(self) -> tuple[tuple[str, str], ...]:
        """The settings the message and hint name (see :func:`option`), as data."""
        return settings_in(self.message) + settings_in(self.hint)


class UsageError(ArcgapError):
    exit_code = ExitCode.USAGE
    default_hint = "run the command with " + option("help") + " for usage"


class AuthError(ArcgapError):
    exit_code = ExitCode.AUTH


class NotFoundError(ArcgapError):
    exit_code = ExitCode.NOT_FOUND


class NetworkError(ArcgapError):
    exit_code = ExitCode.NETWORK


class TLSError(NetworkError):
    pass


class RegistryError(ArcgapError):
    """The registry answered with an error; ``codes`` holds the OCI error codes of ``errors[]``."""

    exit_code = ExitCode.REGISTRY

    def __init__(
        self, message: str, *, hint: str | None = None, status: int = 0, codes: tuple[str, ...] = (),
        detail: RegistryDetail | None = None,
    ) -> None:
        super().__init__(message, hint=hint, detail=detail)
        self.status = status or (detail.status if detail else 0)
        self.codes = codes or (detail.codes if detail else ())


class IntegrityError(ArcgapError):
    exit_code = ExitCode.INTEGRITY
    default_hint = "the bundle is damaged: copy it again from the original, then run 'arcgap verify'"


class BundleFormatError(ArcgapError):
    exit_code = ExitCode.BUNDLE_FORMAT
    default_hint = "the file is damaged or was not written by arcgap: copy it again from the original"


class LocalIOError(ArcgapError):
    exit_code = ExitCode.LOCAL_IO


class TargetMismatchError(ArcgapError):
    exit_code = ExitCode.TARGET_MISMATCH


class MissingBaseError(NotFoundError):
    """A differential bundle relies on blobs the target does not hold: its base was not imported there."""


class SignatureError(ArcgapError):
    exit_code = ExitCode.SIGNATURE
