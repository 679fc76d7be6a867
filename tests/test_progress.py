"""Progress output: rich bars on a terminal, plain lines otherwise."""

from __future__ import annotations

import io

from rich.console import Console

from arcgap.util.progress import PlainReporter, RichReporter, human_bytes


def test_rich_reporter_draws_bytes_throughput_and_items() -> None:
    buf = io.StringIO()
    rep = RichReporter(Console(file=buf, force_terminal=True, width=120))
    rep.phase("resolving 2 images")
    rep.start(10 * 1024 * 1024, images=2, label="exporting to x.tar.zst")
    rep.advance(5 * 1024 * 1024)
    rep.item_done("arc-dns:v1")
    rep.advance(5 * 1024 * 1024)
    rep.close()
    out = buf.getvalue()
    assert "resolving 2 images" in out
    assert "exporting to x.tar.zst (2 images)" in out
    assert "arc-dns:v1" in out
    assert "10.0/10.0 MiB" in out


def test_plain_reporter_lines() -> None:
    buf = io.StringIO()
    rep = PlainReporter(buf, interval_s=0.0)
    rep.start(2048, images=1, label="importing into r:5000")
    rep.advance(1024)
    rep.warn("careful")
    rep.item_done("r:5000/a:v1 → sha256:abc")
    rep.advance(1024)
    rep.close()
    lines = buf.getvalue().splitlines()
    assert lines[0] == "importing into r:5000: 1 images, 2.0 KiB"
    assert lines[1].startswith("  1.0 KiB of 2.0 KiB (")
    assert "warning: careful" in lines
    assert "  r:5000/a:v1 → sha256:abc" in lines
    assert lines[-1].startswith("  2.0 KiB in ")


def test_human_bytes() -> None:
    assert [human_bytes(n) for n in (0, 1023, 1024, 5 * 2**30)] == ["0 B", "1023 B", "1.0 KiB", "5.0 GiB"]
