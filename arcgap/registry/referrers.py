"""OCI 1.1 referrers, the wire protocol: who refers to a manifest, and how the registry said so.

Three ways, asked in this order (:func:`list_referrers`):

- the referrers API, ``GET /v2/<name>/referrers/<digest>``, an image index, following ``Link`` rel="next" pages;
  a 404 (or an answer that is not an index) means the registry has no such API;
- else the fallback tag ``sha256-<hex>``, accepted only when it is an image index whose every entry, once
  fetched, names that digest as its ``subject`` (GitLab answers the fallback tag with the image itself);
- the legacy cosign tags ``sha256-<hex>.sig``, ``.att``, ``.sbom`` (no ``subject``; found by name only).

Which of those tags exist is answered by one tag list of the repository (:func:`tag_set`, every page) when the
registry gives one; only a registry refusing to list tags is asked about each tag of each digest (one GET each).

Every manifest is fetched by digest through :meth:`RegistryClient.get_manifest`, which checks its digest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from arcgap.errors import ArcgapError, NetworkError, NotFoundError, RegistryError
from arcgap.oci.digest import Digest
from arcgap.oci.mediatypes import OCI_INDEX, is_index
from arcgap.registry.auth import repo_scope
from arcgap.registry.client import FetchedManifest, RegistryClient, next_link

MAX_REFERRER_PAGES = 1000  # an API that keeps linking to new pages is an error, not a loop
MAX_REFERRERS_BYTES = 4 * 1024 * 1024  # one page of the API, like a manifest
COSIGN_SUFFIXES = (".sig", ".att", ".sbom")
TAG_LIST_REFUSED = (401, 403, 404)  # a registry that will not list tags is asked tag by tag instead

API = "api"
FALLBACK = "fallback"


@dataclass(frozen=True)
class Referrer:
    """One manifest that refers to ``subject``; ``found_by`` is "api", "fallback" or "tag" (legacy cosign)."""

    subject: Digest
    manifest: FetchedManifest
    artifact_type: str
    found_by: str
    tag: str | None = None  # legacy cosign: the tag it is carried under (``sha256-<hex>.sig``)


def fallback_tag(digest: Digest) -> str:
    """The referrers tag schema of the OCI distribution spec: ``<alg>-<hex>``."""
    return str(digest).replace(":", "-", 1)


def subject_of(raw: bytes) -> Digest | None:
    """The ``subject`` digest of manifest bytes, or None."""
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    subject = doc.get("subject") if isinstance(doc, dict) else None
    digest = subject.get("digest") if isinstance(subject, dict) else None
    if not isinstance(digest, str):
        return None
    try:
        return Digest.parse(digest)
    except Exception:  # noqa: BLE001 - a malformed subject is no subject
        return None


def artifact_type_of(raw: bytes) -> str:
    """``artifactType``, else the config's media type (the spec's rule for the referrers list)."""
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        return ""
    if not isinstance(doc, dict):
        return ""
    kind = doc.get("artifactType")
    if isinstance(kind, str):
        return kind
    config = doc.get("config")
    kind = config.get("mediaType") if isinstance(config, dict) else None
    return kind if isinstance(kind, str) else ""


def _entries(raw: bytes, what: str) -> list[tuple[Digest, str]]:
    """(digest, artifactType) of each entry of an index's ``manifests``."""
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        raise RegistryError(f"{what}: the answer is not JSON") from None
    items = doc.get("manifests") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        raise RegistryError(f"{what}: the answer is not an image index")
    out: list[tuple[Digest, str]] = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("digest"), str):
            raise RegistryError(f"{what}: an entry has no digest")
        try:
            digest = Digest.parse(item["digest"])
        except Exception:  # noqa: BLE001
            raise RegistryError(f"{what}: an entry has a malformed digest {str(item['digest'])[:80]!r}") from None
        kind = item.get("artifactType")
        out.append((digest, kind if isinstance(kind, str) else ""))
    return out


def api_entries(client: RegistryClient, repository: str, digest: Digest) -> list[tuple[Digest, str]] | None:
    """The referrers API's entries for ``digest`` over every page, or None when the registry has no such API."""
    what = f"listing referrers of {client.registry}/{repository}@{digest}"
    url: str | None = f"/v2/{repository}/referrers/{digest}"
    seen: set[str] = set()
    out: list[tuple[Digest, str]] = []
    first = True
    while url:
        if url in seen or len(seen) >= MAX_REFERRER_PAGES:
            raise RegistryError(f"{what}: the registry's pages do not end (page {len(seen) + 1})")
        seen.add(url)
        resp = client.send("GET", url, what=what, ok=(404, 405, 400),
                            scopes=frozenset({repo_scope(repository, client.read_actions)}),
                            headers={"Accept": OCI_INDEX})
        body = resp.read()[:MAX_REFERRERS_BYTES + 1]
        content_type = resp.headers.get("content-type", "").split(";")[0].strip()
        if resp.status_code >= 400 or (first and content_type != OCI_INDEX):
            if first:
                return None  # no API: distribution answers 404 (some registries 400/405, or HTML)
            raise RegistryError(f"{what}: page {len(seen)} answered {resp.status_code}")
        if len(body) > MAX_REFERRERS_BYTES:
            raise RegistryError(f"{what}: a page larger than {MAX_REFERRERS_BYTES} bytes")
        out.extend(_entries(body, what))
        first = False
        following = next_link(resp.headers.get("link", ""))
        url = None if following is None else (
            following if following.startswith(("http://", "https://")) else client.base_url + following)
    return out


