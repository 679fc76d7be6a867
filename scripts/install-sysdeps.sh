#!/usr/bin/env bash
# Install the Debian packages arcgap's tests, demo and benchmark need (idempotent, quiet when present).
#   docker-registry: CNCF distribution (the registries under test)   skopeo: independent oracle
#   apache2-utils: htpasswd   iproute2: network namespaces   zstd: bundle inspection
#   docker.io: dockerd for the --engine docker tests (started privately by the fixtures, never as a service)
set -euo pipefail
need=()
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v skopeo >/dev/null || need+=(skopeo)
command -v htpasswd >/dev/null || need+=(apache2-utils)
command -v ip >/dev/null || need+=(iproute2)
command -v zstd >/dev/null || need+=(zstd)
command -v dockerd >/dev/null || need+=(docker.io)  # the engine path's tests (a private dockerd)
[ -e /usr/bin/time ] || need+=(time)
if [ "${1:-}" = venv ]; then need+=(python3-venv); fi
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
echo "installing Debian packages: ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# No service may start during the install (docker.io's postinst would try; without systemd that can fail):
# a temporary policy-rc.d forbids it, unless the machine already has one.
policy=/usr/sbin/policy-rc.d
own_policy=""
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null && $SUDO chmod 755 "$policy" && own_policy=1
    trap '[ -n "$own_policy" ] && $SUDO rm -f "$policy"' EXIT
fi
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
