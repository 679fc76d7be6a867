"""arcgap.commands.clients: a side's clients get the run's network settings, whoever gave them (the command line,
or a caller of :func:`arcgap.cli.run` in the same process), and the registry client's defaults otherwise."""

from __future__ import annotations

import typer
import typer.main

from arcgap.cli import app
from arcgap.cli.common import run_context
from arcgap.commands.clients import ClientPool
from arcgap.commands.options import NetworkOptions
from arcgap.commands.settings import Endpoint
from arcgap.registry.transport import RetryPolicy, TLSOptions
from arcgap.registry.upload import UPLOAD_CHUNK_BYTES

HOST = "127.0.0.1:9"  # never asked: building a client sends nothing


def _client(network: NetworkOptions | None):
    endpoint = Endpoint(role="target", registry=HOST, repository="arc", username=None, password=None, tag=None,
                        plain_http=True)
    pool = ClientPool(endpoint, TLSOptions(plain_http=True), max_connections=2, environ={}, network=network)
    return pool, pool(HOST)


def test_the_clients_take_the_runs_pacing_and_upload_chunk() -> None:
    pool, client = _client(NetworkOptions(retry_budget_s=7.0, retry_base_delay_s=0.01, upload_chunk_bytes=4096))
    try:
        assert (client.retry.budget_s, client.retry.base_delay_s) == (7.0, 0.01)
        assert client.upload_traits.preferred_chunk == 4096 and client.upload_traits.chunk_bytes() == 4096
    finally:
        pool.close()


def test_without_settings_the_clients_keep_their_own_defaults() -> None:
    pool, client = _client(None)
    try:
        assert client.retry.base_delay_s == RetryPolicy().base_delay_s
        assert client.upload_traits.chunk_bytes() == UPLOAD_CHUNK_BYTES
    finally:
        pool.close()


def test_a_runs_given_settings_reach_its_context_and_the_flags_still_win() -> None:
    given = NetworkOptions(retry_base_delay_s=0.01, upload_chunk_bytes=4096)
    with typer.Context(typer.main.get_command(app), obj=given):
        assert run_context(no_input=True).network == given
        flagged = run_context(no_input=True, retry_budget=2.0, stall_timeout=5.0).network
    assert (flagged.retry_budget_s, flagged.stall_s) == (2.0, 5.0)
    assert (flagged.retry_base_delay_s, flagged.upload_chunk_bytes) == (0.01, 4096)
    assert run_context(no_input=True).network == NetworkOptions()  # outside a run: the defaults
