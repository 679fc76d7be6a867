#!/usr/bin/env bash
# Build crane (google/go-containerregistry cmd/crane) from Debian's packaged source, with a Debian Go toolchain,
# into $CRANE_DIR/bin (default /tmp/crane-build/bin). About 80 s and ~400 MB of packages the first time.
# (arcgap copy of the team tool ../shared/tools/build-crane.sh; `make crane` runs it.)
#   crane is the fastest widely used peer for moving images (export: `crane pull --format=oci REF... DIR`,
#   then tar | zstd), and `crane registry serve [--disk DIR]` is a second OCI registry implementation
#   (go-containerregistry's), independent of distribution.
# Where things come from: only Debian packages (the machines reach Debian's archive; no Go module proxy):
#   golang-1.27-go/-src and golang-github-google-go-containerregistry-dev (which ships cmd/crane) plus the
#   golang-*-dev packages it imports, from Debian unstable, fetched with `apt-get download` into a private apt
#   state and unpacked with `dpkg -x` under $CRANE_DIR: the system's apt setup and packages are not changed.
#   Versions are pinned in crane-debs.lock beside this script (name version sha256); a pin no longer served
#   falls back to the current version with a warning. GOPATH-mode build, -trimpath, CGO off.
set -euo pipefail
A=${CRANE_DIR:-/tmp/crane-build}
GOV=${GOV:-1.27}
mkdir -p "$A"/{bin,debs,root,apt/sid/lists/partial,apt/sid/cache/archives/partial}
cd "$A"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian sid main" > apt/sid/sources.list
APTO=(-oDir::Etc::SourceList=$A/apt/sid/sources.list -oDir::Etc::SourceParts=/nonexistent
      -oDir::State::Lists=$A/apt/sid/lists -oDir::Cache=$A/apt/sid/cache -oAPT::Sandbox::User=root -qq)
