"""``python -m devtools.demo`` (``make demo``): an air-gapped transfer, end to end, on one machine.

What it does, step by step (each step is printed as it runs):

1. starts a *source* registry on loopback: HTTPS with a certificate from a throw-away test CA, and
   htpasswd logins (the "connected" registry, like mcr.microsoft.com);
2. creates a network namespace with only its own loopback and starts a *target* registry inside it
   (plain HTTP): processes in the namespace cannot reach the source -- the air gap. Without usable
   namespaces the target runs on loopback instead, and the demo says so;
3. fills the source with a generated Arc-like release: the 22 image names of
   ``v1.29.0_2024-04-09``, shared base layers, a multi-arch index for ``arc-controller`` (tens of MB);
4. runs ``arcgap export`` on the connected side exactly as an operator would, with the
   ``SOURCE_DOCKER_*`` variables (the password only in ``SOURCE_DOCKER_PASSWORD``, never on a command
   line) and ``--source-ca-file``; then ``arcgap verify`` and ``arcgap inspect`` on the bundle;
5. carries the bundle to the isolated side and runs ``arcgap import`` inside the namespace
   (``ip netns exec``) with the ``TARGET_DOCKER_*`` variables, into ``mirror/arcdata``;
6. reads every manifest at both registries with ``skopeo inspect --raw`` (independent of arcgap; for the
   index each platform manifest too), compares sha256 digests and prints a table and
   ``demo: N/N digests identical``. The exit status is non-zero on any mismatch or failure.

Everything runs under a temporary directory that is removed at the end (``--keep`` keeps it: storage,
bundle, registry logs). No traffic leaves 127.0.0.0/8 and the namespace the demo creates.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

from devtools.netns import netns_argv, netns_usable, network_namespace
from devtools.oracle import ManifestReader, compare_images, format_table
from devtools.pki import make_ca
from devtools.procs import StartupError
from devtools.registries import Registry, start_registry
from devtools.runs import CommandFailed, clean_env, run_streamed, show_command
from devtools.scenario import (
    RELEASE_TAG,
    SOURCE_REPOSITORY,
    TARGET_REPOSITORY,
    blob_totals,
    tools_missing,
)
from devtools.skopeo import SkopeoError
from devtools.synth import SIZES, generate_release_infos

REQUIRED_TOOLS = ("docker-registry", "skopeo", "htpasswd")
TOTAL_STEPS = 7


class DemoFailed(RuntimeError):
    """A check of the demo itself failed (not a command)."""


class Narrator:
    """Numbered steps and indented details, flushed at once (child processes write to the same terminal)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.n = 0

    def step(self, title: str) -> None:
        self.n += 1
        print(f"\n[{self.n}/{self.total}] {title}", flush=True)

    def say(self, text: str) -> None:
        print(textwrap.indent(text, "    "), flush=True)

    def command(self, line: str) -> None:
        print(f"    $ {line}", flush=True)


def _arcgap(*args: str) -> list[str]:
    return [sys.executable, "-m", "arcgap", *args]


def _probe_isolation(ns: str, source: Registry) -> bool:
    """True when a connection from inside ``ns`` to the source's address fails (the air gap holds)."""
    host, port = source.host.rsplit(":", 1)
    code = f"import socket; socket.create_connection(({host!r}, {int(port)}), timeout=2).close()"
    done = subprocess.run(
        netns_argv(ns, [sys.executable, "-c", code]), capture_output=True, timeout=30, stdin=subprocess.DEVNULL
    )
    return done.returncode != 0


