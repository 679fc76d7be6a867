#!/usr/bin/env bash
# Install the Debian packages arcgap's tests, demo and benchmark need (idempotent, quiet when present).
#   docker-registry: CNCF distribution (the registries under test)   skopeo: independent oracle
#   apache2-utils: htpasswd   iproute2: network namespaces   zstd: bundle inspection
set -euo pipefail
need=()
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v skopeo >/dev/null || need+=(skopeo)
command -v htpasswd >/dev/null || need+=(apache2-utils)
command -v ip >/dev/null || need+=(iproute2)
command -v zstd >/dev/null || need+=(zstd)
[ -e /usr/bin/time ] || need+=(time)
if [ "${1:-}" = venv ]; then need+=(python3-venv); fi
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
echo "installing Debian packages: ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
