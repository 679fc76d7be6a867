"""The test infrastructure itself, against real registries, skopeo and namespaces (no mocks)."""

from __future__ import annotations

import gzip
import hashlib
import io
import ipaddress
import json
import socket
import tarfile
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from devtools.images import Pusher, push_image
from devtools.layers import diff_id_of, make_layer, write_layer_file
from devtools.netns import run_in_netns
from devtools.pki import CA
from devtools.procs import StartupError, free_port
from devtools.rawclient import (
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    RawClient,
    RegistryHTTPError,
    make_verify,
)
from devtools.registries import Registry, start_registry
from devtools.skopeo import SkopeoError, copy, inspect_raw, run_skopeo
from devtools.synth import ARC_IMAGES, SMALL_SET_ROLES, SmallSet, generate_release_infos, push_small_set
from devtools.tokens import decode_claims

ROLES = SMALL_SET_ROLES


def sha256(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


# -- pki and layers (no services) ------------------------------------------------------------------------
def test_server_cert_has_sans_and_chains_to_ca(test_ca: CA, tmp_path: Path) -> None:
    cert_path, key_path = test_ca.issue_server_cert(tmp_path, ips=["10.200.0.2"], dns=["registry.test"])
    leaf = x509.load_pem_x509_certificates(cert_path.read_bytes())[0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("10.200.0.2"),
    }
    assert set(san.get_values_for_type(x509.DNSName)) == {"localhost", "registry.test"}
    leaf.verify_directly_issued_by(test_ca.cert)
    assert key_path.stat().st_mode & 0o077 == 0


def test_layers_are_deterministic_tars_with_correct_diff_ids(tmp_path: Path) -> None:
    blob = make_layer("t", 50_000)
    assert blob == make_layer("t", 50_000) and blob != make_layer("u", 50_000)
    raw = gzip.decompress(blob)
    assert diff_id_of(blob) == sha256(raw)
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        names = tar.getnames()
    assert any(n.endswith("data-0000.bin") for n in names)
    layer = write_layer_file(tmp_path / "l.tgz", "t", 50_000)
    assert (layer.digest, layer.size, layer.diff_id) == (sha256(blob), len(blob), sha256(raw))
    assert layer.path is not None and layer.path.read_bytes() == blob
    assert (
        len(make_layer("c", 200_000, compressible=0.9)) < len(make_layer("c", 200_000, compressible=0.1)) / 3
    )


# -- the small set, seen by independent clients ----------------------------------------------------------
@pytest.mark.parametrize("role", ROLES)
def test_skopeo_sees_exactly_the_pushed_bytes(synth_small: SmallSet, role: str) -> None:
    info = synth_small[role]
    raw = inspect_raw(synth_small.registry, info.repository, info.tag or info.digest)
    assert raw == info.manifest
    assert sha256(raw) == info.digest
    body, media_type = synth_small.registry.raw_get_manifest(info.repository, info.digest)
    assert (body, media_type) == (info.manifest, info.media_type)


def test_small_set_shapes(synth_small: SmallSet) -> None:
    docker, oci, indented = synth_small["docker"], synth_small["oci"], synth_small["indented"]
    assert docker.layer_digests[0] == oci.layer_digests[0] == synth_small.shared_base
    assert oci.media_type == OCI_MANIFEST
    assert b"\n   " in indented.manifest
    assert (
        sha256(json.dumps(json.loads(indented.manifest), separators=(",", ":")).encode()) != indented.digest
    )
    for role, media_type in (("index_docker", DOCKER_MANIFEST_LIST), ("index_oci", OCI_INDEX)):
        index = synth_small[role]
        assert index.media_type == media_type
        platforms = [m["platform"]["architecture"] for m in json.loads(index.manifest)["manifests"]]
        assert platforms == ["amd64", "arm64"]
        for child in index.children:  # children exist by digest, untagged
            assert inspect_raw(synth_small.registry, index.repository, child.digest) == child.manifest
        assert synth_small.registry.list_tags(index.repository) == ["v1"]
    assert synth_small.registry.list_tags("synth/no-such-repo") == []


def test_config_diff_ids_match_uncompressed_layers(synth_small: SmallSet) -> None:
    info = synth_small["docker"]
    with synth_small.registry.raw_client() as client:
        assert info.config_digest is not None
        config = json.loads(client.get_blob(info.repository, info.config_digest))
        blobs = [client.get_blob(info.repository, d) for d in info.layer_digests]
    assert config["rootfs"]["diff_ids"] == [sha256(gzip.decompress(b)) for b in blobs]
    assert [sha256(b) for b in blobs] == list(info.layer_digests)


# -- auth: htpasswd, TLS, token --------------------------------------------------------------------------
def test_htpasswd_registry_refuses_wrong_password(tls_registry: Registry) -> None:
    verify = make_verify(tls_registry.url, tls_registry.ca_file)
    with httpx.Client(verify=verify, trust_env=False) as client:
        assert client.get(f"{tls_registry.url}/v2/").status_code == 401
        assert client.get(f"{tls_registry.url}/v2/", auth=("arcuser", "wrong")).status_code == 401
        assert client.get(f"{tls_registry.url}/v2/", auth=("arcuser", "arc-secret-pass")).status_code == 200
    bad = RawClient(tls_registry.url, ca_file=tls_registry.ca_file, username="arcuser", password="nope")
    with bad, pytest.raises(RegistryHTTPError, match="401"):
        bad.get_manifest("synth/anything", "v1")


def test_tls_registry_needs_the_ca(tls_registry: Registry) -> None:
    with Pusher(tls_registry) as pusher:
        info = push_image(pusher, "tls/check", "v1", layers=[make_layer("tls", 1000)])
    args = ["inspect", "--raw", "--tls-verify=true", "--creds", "arcuser:arc-secret-pass"]
    with pytest.raises(SkopeoError, match="certificate"):
        run_skopeo(None, [*args, tls_registry.docker_ref("tls/check", "v1")])
    assert inspect_raw(tls_registry, "tls/check", "v1") == info.manifest
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{tls_registry.url}/v2/", trust_env=False)  # system CAs only


def test_token_server_rejects_wrong_credentials_and_grants_pull_anonymously(token_registry: Registry) -> None:
    server = token_registry.token_server
    assert server is not None
    verify = make_verify(server.url, token_registry.ca_file)
    params = {"service": "arcgap-test-registry", "scope": "repository:arcdata/arc-dns:pull,push"}
    with httpx.Client(verify=verify, trust_env=False) as client:
        assert client.get(server.realm, params=params, auth=("arcuser", "wrong")).status_code == 401
        assert (
            client.get(server.realm, params=params, auth=("intruder", "arc-secret-pass")).status_code == 401
        )
        anonymous = client.get(server.realm, params=params)
        user = client.get(server.realm, params=params, auth=("arcuser", "arc-secret-pass"))
    assert anonymous.status_code == 200 and user.status_code == 200
    body = anonymous.json()
    assert body["token"] == body["access_token"] and body["expires_in"] == 300 and body["issued_at"]
    claims = decode_claims(body["token"])
    assert claims["access"] == [{"type": "repository", "name": "arcdata/arc-dns", "actions": ["pull"]}]
    assert claims["aud"] == "arcgap-test-registry" and claims["sub"] == ""
    assert decode_claims(user.json()["token"])["access"][0]["actions"] == ["pull", "push"]


def test_token_registry_anonymous_pull_authenticated_push(
    token_registry: Registry, synth_small_token: SmallSet, synth_small: SmallSet
) -> None:
    info = synth_small_token["index_oci"]
    assert inspect_raw(token_registry, info.repository, "v1", anonymous=True) == info.manifest
    src = synth_small["index_docker"]
    with pytest.raises(SkopeoError):  # anonymous tokens carry pull only
        copy(
            synth_small.registry,
            src.repository,
            "v1",
            token_registry,
            "copied/anon",
            "v1",
            dst_anonymous=True,
        )
    copy(synth_small.registry, src.repository, "v1", token_registry, "copied/index", "v1")
    assert inspect_raw(token_registry, "copied/index", "v1", anonymous=True) == src.manifest
    for child in src.children:
        assert sha256(inspect_raw(token_registry, "copied/index", child.digest)) == child.digest


def test_token_cache_is_observable(token_registry: Registry, synth_small_token: SmallSet) -> None:
    server = token_registry.token_server
    assert server is not None
    info = synth_small_token["docker"]
    with token_registry.raw_client() as client:
        before = server.requests_served
        for _ in range(3):
            assert client.get_manifest(info.repository, "v1")[0] == info.manifest
        assert server.requests_served - before == 1 == client.tokens_fetched
        client.get_manifest(synth_small_token["oci"].repository, "v1")  # another scope, another token
        assert server.requests_served - before == 2


@pytest.mark.parametrize("auth", ["token", "htpasswd"])
def test_streamed_blob_upload_after_auth_handshake(fresh_registry, tmp_path: Path, auth: str) -> None:
    registry = fresh_registry(tls=True, auth=auth)
    layer = write_layer_file(tmp_path / "big.tgz", "streamed", 3 << 20)
    with Pusher(registry) as pusher:
        info = push_image(pusher, "stream/me", "v1", layers=[layer], flavor="oci")
        assert pusher.blobs_uploaded == 2
        assert pusher.client.get_blob("stream/me", layer.digest) == layer.read()
    assert inspect_raw(registry, "stream/me", "v1") == info.manifest


# -- lifecycle -------------------------------------------------------------------------------------------
def test_fresh_registry_is_empty_and_stops(fresh_registry, plain_registry: Registry) -> None:
    registry = fresh_registry()
    assert registry.host != plain_registry.host
    with registry.raw_client() as client:
        assert client.catalog() == []
    assert registry.list_tags("synth/docker-image") == []


def test_registry_stops_and_reports_startup_failure(tmp_path: Path) -> None:
    with start_registry(tmp_path / "a") as registry:
        host, port = registry.host.split(":")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host, int(port)), timeout=2).close()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", free_port()))
        busy.listen()
        port_taken = busy.getsockname()[1]
        with pytest.raises(StartupError, match="address already in use"):
            start_registry(tmp_path / "b", port=port_taken, timeout=3).__enter__()


