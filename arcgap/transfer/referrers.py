"""Referrer discovery for a transfer: every referrer of every manifest carried, and referrers of referrers.

Pure orchestration over :mod:`arcgap.registry.referrers`: breadth first from the roots (an image's top manifest
and each index child), each subject asked once, to ``MAX_DEPTH`` levels (a signature on an SBOM on an image is
two). The registry is probed once a run: after the first subject whose API call answers 404, the rest go
straight to the fallback tag. Each repository's tags are listed once (every page), so only the fallback and
legacy cosign tags that exist are fetched; a registry that refuses the list (401/403/404) is asked tag by tag,
and its refusal is remembered for the run, so its other repositories do not ask for a list again. ``types``
keeps only referrers of those artifact types (legacy cosign tags carry no type and are always kept); a dropped
referrer's own referrers are not asked (their subject would not be carried).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from arcgap.bundle.format import MANIFEST_KINDS, BlobEntry, needed_version
from arcgap.bundle.referrers import ReferrerEntry
from arcgap.oci.digest import Digest
from arcgap.oci.mediatypes import is_index, parse_manifest
from arcgap.registry.client import RegistryClient
from arcgap.registry.referrers import Referrer, api_entries, list_referrers, tag_set
from arcgap.registry.resolve import ResolvedImage, Wanted
from arcgap.transfer.plan import ExportPlan
from arcgap.util.parallel import DEFAULT_JOBS, each, lookup_jobs

MAX_DEPTH = 4
MAX_REFERRERS = 10_000  # per run; a registry listing more is refused rather than followed


@dataclass
class Discovery:
    """What :func:`discover` found: the referrers in the order to place them (subjects before referrers)."""

    referrers: list[Referrer] = field(default_factory=list)
    has_api: bool | None = None  # None: never asked (no roots)
    skipped: list[Referrer] = field(default_factory=list)  # referrers that are indexes: not carried

    def blobs(self) -> dict[Digest, tuple[int, str]]:
        """Config and layer blobs the referrers need: digest → (size, media type)."""
        out: dict[Digest, tuple[int, str]] = {}
        for r in self.referrers:
            parsed = parse_manifest(r.manifest.raw, r.manifest.media_type, what=f"referrer {r.manifest.digest}")
            for d in parsed.blobs:
                out.setdefault(d.digest, (d.size, d.media_type))
        return out

    def counts(self) -> dict[str, int]:
        """Referrers per artifact type (cosign legacy tags as ``tag:.sig`` …)."""
        out: dict[str, int] = {}
        for r in self.referrers:
            key = f"tag:{r.tag.rsplit('.', 1)[-1]}" if r.tag else (r.artifact_type or "unknown")
            out[key] = out.get(key, 0) + 1
        return out


def discover(client: RegistryClient, repository: str, roots: Iterable[Digest], *,
             types: frozenset[str] = frozenset(), has_api: bool | None = None,
             tags: frozenset[str] | None = None,
             listed: Mapping[Digest, list[tuple[Digest, str]]] | None = None) -> Discovery:
    """Referrers of ``roots`` in ``repository``, recursively; ``types`` (empty: all) filters by artifactType.
    ``tags``: the repository's tag list (:func:`~arcgap.registry.referrers.tag_set`; None: ask tag by tag).
    ``listed``: the API's entries already asked for some subjects (the probe's), not asked again."""
    listed = listed or {}
    found = Discovery(has_api=has_api)
    asked: set[Digest] = set()
    level = list(dict.fromkeys(roots))
    seen: set[Digest] = set(level)
    for _ in range(MAX_DEPTH):
        following: list[Digest] = []
        for subject in level:
            if subject in asked:
                continue
            asked.add(subject)
            refs, answered = list_referrers(client, repository, subject, api=found.has_api, tags=tags,
                                            listed=listed.get(subject))
            if found.has_api is None:
                found.has_api = answered
            for r in refs:
                if r.manifest.digest in seen:
                    continue
                seen.add(r.manifest.digest)
                if types and r.artifact_type not in types and not r.tag:
                    continue
                if is_index(r.manifest.media_type):  # an index referrer's children would need a graph of their own
                    found.skipped.append(r)
                    continue
                found.referrers.append(r)
                if len(found.referrers) > MAX_REFERRERS:
                    from arcgap.errors import RegistryError
                    raise RegistryError(f"{client.registry}/{repository}: more than {MAX_REFERRERS} referrers")
                following.append(r.manifest.digest)
        if not following:
            break
        level = following
    return found


@dataclass(frozen=True)
class ReferrerOptions:
    """``enabled`` False: none are looked for; ``types``: only these artifact types (empty: every type)."""

    enabled: bool = True
    types: frozenset[str] = frozenset()


class _Probe:
    """One registry's referrers API probe, asked on a thread of its own: once ``done`` is set, ``answer`` (None:
    not asked) or ``error``, the failure discovery would have met asking the same (raised there, as before: a
    probe that spent the client's retry budget leaves it spent, so the run must not go on as if nothing
    happened)."""

    def __init__(self, repository: str, subject: Digest) -> None:
        self.repository = repository
        self.subject = subject
        self.done = threading.Event()
        self.answer: bool | None = None
        self.entries: list[tuple[Digest, str]] | None = None  # the API's answer for ``subject``, if it has one
        self.error: Exception | None = None

    def run(self, client: RegistryClient) -> None:
        try:
            self.entries = api_entries(client, self.repository, self.subject)
            self.answer = self.entries is not None
        except Exception as exc:  # noqa: BLE001 - handed to discovery, which raises it
            self.error = exc
        finally:
            self.done.set()


class TagListPrefetch:
    """The tag list of each repository the images come from, asked on background threads while the images are
    resolved, so that discovery finds them answered (on a 40 ms path the first layer request came 0.51-0.53 s
    after the tag checks, now 0.41 s). Half the look-up threads: twice as many gained nothing there. With
    ``--jobs 1`` nothing runs beside the resolve, and nothing at all with discovery off. A failure is left for
    discovery to meet again and report; the threads are daemons and take no new repository once :meth:`close` is
    called (on leaving its ``with``), so a dead registry never holds the run's exit.

    :meth:`probe` (the resolve's ``on_each``) also asks each registry's referrers API about the first image
    resolved there, so that discovery starts knowing whether the registry has one, instead of asking one
    image per registry first (one round trip after the resolve); the API's answer for that image is kept
    for its discovery (:meth:`listed`)."""

    def __init__(self, client_for: Callable[[str], RegistryClient], wanted: Iterable[Wanted],
                 options: ReferrerOptions, *, jobs: int = DEFAULT_JOBS) -> None:
        self.lists = _TagLists(client_for)
        self.client_for = client_for
        self._on = options.enabled and jobs > 1
        repositories = ((w.reference.registry, w.reference.repository) for w in wanted)
        self._todo = list(dict.fromkeys(repositories)) if self._on else []
        self._lock = threading.Lock()
        self._closed = False
        self._probes: dict[str, _Probe] = {}
        for _ in range(min(len(self._todo), max(1, lookup_jobs(jobs) // 2))):
            threading.Thread(target=self._work, daemon=True, name="arcgap-taglists").start()

    def _work(self) -> None:
        while True:
            with self._lock:
                if self._closed or not self._todo:
                    return
                registry, repository = self._todo.pop(0)
            try:
                self.lists.get(registry, repository)
            except Exception:  # noqa: BLE001, S112 - discovery asks again and says what went wrong
                continue

    def probe(self, image: ResolvedImage) -> None:
        """Ask ``image``'s registry's referrers API about its top manifest, on a daemon thread, if no image of
        that registry was asked yet."""
        registry = image.wanted.reference.registry
        with self._lock:
            if not self._on or self._closed or registry in self._probes:
                return
            probe = self._probes[registry] = _Probe(image.wanted.reference.repository, image.top.digest)
        try:
            threading.Thread(target=probe.run, args=(self.client_for(registry),), daemon=True,
                             name="arcgap-probe").start()
        except Exception:  # noqa: BLE001 - not asked: discovery probes the registry itself
            probe.done.set()

    def has_api(self, registry: str) -> bool | None:
        """Whether ``registry`` answered its probe with a referrers API, once the answer is in (None: never
        probed); the probe's failure is raised here."""
        with self._lock:
            probe = self._probes.get(registry)
        if probe is None:
            return None
        probe.done.wait()  # a request under the client's own timeouts and retries
        if probe.error is not None:
            raise probe.error
        return probe.answer

    def listed(self, registry: str, repository: str) -> dict[Digest, list[tuple[Digest, str]]]:
        """The API's entries the probe of ``registry`` got, by subject, if it asked in ``repository``
        (discovery does not ask for them again)."""
        with self._lock:
            probe = self._probes.get(registry)
        if probe is None or not probe.done.is_set() or probe.entries is None or probe.repository != repository:
            return {}
        return {probe.subject: probe.entries}

    def close(self) -> None:
        with self._lock:
            self._closed = True

    def __enter__(self) -> TagListPrefetch:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def discover_for_images(client_for: Callable[[str], RegistryClient], resolved: Sequence[ResolvedImage],
                        options: ReferrerOptions, *, jobs: int = DEFAULT_JOBS,
                        prefetch: TagListPrefetch | None = None) -> dict[str, Discovery]:
    """Each image's referrers (ref_name → Discovery), asked of its own repository, :func:`lookup_jobs` images at a time;
    the API probed once a registry (the answer of its first subject decides for the rest of the run), the
    tags of each repository listed once (by ``prefetch`` already, where given)."""
    out: dict[str, Discovery] = {}
    if not options.enabled:
        return out
    probed: dict[str, bool | None] = {}
    tag_lists = prefetch.lists if prefetch is not None else _TagLists(client_for)
    for registry in dict.fromkeys(img.wanted.reference.registry for img in resolved):
        answer = prefetch.has_api(registry) if prefetch is not None else None
        if answer is not None:
            probed[registry] = answer

    def one(img: ResolvedImage) -> Discovery:
        ref = img.wanted.reference
        roots = [img.top.digest, *(p.manifest.digest for p in img.platforms)]
        listed = prefetch.listed(ref.registry, ref.repository) if prefetch is not None else {}
        return discover(client_for(ref.registry), ref.repository, roots, types=options.types,
                        has_api=probed.get(ref.registry), tags=tag_lists.get(ref.registry, ref.repository),
                        listed=listed)

    jobs = lookup_jobs(jobs)
    # The first image of each registry not probed yet probes it (and its discovery is kept); the rest, ``jobs``
    # at a time, go the way it found.
    first = [n for n in {img.wanted.reference.registry: n for n, img in reversed(list(enumerate(resolved)))}.values()
             if resolved[n].wanted.reference.registry not in probed]
    found: dict[int, Discovery] = {}
    for n, d in zip(first, each(one, [resolved[n] for n in first], jobs=jobs, name="arcgap-referrers")):
        probed[resolved[n].wanted.reference.registry] = d.has_api
        found[n] = d
    rest = [n for n in range(len(resolved)) if n not in found]
    found.update(zip(rest, each(one, [resolved[n] for n in rest], jobs=jobs, name="arcgap-referrers")))
    for n, img in enumerate(resolved):
        out[f"{img.wanted.name}:{img.wanted.reference.tag or 'latest'}"] = found[n]
    return out


class _TagLists:
    """Each repository's tag list, asked once a run however many images (and threads) want it. Until one answer
    says whether a registry lists tags, its repositories ask in turn; once it refused (401/403/404), none of them
    asks again (None: ask tag by tag)."""

    def __init__(self, client_for: Callable[[str], RegistryClient]) -> None:
        self.client_for = client_for
        self.lock = threading.Lock()
        self.locks: dict[tuple[str, str], threading.Lock] = {}
        self.firsts: dict[str, threading.Lock] = {}  # held by the asker while a registry's answer is unknown
        self.lists: dict[tuple[str, str], frozenset[str] | None] = {}
        self.listing: set[str] = set()  # registries that gave a tag list
        self.refused: set[str] = set()  # registries that refused one

    def get(self, registry: str, repository: str) -> frozenset[str] | None:
        key = (registry, repository)
        with self.lock:
            first = self.firsts.setdefault(registry, threading.Lock())
            lock = self.locks.setdefault(key, threading.Lock())
        if not self._answered(registry):
            with first:  # the registry's first answer is awaited here; then every waiter asks at once
                if not self._answered(registry):
                    return self._get(registry, key, lock)
        return self._get(registry, key, lock)

    def _answered(self, registry: str) -> bool:
        """Whether ``registry`` has said if it lists tags (it gave one list, or refused one)."""
        with self.lock:
            return registry in self.listing or registry in self.refused

    def _get(self, registry: str, key: tuple[str, str], lock: threading.Lock) -> frozenset[str] | None:
        with lock:
            with self.lock:
                if registry in self.refused:
                    return None
                if key in self.lists:
                    return self.lists[key]
            listed = tag_set(self.client_for(registry), key[1])
            with self.lock:
                self.lists[key] = listed
                (self.listing if listed is not None else self.refused).add(registry)
            return listed


def add_to_plan(plan: ExportPlan, resolved: Sequence[ResolvedImage], found: Mapping[str, Discovery]) -> ExportPlan:
    """The plan with each image's referrers: their manifests after the images' manifests (before any config or
    layer), their configs and layers after the images' blobs, each blob once; ``referrers`` in arcgap.yaml."""
    if not any(d.referrers for d in found.values()):
        return plan
    toc = plan.toc
    have = {b.digest for b in toc.blobs} | {b.digest for b in toc.relied_on_blobs}
    small = dict(plan.small_blobs)
    source = dict(plan.blob_source)
    image_blobs = {k: set(v) for k, v in plan.image_blobs.items()}
    new_manifests: list[BlobEntry] = []
    new_data: list[BlobEntry] = []
    entries: list[ReferrerEntry] = []
    repos = {f"{img.wanted.name}:{img.wanted.reference.tag or 'latest'}":
             (img.wanted.reference.registry, img.wanted.reference.repository) for img in resolved}
    for image in toc.images:
        discovery = found.get(image.ref_name)
        if discovery is None:
            continue
        for r in discovery.referrers:
            m = r.manifest
            entries.append(ReferrerEntry(image.ref_name, r.subject, m.digest, m.media_type, len(m.raw),
                                         r.artifact_type, r.found_by, r.tag))
            if m.digest not in have:
                have.add(m.digest)
                new_manifests.append(BlobEntry(m.digest, len(m.raw), m.media_type, "manifest"))
                small[m.digest] = m.raw
            parsed = parse_manifest(m.raw, m.media_type, what=f"referrer {m.digest}")
            for i, d in enumerate(parsed.blobs):
                image_blobs.setdefault(image.ref_name, set()).add(d.digest)
                if d.digest in have:
                    continue
                have.add(d.digest)
                new_data.append(BlobEntry(d.digest, d.size, d.media_type, "config" if i == 0 else "layer"))
                source[d.digest] = repos[image.ref_name]
    first_data = next((n for n, b in enumerate(toc.blobs) if b.kind not in MANIFEST_KINDS),
                      len(toc.blobs))
    blobs = (*toc.blobs[:first_data], *new_manifests, *toc.blobs[first_data:], *new_data)
    version = max(toc.format_version, needed_version(differential=False, signed=False, referrers=True))
    new = replace(toc, blobs=blobs, referrers=tuple(entries), format_version=version)
    return replace(plan, toc=new, small_blobs=small, blob_source=source, image_blobs=image_blobs)


def summary(found: Mapping[str, Discovery]) -> dict[str, object]:
    """For the command's JSON: referrers per image and kind, and how they were found."""
    by_image = {name: d.counts() for name, d in found.items() if d.referrers}
    how: dict[str, int] = {}
    for d in found.values():
        for r in d.referrers:
            how[r.found_by] = how.get(r.found_by, 0) + 1
    return {"referrers": sum(len(d.referrers) for d in found.values()), "per_image": by_image, "found_by": how}


def referrer_graph(plan: ExportPlan,
                   ref_name: str) -> tuple[tuple[tuple[ReferrerEntry, bytes], ...], frozenset[Digest]]:
    """An image's referrers in a plan (entry, raw bytes) and the configs and layers they need (for mirror)."""
    refs = tuple((r, plan.small_blobs[r.digest]) for r in plan.toc.referrers if r.image == ref_name)
    blobs: set[Digest] = set()
    for r, raw in refs:
        blobs.update(d.digest for d in parse_manifest(raw, r.media_type, what=f"referrer {r.digest}").blobs)
    return refs, frozenset(blobs)