def tag_set(client: RegistryClient, repository: str) -> frozenset[str] | None:
    """Every tag of ``repository`` (all pages), or None when the registry refuses to list them (401, 403, 404:
    then each tag is asked for by name)."""
    try:
        return frozenset(client.list_tags(repository, ok=TAG_LIST_REFUSED))
    except ArcgapError as exc:
        if exc.detail is not None and exc.detail.status in TAG_LIST_REFUSED:
            return None
        raise


def tagged_manifest(client: RegistryClient, repository: str, tag: str,
                    tags: frozenset[str] | None = None) -> FetchedManifest | None:
    """The manifest ``tag`` points at, or None when there is no such tag. ``tags``: the repository's tag list
    (None: unknown, so the registry is asked); a listed tag gone since is no tag. One GET either way: its 404
    says as much as a HEAD's would, and a tag that exists needs no second request."""
    if tags is not None and tag not in tags:
        return None
    try:
        return client.get_manifest(repository, tag)
    except NotFoundError:
        return None  # no such tag (or deleted between the tag list and this request)


def fallback_index(client: RegistryClient, repository: str, digest: Digest,
                   tags: frozenset[str] | None = None) -> FetchedManifest | None:
    """The manifest the fallback tag of ``digest`` points at, or None when the tag does not exist (``tags``:
    the repository's tag list, when known)."""
    return tagged_manifest(client, repository, fallback_tag(digest), tags)


def listed_referrers(client: RegistryClient, repository: str, digest: Digest, *,
                     api: bool | None = None) -> set[Digest]:
    """The digests the target lists for ``digest``: its referrers API, else its fallback tag index (unfetched).
    ``api`` False: the registry is known to have no such API (probed), so only the fallback tag is asked."""
    entries = api_entries(client, repository, digest) if api is not False else None
    if entries is None:
        index = fallback_index(client, repository, digest)
        if index is None or not is_index(index.media_type):
            return set()
        entries = _entries(index.raw, f"fallback tag {fallback_tag(digest)}")
    return {d for d, _ in entries}


def list_referrers(client: RegistryClient, repository: str, digest: Digest, *, api: bool | None = None,
                   cosign_tags: bool = True, tags: frozenset[str] | None = None,
                   listed: list[tuple[Digest, str]] | None = None) -> tuple[list[Referrer], bool]:
    """Every referrer of ``digest`` in ``repository``, each fetched and checked, and whether the API answered.

    ``api``: None asks the API first; False goes straight to the fallback tag (the registry said it has none).
    ``tags``: the repository's tag list (:func:`tag_set`): only the fallback and cosign tags it holds are
    fetched; None asks for each of them by name. ``listed``: the API's entries for ``digest``, already asked
    (:func:`api_entries`), used instead of asking again.
    """
    found: dict[Digest, Referrer] = {}
    if listed is not None:
        entries: list[tuple[Digest, str]] | None = listed
    else:
        entries = api_entries(client, repository, digest) if api is not False else None
    has_api = entries is not None
    if entries is not None:
        for ref_digest, listed_type in entries:
            fetched = client.get_manifest(repository, str(ref_digest))
            if subject_of(fetched.raw) != digest:
                raise RegistryError(f"{client.registry}/{repository}: the referrers API lists {ref_digest} for "
                                    f"{digest}, whose subject is another manifest")
            found.setdefault(ref_digest, Referrer(digest, fetched, listed_type or artifact_type_of(fetched.raw), API))
    else:
        index = fallback_index(client, repository, digest, tags)
        if index is not None and is_index(index.media_type):
            candidates = []
            try:
                listed = _entries(index.raw, f"fallback tag {fallback_tag(digest)}")
            except RegistryError:
                listed = []
            for ref_digest, listed_type in listed:
                fetched = client.get_manifest(repository, str(ref_digest))
                candidates.append((fetched, listed_type))
            # Accepted only when every entry names this digest as its subject (GitLab answers the tag with the
            # image itself: an index whose children are platforms, not referrers).
            if candidates and all(subject_of(c.raw) == digest for c, _ in candidates):
                for c, listed_type in candidates:  # the type as the source lists it (cosign: its config's)
                    kind = listed_type or artifact_type_of(c.raw)
                    found.setdefault(c.digest, Referrer(digest, c, kind, FALLBACK))
    if cosign_tags:
        for suffix in COSIGN_SUFFIXES:
            tag = fallback_tag(digest) + suffix
            fetched = tagged_manifest(client, repository, tag, tags)
            if fetched is None:
                continue
            if fetched.digest not in found:
                found[fetched.digest] = Referrer(digest, fetched, artifact_type_of(fetched.raw), "tag", tag)
    return list(found.values()), has_api


