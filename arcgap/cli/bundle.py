"""The offline commands on a bundle: verify, inspect, and keygen for signing one."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import typer

from arcgap.cli.common import (
    ACCEPT_PARTIAL_SIGNATURE_OPTION,
    app,
    emit,
    reporter_for,
    say,
)
from arcgap.util.progress import human_bytes
from arcgap.util.safetext import safe, safe_lines

# -- verify / inspect ------------------------------------------------------------------------------------


@app.command("verify")
def verify_cmd(
    bundle: Path = typer.Argument(..., help="Bundle file, one of its parts (NAME.003) or its NAME.parts.yaml."),
    verify_key: Optional[Path] = typer.Option(None, "--verify-key", help="Also require a signature by this "
                                              "Ed25519 public key (NAME.pub)."),
    accept_partial_signature: bool = ACCEPT_PARTIAL_SIGNATURE_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    """Check every blob's size and digest and the bundle's consistency, offline.

    Example: arcgap verify arc.tar.zst
    """
    from arcgap.bundle.reader import open_bundle
    from arcgap.bundle.verify import verify_bundle
    from arcgap.commands.transfer import verify_key_from

    key = verify_key_from(verify_key)  # cryptography is loaded only with --verify-key
    with open_bundle(bundle) as reader:
        result = verify_bundle(reader, reporter=reporter_for(quiet), verify_key=key,
                               accept_partial_signature=accept_partial_signature)
    parts = reader.parts
    listed = parts is not None and (parts.split or parts.sidecar is not None)  # README: "in parts or with its sidecar"
    emit({**result.to_dict(), **(parts.to_dict() if listed else {})}, as_json, lambda: say(safe_lines(
        f"{bundle}: OK: {result.images} images, {result.blobs} blobs, "
        f"{human_bytes(result.content_bytes)} verified in {result.seconds:.1f} s{_parts_note(parts)}"
        + _verify_notes(result))))


def _verify_notes(result: Any) -> str:
    """Signature and differential lines for verify (``result`` is an arcgap.bundle.verify.VerifyResult)."""
    notes = ""
    if result.signed_by:
        how = "checked with --verify-key" if result.signature_checked else "not checked: pass --verify-key PUB"
        notes += f"\nsigned by {result.signed_by} ({how})"
    if result.relies_on:
        notes += (f"\ndifferential: relies on {result.relied_on_blobs} blobs "
                  f"({human_bytes(result.relied_on_bytes)}) from {', '.join(result.relies_on)}, counted as "
                  "present at the target; import checks they are there before it sends anything")
    return notes


def _parts_note(parts: Any) -> str:
    """How the files were checked, for the verify line (``parts`` is an arcgap.bundle.partstream.PartSet)."""
    if parts is None or (parts.sidecar is None and not parts.split):
        return ""
    if parts.sidecar is None:
        return f"; {len(parts.files)} parts read, without {parts.base.name}.parts.yaml to check each one"
    if not parts.split:
        return f"; size and sha256 match {parts.sidecar.name}"
    return f"; all {len(parts.files)} parts match {parts.sidecar.name}"


@app.command("inspect")
def inspect_cmd(
    bundle: Path = typer.Argument(..., help="Bundle file, one of its parts (NAME.003) or its NAME.parts.yaml."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
) -> None:
    """List the images, tags, digests, platforms and sizes in a bundle (reads only its table of contents).

    Example: arcgap inspect arc.tar.zst --json
    """
    from arcgap.bundle.reader import open_bundle
    from arcgap.bundle.verify import describe

    with open_bundle(bundle) as reader:
        doc = describe(reader.toc, reader.signature())
        parts = reader.parts
    if parts is not None and (parts.split or parts.sidecar is not None):
        doc.update(parts.to_dict())

    def human() -> None:  # every line escaped: the table of contents is bundle text
        echo = _safe_echo
        echo(f"bundle {bundle} (format {doc['format_version']}, arcgap {doc['arcgap_version']}, "
             f"created {doc['created']})")
        echo(f"source {doc['source']['registry']}/{doc['source']['repository']}")
        for img in doc["images"]:
            plats = ", ".join(p["platform"] for p in img["platforms"])
            echo(f"  {img['name']}:{img['tag']}  {img['digest']}  [{plats}]")
            for ref in (r for r in doc["referrers"] if r["image"] == f"{img['name']}:{img['tag']}"):
                how = f"tag {ref['tag']}" if ref.get("tag") else f"by {ref['found_by']}"
                echo(f"    referrer {ref['digest']}  {ref['artifact_type'] or ref['media_type']}  "
                     f"of {ref['subject']}  ({how})")
        echo(f"{len(doc['images'])} images, {doc['blobs']} blobs, {human_bytes(doc['content_bytes'])}")
        if doc["releases"]:
            echo(f"{len(doc['releases'])} releases, imported oldest first: "
                 + ", ".join(f"{r['tag']} ({r['images']} images)" for r in doc["releases"]))
        for base in doc["relies_on"]:
            echo(f"relies on {base['blobs']} blobs ({human_bytes(base['bytes'])}) from {base['bundle']} "
                 f"({base['identity']}), which the target must hold")
        if doc["signed_by"]:
            echo(f"signed by {doc['signed_by']}")
        if doc["skipped_images"]:
            echo(f"left out at export (not at the source, --skip-missing): {len(doc['skipped_images'])} images: "
                 + ", ".join(s["source"] for s in doc["skipped_images"]))
        if parts is not None and parts.split:
            echo(f"in {len(parts.files)} parts: {parts.files[0].path.name} … {parts.files[-1].path.name}"
                 + (f", listed in {parts.sidecar.name}" if parts.sidecar else ""))

    emit(doc, as_json, human)


def _safe_echo(line: str) -> None:
    """One line of output built from bundle text: control characters and escape sequences escaped."""
    say(safe(line))


# -- keygen ----------------------------------------------------------------------------------------------


@app.command("keygen")
def keygen_cmd(
    output: Path = typer.Option(..., "--output", "-o", help="Writes OUTPUT.key (private, mode 0600) and "
                                "OUTPUT.pub (public)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
) -> None:
    """Create an Ed25519 key pair for signing bundles (PEM; encrypted when ARCGAP_KEY_PASSPHRASE is set).

    Example: arcgap keygen --output release-signing
    """
    from arcgap.bundle.signing import PASSPHRASE_ENV, generate_key

    keys = generate_key(output, passphrase=os.environ.get(PASSPHRASE_ENV) or None)
    doc = {"command": "keygen", "private_key": str(keys.private), "public_key": str(keys.public),
           "fingerprint": str(keys.fingerprint), "encrypted": keys.encrypted}
    emit(doc, as_json, lambda: say(
        f"wrote {keys.private} (private{', encrypted' if keys.encrypted else ''}: keep it on the connected side) "
        f"and {keys.public} (public: give it to the importing side)\nfingerprint {keys.fingerprint}"))

