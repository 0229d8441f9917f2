#!/usr/bin/env bash
# Builds a pinned weaviate-server from its Go module into a cache folder outside the repository, once.
# Re-running finds the binary and only prints its path. Needs Go >= 1.26 (the 1.39 line's go.mod says `go 1.26`)
# and the Go module proxy; the first build downloads a large module graph and compiles for several minutes.
#
#   infra/weaviate/build-local.sh            # prints the binary's path on stdout (logs go to stderr)
#   export WEAVIATE_SERVER_BIN=$(infra/weaviate/build-local.sh)
#
# Variables: WEAVIATE_VERSION (default: the pin in infra/weaviate/VERSION), PTWIKI_CACHE (default /var/cache/ptwiki),
# GO (the go binary).
set -euo pipefail

# The pin: the newest 1.39.x (a maintained line) whose whole module graph the Go module proxy serves. The proxy
# serves no 1.40.x, and 1.39.4-1.39.7 need github.com/weaviate/sroar >= v0.0.17, which it refuses (403).
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
version=${WEAVIATE_VERSION:-$(<"$here/VERSION")}
cache=${PTWIKI_CACHE:-/var/cache/ptwiki}/weaviate/$version
bin=$cache/bin/weaviate-server

if [[ -x $bin ]]; then
    echo "$bin"
    exit 0
fi

go=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
[[ -x $go ]] || { echo "build-local.sh: Go not found; install Go >= 1.26 or set GO=/path/to/go" >&2; exit 1; }

mkdir -p "$cache/bin"
start=$(date +%s)
echo "building weaviate-server $version with $("$go" version) into $cache/bin" >&2
# A private GOBIN plus an atomic rename: an interrupted build never leaves a half-written binary at $bin
tmp=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# CGO is off in the official release builds too; it also keeps the binary free of a C toolchain dependency
GOBIN=$tmp CGO_ENABLED=0 "$go" install "github.com/weaviate/weaviate/cmd/weaviate-server@$version" >&2
mv "$tmp/weaviate-server" "$bin"
echo "built $bin in $(( $(date +%s) - start )) s" >&2
echo "$bin"
