"""Fuzz, end to end: a real bundle damaged at random offsets (fixed seed) is imported into a real registry; each
import either succeeds with identical digests or fails with exit 7/8, two lines on stderr and no tag moved."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest
import zstandard

from devtools.registries import Registry
from devtools.synth import SmallSet
from tests.e2e_helpers import arcgap, oracle_digest, source_args, target_args
from tests.test_e2e_roundtrip import ROLES, clean_env  # noqa: F401 (autouse fixture)

SEED = 20261125
MUTATIONS = 25


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory, synth_small: SmallSet) -> Path:
    from tests.e2e_helpers import run

    out = tmp_path_factory.mktemp("fuzz") / "small.tar.zst"
    names = [synth_small[r].repository.split("/", 1)[1] for r in ROLES]
    assert run(["export", *names, *source_args(synth_small.registry), "--source-repository", "synth",
                "--source-tag", "v1", "-o", str(out), "-q", "--no-cache"]) == 0
    return out


def mutate(rng: random.Random, compressed: bytes, tar: bytes, n: int) -> tuple[str, bytes]:
    """The n-th mutation: byte flips, truncations and inserted bytes, half of them in the tar (compressed again,
    so the damage gets past zstd's checksum to the tar parser, arcgap.yaml, the layout and the blobs)."""
    inside = n % 2 == 1
    data = bytearray(tar if inside else compressed)
    kind = ("flip", "truncate", "insert", "flips")[n // 2 % 4]
    at = rng.randrange(4 if not inside else 0, len(data))
    if kind == "flip":
        data[at] ^= 1 << rng.randrange(8)
    elif kind == "flips":
        for _ in range(8):
            data[rng.randrange(len(data))] ^= rng.randrange(1, 256)
    elif kind == "truncate":
        del data[at:]
    else:
        data[at:at] = rng.randbytes(rng.randrange(1, 700))
    raw = zstandard.ZstdCompressor(write_checksum=True).compress(bytes(data)) if inside else bytes(data)
    return f"{kind} at {at} {'in the tar' if inside else 'in the file'}", raw


def tags_by_repo(target: Registry) -> dict[str, set[str]]:
    client = target.raw_client()
    try:
        return {repo: set(client.list_tags(repo)) for repo in client.catalog()}
    finally:
        client.close()


def test_mutated_bundles_import_whole_or_not_at_all(
    capsys: pytest.CaptureFixture[str], bundle: Path, synth_small: SmallSet, fresh_registry, tmp_path: Path
) -> None:
    target: Registry = fresh_registry()
    base = arcgap(capsys, "import", str(bundle), *target_args(target), "--target-repository", "fuzz",
                  "--target-tag", "base", "-q")
    assert base.code == 0, base.err  # blobs already there: a damaged blob must be caught even when skipped
    compressed = bundle.read_bytes()
    tar = zstandard.ZstdDecompressor().stream_reader(bundle.open("rb")).read()
    rng = random.Random(SEED)
    expected_tags = {"base"}
    outcomes: Counter[str] = Counter()
    for n in range(MUTATIONS):
        what, raw = mutate(rng, compressed, tar, n)
        damaged = tmp_path / f"m{n}.tar.zst"
        damaged.write_bytes(raw)
        res = arcgap(capsys, "import", str(damaged), *target_args(target), "--target-repository", "fuzz",
                     "--target-tag", f"m{n}", "-q")
        outcomes[str(res.code)] += 1
        if res.code == 0:
            expected_tags.add(f"m{n}")
            for role in ROLES:
                info = synth_small[role]
                assert oracle_digest(target, f"fuzz/{info.repository.split('/', 1)[1]}", f"m{n}") == info.digest
        else:
            assert res.code in (7, 8), (what, res.err)
            assert len(res.error_lines) == 2 and "Traceback" not in res.err, (what, res.err)
            assert res.error_lines[0].startswith(f"error: {damaged}"), (what, res.err)
        for repo, tags in tags_by_repo(target).items():
            assert tags <= expected_tags, (what, repo, tags - expected_tags)
    assert outcomes["7"] + outcomes["8"] >= MUTATIONS // 2, outcomes  # most damage is caught, not ignored