def test_generate_release_is_deterministic(fresh_registry) -> None:
    sizes = {"base_layer_bytes": 4000, "app_layer_bytes": 1000}
    first = generate_release_infos(fresh_registry(), **sizes)
    second = generate_release_infos(fresh_registry(), **sizes)
    assert list(first) == list(ARC_IMAGES)
    assert {k: v.digest for k, v in first.items()} == {k: v.digest for k, v in second.items()}
    kinds = {info.media_type for info in first.values()}
    assert OCI_MANIFEST in kinds and DOCKER_MANIFEST_LIST in kinds
    assert first["arc-controller"].is_index and len(first["arc-controller"].children) == 2
    assert any(b"\n   " in info.manifest for info in first.values())
    bases = {info.layer_digests[0] for info in first.values() if not info.is_index}
    assert len(bases) == 1
    other = generate_release_infos(fresh_registry(), names=["arc-dns"], seed=1, **sizes)
    assert other["arc-dns"].digest != first["arc-dns"].digest


# -- network namespaces ----------------------------------------------------------------------------------
def test_netns_registry_is_unreachable_from_root_namespace(fresh_registry) -> None:
    registry = fresh_registry(tls=True, auth="token", netns=True)
    assert registry.netns
    small = push_small_set(registry, prefix="ns")
    assert inspect_raw(registry, "ns/multiarch", "v1", anonymous=True) == small["index_docker"].manifest
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{registry.url}/v2/", verify=make_verify(registry.url, registry.ca_file), trust_env=False)
    realm = registry.token_server.realm if registry.token_server else ""
    with pytest.raises(httpx.ConnectError):
        httpx.get(realm, verify=make_verify(realm, registry.ca_file), trust_env=False)

    def inside() -> int:
        return httpx.get(
            f"{registry.url}/v2/", verify=make_verify(registry.url, registry.ca_file)
        ).status_code

    assert run_in_netns(registry.netns, inside) == 401
    assert registry.token_server is not None and registry.token_server.requests_served > 0