# -- placing at a target ------------------------------------------------------------------------------------

MERGE_ATTEMPTS = 3  # read-merge-write rounds when another writer changes the fallback tag between our read and write


def push_referrer(client: RegistryClient, repository: str, raw: bytes, media_type: str, subject: Digest) -> bool:
    """PUT a referrer by digest; True when the registry answered ``OCI-Subject: <subject>`` (it indexes referrers
    itself). A lost answer is settled by :meth:`RegistryClient.put_manifest` (it asks before sending again),
    and then the registry's word on the subject is unknown: False, so the fallback tag is kept too."""
    digest = Digest.of(raw)
    what = f"pushing referrer {client.registry}/{repository}@{digest}"
    try:
        resp = client.send("PUT", f"/v2/{repository}/manifests/{digest}", what=what, mutates=True,
                            scopes=frozenset({repo_scope(repository, "pull,push")}),
                            headers={"Content-Type": media_type}, content=raw)
    except NetworkError:
        client.put_manifest(repository, str(digest), raw, media_type)
        return False
    resp.close()
    if resp.status_code >= 300:  # refused or a 5xx: the settling PUT asks, then sends once more or raises
        client.put_manifest(repository, str(digest), raw, media_type)
        return False
    return resp.headers.get("oci-subject", "").strip() == str(subject)


def descriptor_of(raw: bytes, media_type: str, artifact_type: str = "") -> dict[str, object]:
    """The fallback index entry for a referrer: mediaType, digest, size, artifactType (as the source listed it,
    else the manifest's own) and annotations."""
    entry: dict[str, object] = {"mediaType": media_type, "digest": str(Digest.of(raw)), "size": len(raw)}
    kind = artifact_type or artifact_type_of(raw)
    if kind:
        entry["artifactType"] = kind
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        doc = None
    annotations = doc.get("annotations") if isinstance(doc, dict) else None
    if isinstance(annotations, dict) and annotations:
        entry["annotations"] = annotations
    return entry


def merge_fallback(client: RegistryClient, repository: str, subject: Digest,
                   referrers: list[tuple[bytes, str, str]]) -> int:
    """Add ``referrers`` (raw, media type, artifact type) to the fallback tag index of ``subject``: read what
    is there, keep every entry (someone else's too), add the missing ones, write, and read back; another
    writer's change in between is merged again. Returns how many entries were added. Refuses to replace a
    tag that holds anything but an image index (GitLab's answer: the image itself)."""
    tag = fallback_tag(subject)
    wanted = [descriptor_of(raw, mt, kind) for raw, mt, kind in referrers]
    added = 0
    for _ in range(MERGE_ATTEMPTS):
        current = fallback_index(client, repository, subject)
        if current is not None and not is_index(current.media_type):
            raise RegistryError(f"{client.registry}/{repository}:{tag} holds a {current.media_type} that is not a "
                                f"referrers index; left as it is, so {len(wanted)} referrers of {subject.short} "
                                "are not findable by the fallback tag")
        doc: dict[str, object] = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
        if current is not None:
            try:
                doc = json.loads(current.raw)
            except (ValueError, RecursionError):
                raise RegistryError(f"{client.registry}/{repository}:{tag}: the fallback index is not JSON") from None
            if not isinstance(doc, dict) or not isinstance(doc.get("manifests"), list):
                raise RegistryError(f"{client.registry}/{repository}:{tag}: the fallback index has no manifests")
        entries: list[object] = list(doc["manifests"])  # type: ignore[arg-type]
        have = {e.get("digest") for e in entries if isinstance(e, dict)}
        missing = [w for w in wanted if w["digest"] not in have]
        if not missing:
            return added
        doc["manifests"] = entries + missing
        raw = json.dumps(doc, separators=(",", ":")).encode()
        client.put_manifest(repository, tag, raw, OCI_INDEX)
        added += len(missing)
        if client.head_manifest(repository, tag) == Digest.of(raw):  # read back: is our index what it holds?
            return added
    raise RegistryError(f"{client.registry}/{repository}:{tag}: the fallback index kept changing under us "
                        f"({MERGE_ATTEMPTS} rounds of read, merge and write)")


def probe_api(client: RegistryClient, repository: str, digest: Digest) -> bool:
    """Does the registry serve the referrers API (asked about ``digest``, which need not have any)?"""
    return api_entries(client, repository, digest) is not None
