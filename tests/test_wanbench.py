"""devtools.wanbench's pure parts: the curl work list and the address range it accepts."""

from __future__ import annotations

import pytest

from devtools.wanbench import RANGE, _curl_lines, parse_args


def test_curl_lines_cut_large_blobs_into_ranges_that_cover_each_byte_once() -> None:
    blobs = [("arcdata/a", "sha256:aa", RANGE * 2 + 5), ("arcdata/b", "sha256:bb", 10)]
    lines = _curl_lines("http://198.19.7.130:5000", blobs, ranged=True).splitlines()
    assert lines == [
        f"-r 0-{RANGE - 1} http://198.19.7.130:5000/v2/arcdata/a/blobs/sha256:aa",
        f"-r {RANGE}-{2 * RANGE - 1} http://198.19.7.130:5000/v2/arcdata/a/blobs/sha256:aa",
        f"-r {2 * RANGE}-{2 * RANGE + 4} http://198.19.7.130:5000/v2/arcdata/a/blobs/sha256:aa",
        "http://198.19.7.130:5000/v2/arcdata/b/blobs/sha256:bb",
    ]
    assert _curl_lines("http://h", blobs, ranged=False).splitlines() == [
        "http://h/v2/arcdata/a/blobs/sha256:aa", "http://h/v2/arcdata/b/blobs/sha256:bb",
    ]  # fmt: skip


@pytest.mark.parametrize("net", ["10.0.0", "198.20.1", "198.19", "198.18.x", "198.18.256"])
def test_addresses_outside_the_benchmark_range_are_refused(net: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--net", net])
    assert "198.18.0.0/15" in capsys.readouterr().err


def test_default_net_is_in_the_benchmark_range() -> None:
    assert parse_args([]).net == "198.19.7"
