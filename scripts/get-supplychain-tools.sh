#!/usr/bin/env bash
# Fetch cosign, notation and oras from Debian unstable into $SUPPLYCHAIN_DIR (default /tmp/supplychain-tools),
# the way ../shared/tools/build-crane.sh fetches Go packages: `apt-get download` with a private apt state and
# sources list (the system's apt setup and packages are not changed), then `dpkg -x`. They are static Go
# binaries and run on Debian 12. Prints the bin directory. The tests run them in a loopback-only namespace.
set -euo pipefail
A=${SUPPLYCHAIN_DIR:-/tmp/supplychain-tools}
mkdir -p "$A"/{bin,debs,root,apt/sid/lists/partial,apt/sid/cache/archives/partial}
cd "$A"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian sid main" > apt/sid/sources.list
APTO=(-oDir::Etc::SourceList=$A/apt/sid/sources.list -oDir::Etc::SourceParts=/nonexistent
      -oDir::State::Lists=$A/apt/sid/lists -oDir::Cache=$A/apt/sid/cache -oAPT::Sandbox::User=root -qq)
ls apt/sid/lists/*_Packages* >/dev/null 2>&1 || apt-get "${APTO[@]}" update
for p in cosign notation oras; do
  if [ ! -x "bin/$p" ]; then
    (cd debs && apt-get "${APTO[@]}" download "$p")
    f=$(ls -t debs/"${p}"_*.deb | head -1)
    dpkg -x "$f" root
    ln -sf "$A/root/usr/bin/$p" "bin/$p"
    echo "$p $(dpkg-deb -f "$f" Version) $(sha256sum "$f" | cut -c1-64)" >> debs.used
  fi
done
echo "$A/bin"