def run_demo(work: Path, *, sizes: str, jobs: int, use_netns: bool = True) -> int:
    say = Narrator(TOTAL_STEPS)
    t_start = time.monotonic()
    with ExitStack() as stack:
        # -- 1. source ------------------------------------------------------------------------------------
        say.step("Start the source registry (the connected side): HTTPS from a test CA, htpasswd login")
        ca = make_ca(work / "pki")
        source = stack.enter_context(start_registry(work / "source-registry", tls=True, auth="htpasswd", ca=ca))
        say.say(
            f"source registry: {source.url}  (user {source.username}; CA certificate {ca.cert_path})\n"
            f"log: {source.log_file}"
        )

        # -- 2. target in a namespace ------------------------------------------------------------------------
        say.step("Start the target registry (the isolated side), in a network namespace of its own")
        usable, reason = netns_usable() if use_netns else (False, "--no-netns was given")
        ns: str | None = None
        if usable:
            ns = stack.enter_context(network_namespace())
        target = stack.enter_context(start_registry(work / "target-registry", tls=False, auth="none", netns=ns))
        if ns:
            say.say(f"namespace {ns} (only its own loopback); target registry {target.url} inside it (plain HTTP)")
            if not _probe_isolation(ns, source):
                raise DemoFailed(f"the source {source.host} is reachable from inside namespace {ns}: no air gap")
            say.say(f"checked: from inside {ns}, {source.host} cannot be reached -- the air gap holds")
        else:
            say.say(
                f"WARNING: network namespaces are unusable here ({reason}).\n"
                f"The target registry runs on loopback ({target.url}) and the air gap is NOT enforced."
            )

        # -- 3. release ---------------------------------------------------------------------------------
        base, app = SIZES[sizes]
        say.step(f"Fill the source with a generated Arc-like release {RELEASE_TAG}")
        t0 = time.monotonic()
        infos = generate_release_infos(
            source, repository=SOURCE_REPOSITORY, tag=RELEASE_TAG, base_layer_bytes=base, app_layer_bytes=app,
            workdir=work, threads=2,
        )  # fmt: skip
        blobs, total = blob_totals(infos)
        indexes = [n for n, i in infos.items() if i.is_index]
        say.say(
            f"pushed {len(infos)} images to {source.host}/{SOURCE_REPOSITORY}/<name>:{RELEASE_TAG}: {blobs} unique "
            f"blobs, {total / 1e6:.1f} MB, shared base layers; multi-arch index: {', '.join(indexes)} "
            f"({time.monotonic() - t0:.1f} s)"
        )

        # -- 4. export -----------------------------------------------------------------------------------
        say.step("Connected side: export the release into one bundle")
        connected = work / "connected-side"
        bundle = connected / f"arc-{RELEASE_TAG}.tar.zst"
        connected.mkdir()
        src_vars = {
            "SOURCE_DOCKER_REGISTRY": source.host,
            "SOURCE_DOCKER_REPOSITORY": SOURCE_REPOSITORY,
            "SOURCE_DOCKER_USERNAME": source.username or "",
            "SOURCE_DOCKER_TAG": RELEASE_TAG,
        }
        say.say("The operator sets the seed values; the password goes into a variable, never onto a command line:")
        for key, value in src_vars.items():
            say.command(f"export {key}={value}")
        say.command("read -rs SOURCE_DOCKER_PASSWORD && export SOURCE_DOCKER_PASSWORD   # the demo sets it for you")
        env = clean_env(
            work / "docker-config", cache_home=work / "cache", **src_vars, SOURCE_DOCKER_PASSWORD=source.password or ""
        )
        export = _arcgap(
            "export", "--release", RELEASE_TAG, "--source-ca-file", str(ca.cert_path), "-o", str(bundle),
            "--jobs", str(jobs), "--no-input",
        )  # fmt: skip
        say.command(show_command(["arcgap", *export[3:]]))
        run_streamed(export, env=env, cwd=connected)
        say.say("Optional: re-read every byte of the bundle before carrying it, and list what is inside:")
        for cmd in (["verify", str(bundle)], ["inspect", str(bundle)]):
            say.command(show_command(["arcgap", *cmd]))
            run_streamed(_arcgap(*cmd), env=env, cwd=connected)

        # -- 5. import -----------------------------------------------------------------------------------
        where = f"inside namespace {ns}" if ns else "on loopback, no namespace"
        say.step(f"Carry the bundle across the gap and import it on the isolated side ({where})")
        isolated = work / "isolated-side"
        isolated.mkdir()
        files = sorted(p for p in connected.iterdir() if p.name.startswith(bundle.name) and p.is_file())
        for f in files:  # the bundle and whatever export wrote beside it (e.g. NAME.parts.yaml)
            shutil.copy2(f, isolated / f.name)
        carried = isolated / bundle.name
        say.say(
            f"copied {', '.join(f.name for f in files)} ({sum(f.stat().st_size for f in files) / 1e6:.1f} MB) "
            f"to {isolated}"
        )
        dst_vars = {"TARGET_DOCKER_REGISTRY": target.host, "TARGET_DOCKER_REPOSITORY": TARGET_REPOSITORY}
        for key, value in dst_vars.items():
            say.command(f"export {key}={value}")
        imp = ["import", str(carried), "--target-plain-http", "--jobs", str(jobs), "--no-input"]
        say.command(show_command(netns_argv(ns, ["arcgap", *imp])))
        env = clean_env(work / "docker-config", cache_home=work / "cache-isolated", **dst_vars)
        run_streamed(netns_argv(ns, _arcgap(*imp)), env=env, cwd=isolated)

        # -- 6. compare ----------------------------------------------------------------------------------
        say.step("Compare every digest at the source and the target (skopeo inspect --raw, sha256 of the bytes)")
        oracle_dir = work / "oracle"
        rows = compare_images(
            ManifestReader(source, oracle_dir), SOURCE_REPOSITORY, ManifestReader(target, oracle_dir),
            TARGET_REPOSITORY, list(infos), RELEASE_TAG,
        )  # fmt: skip
        say.say(f"source: {source.host}/{SOURCE_REPOSITORY}/<image>:{RELEASE_TAG}")
        say.say(f"target: {target.host}/{TARGET_REPOSITORY}/<image>:{RELEASE_TAG}" + (f"  (in {ns})" if ns else ""))
        print(textwrap.indent(format_table(rows), "    "), flush=True)
        generated = {name: info.digest for name, info in infos.items()}
        wrong_source = [r.image for r in rows if not r.platform and r.source != generated.get(r.image)]
        if wrong_source:
            say.say(f"the source serves other digests than were pushed for: {', '.join(wrong_source)}")

        # -- 7. result -----------------------------------------------------------------------------------
        say.step("Result")
        same = sum(1 for r in rows if r.match)
        images = sum(1 for r in rows if not r.platform)
        say.say(
            f"{images} images and {len(rows) - images} platform manifests compared in "
            f"{time.monotonic() - t_start:.1f} s; the air gap was "
            + ("enforced by a network namespace" if ns else "NOT enforced (no namespace)")
        )
        ok = same == len(rows) and not wrong_source and len(rows) > 0
        print(f"\ndemo: {same}/{len(rows)} digests identical", flush=True)
        return 0 if ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse options, run the demo in a temporary directory, clean up."""
    ap = argparse.ArgumentParser(
        prog="python -m devtools.demo",
        description="Two local registries, a generated Arc-like release, export -> bundle -> import in a "
        "network namespace, digests compared.",
    )
    ap.add_argument("--keep", action="store_true", help="keep the work directory (storage, bundle, logs)")
    ap.add_argument(
        "--sizes",
        choices=("small", "demo"),
        default="demo",
        help="layer sizes of the generated release (demo: ~40 MB; small: ~0.5 MB)",
    )
    ap.add_argument("--jobs", type=int, default=4, help="arcgap --jobs")
    ap.add_argument("--no-netns", action="store_true", help="run the target on loopback (no air gap)")
    ap.add_argument("--tmpdir", type=Path, default=None, help="parent of the work directory (default: $TMPDIR)")
    args = ap.parse_args(argv)

    missing = tools_missing(REQUIRED_TOOLS)
    if missing:
        print(f"demo: missing programs: {', '.join(missing)} (run 'make sysdeps' as root)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="arcgap-demo-", dir=args.tmpdir))
    print(f"arcgap demo: work directory {work}" + ("" if args.keep else " (removed at the end; --keep keeps it)"))
    code = 1
    show_logs = False  # registry log tails help when a service misbehaved, not when a command said why it failed
    try:
        code = run_demo(work, sizes=args.sizes, jobs=args.jobs, use_netns=not args.no_netns)
    except KeyboardInterrupt:
        print("\ndemo: interrupted", file=sys.stderr)
        code = 130
    except CommandFailed as exc:
        print(f"\ndemo: FAILED: {exc} (its message is above; --keep keeps the registry logs)", file=sys.stderr)
    except (DemoFailed, StartupError, SkopeoError, OSError, subprocess.SubprocessError) as exc:
        print(f"\ndemo: FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        show_logs = True
    finally:
        if show_logs and not args.keep:
            for log in sorted(work.glob("*-registry/registry.log")):
                tail = log.read_text(errors="replace").splitlines()[-8:]
                if tail:
                    print(f"--- last lines of {log.relative_to(work)}:", file=sys.stderr)
                    print("\n".join(tail), file=sys.stderr)
        if args.keep:
            print(f"kept {work} (the registries are stopped; their storage, logs and the bundle remain)")
        else:
            shutil.rmtree(work, ignore_errors=True)
    if code not in (0, 130):
        print("demo: failed", file=sys.stderr)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
