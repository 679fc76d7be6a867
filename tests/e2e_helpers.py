"""Helpers for the end-to-end tests: run the real CLI in-process and read registries independently."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from arcgap.cli import run
from arcgap.commands.options import NetworkOptions

__all__ = ["run", "arcgap", "QUICK_RETRIES"]
from devtools.registries import Endpoint
from devtools.skopeo import inspect_raw

# Waits of 10 ms before full jitter instead of 500 ms: a fault test retries quickly, within the same budget.
QUICK_RETRIES = NetworkOptions(retry_base_delay_s=0.01)


@dataclass(frozen=True)
class Outcome:
    code: int
    out: str
    err: str

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.startswith(("error: ", "hint: "))]


def arcgap(capsys: pytest.CaptureFixture[str], *argv: str, network: NetworkOptions | None = None) -> Outcome:
    """``arcgap ARGV`` in this process; ``network`` gives the run's retry pacing or upload chunk size."""
    capsys.readouterr()
    code = run(list(argv), network=network)
    captured = capsys.readouterr()
    return Outcome(code, captured.out, captured.err)


def source_args(reg: Endpoint) -> list[str]:
    args = ["--source-registry", reg.host]
    if reg.scheme == "http":
        args.append("--source-plain-http")
    elif reg.ca_file is not None:
        args += ["--source-ca-file", str(reg.ca_file)]
    return args


def target_args(reg: Endpoint) -> list[str]:
    args = ["--target-registry", reg.host]
    if reg.scheme == "http":
        args.append("--target-plain-http")
    elif reg.ca_file is not None:
        args += ["--target-ca-file", str(reg.ca_file)]
    return args


def oracle_digest(reg: Endpoint, repo: str, ref: str) -> str:
    """Digest of what the registry serves, as seen by skopeo (independent of arcgap)."""
    return "sha256:" + hashlib.sha256(inspect_raw(reg, repo, ref)).hexdigest()


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def isolate_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No SOURCE_/TARGET_DOCKER_* values, stored logins or key passphrase from the machine running the tests;
    a fixed creation time (byte-identical bundles); the test's directory as the current one (receipts)."""
    for role in ("SOURCE", "TARGET"):
        for key in ("REGISTRY", "REPOSITORY", "USERNAME", "PASSWORD", "TAG", "CA_FILE"):
            monkeypatch.delenv(f"{role}_DOCKER_{key}", raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))  # no stored logins
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "auth.json"))
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    monkeypatch.delenv("ARCGAP_KEY_PASSPHRASE", raising=False)
    monkeypatch.chdir(tmp_path)  # import writes its receipt into the current directory