ls apt/sid/lists/*_Packages* >/dev/null 2>&1 || apt-get "${APTO[@]}" update

# deb PKG...: download (pinned to the version in $PIN when listed there) and unpack into $A/root, once each.
# What was used (name version sha256) is listed in $A/debs.used at the end.
PIN=${PIN:-$(dirname "$(readlink -f "$0")")/crane-debs.lock}
deb() {
  local p v f
  for p in "$@"; do
    [ -f "debs/.$p.done" ] && continue
    v=$(awk -v p="$p" '$1==p{print $2}' "$PIN" 2>/dev/null || true)
    if [ -n "$v" ]; then
      (cd debs && apt-get "${APTO[@]}" download "$p=$v") ||
        { echo "WARNING: $p=$v (pinned in $PIN) is not served any more; taking the current version" >&2
          (cd debs && apt-get "${APTO[@]}" download "$p"); } || return 1
    else
      (cd debs && apt-get "${APTO[@]}" download "$p") || return 1
    fi
    f=$(ls -t debs/"${p}"_*.deb | head -1)
    if [ -n "$v" ] && [ "$(dpkg-deb -f "$f" Version)" = "$v" ]; then
      [ "$(sha256sum "$f" | cut -c1-64)" = "$(awk -v p="$p" '$1==p{print $3}' "$PIN")" ] || { echo "sha256 mismatch: $f"; return 1; }
    fi
    dpkg -x "$f" root
    touch "debs/.$p.done"
  done
}

# Go import path -> Debian -dev package name candidates (dh-make-golang naming).
debnames() {
  python3 - "$1" <<'EOF'
import sys
p = sys.argv[1].split('/'); h = p[0]; c = []
def n(*xs): return 'golang-' + '-'.join(xs).lower().replace('_', '-') + '-dev'
if h in ('github.com', 'gitlab.com', 'bitbucket.org') and len(p) >= 3:
    if len(p) >= 4 and p[3][:1] == 'v' and p[3][1:].isdigit(): c.append(n(h.split('.')[0], p[1], p[2], p[3]))
    c.append(n(h.split('.')[0], p[1], p[2]))
    if p[1] == 'sirupsen': c.append('golang-logrus-dev')
    if p[1:3] == ['docker', 'cli']: c.append('golang-github-docker-docker-dev')  # Debian ships docker/cli there
elif h == 'golang.org' and p[1] == 'x': c.append(n('golang', 'x', p[2]))
elif h == 'gopkg.in': c.append(n('gopkg', *p[1:3]) if '.v' not in p[1] else n('gopkg', p[1]))
elif h == 'google.golang.org': c.append(n('google', p[1]))
elif h == 'go.opentelemetry.io': c.append(n('opentelemetry', p[1]))
elif h == 'k8s.io': c.append(n('k8s', p[1]))
print(' '.join(c))
EOF
}

export PATH=$A/root/usr/lib/go-$GOV/bin:$PATH GO111MODULE=off GOTOOLCHAIN=local GOPROXY=off GOFLAGS= CGO_ENABLED=0 \
       GOCACHE=$A/gocache
deb golang-$GOV-go golang-$GOV-src
go version

# resolve PKGPATH GOPATH: pull in Debian -dev packages until `go list -deps` finds every import.
resolve() {
  local want=$1 miss m c ok
  for i in $(seq 60); do
    miss=$(GOPATH=$2 go list -e -deps -f '{{if .Error}}{{.ImportPath}}{{end}}' "$want" 2>/dev/null | sort -u)
    [ -z "$miss" ] && return 0
    for m in $miss; do
      ok=
      for c in $(debnames "$m"); do
        if [ -f "debs/.$c.done" ]; then ok=1; break; fi
        case "$(apt-cache "${APTO[@]}" policy "$c" 2>/dev/null)" in *"Candidate: "[0-9]*) deb "$c"; ok=1; break;; esac
      done
      [ -n "$ok" ] || { grep -qx "$m" debs/.unresolved 2>/dev/null || { echo "no Debian package for $m" >&2; echo "$m" >> debs/.unresolved; }; }
    done
    # stop when nothing new could be added
    [ -n "$(for m in $miss; do grep -qx "$m" debs/.unresolved 2>/dev/null || echo x; done)" ] || break
  done
  GOPATH=$2 go list -e -deps -f '{{if .Error}}{{.ImportPath}}: {{.Error}}{{end}}' "$want"
  return 1
}

# ---- crane (Debian's go-containerregistry source) ----
deb golang-github-google-go-containerregistry-dev
GCR=$A/root/usr/share/gocode/src/github.com/google/go-containerregistry
resolve github.com/google/go-containerregistry/cmd/crane "$A/root/usr/share/gocode"
GCRV=$(dpkg-deb -f debs/golang-github-google-go-containerregistry-dev_*.deb Version)
GOPATH=$A/root/usr/share/gocode go build -trimpath \
  -ldflags "-s -w -buildid= -X github.com/google/go-containerregistry/cmd/crane/cmd.Version=v$GCRV" \
  -o bin/crane github.com/google/go-containerregistry/cmd/crane
echo "crane: go-containerregistry $GCRV (Debian source), $(go version | cut -d' ' -f3)" > bin/crane.version

bin/crane version
cat bin/*.version
for d in debs/.*.done; do p=${d#debs/.}; p=${p%.done}; f=$(ls -t debs/"${p}"_*.deb | head -1)
  echo "$p $(dpkg-deb -f "$f" Version) $(sha256sum "$f" | cut -c1-64)"; done | sort > debs.used
echo "Debian packages used (name version sha256): $A/debs.used ($(wc -l < debs.used) packages)"
if [ -f "$PIN" ] && ! diff -q <(awk '{print $1, $2}' "$PIN") <(awk '{print $1, $2}' debs.used) >/dev/null; then
  echo "NOTE: packages differ from the pins in $PIN"; fi
sha256sum bin/crane
