#!/usr/bin/env bash
# Runs weaviate-server in the foreground on one host (exec: this process becomes the server, so a signal sent
# to it reaches the server). REST binds WEAVIATE_HOST; the server's gRPC listener binds every interface.
# Tests and benchmarks start it through ptwiki_llm.rag.stores.local_weaviate; a local user:
#
#   WEAVIATE_DATA_DIR=.ptwiki/weaviate WEAVIATE_API_KEY=secret infra/weaviate/run-local.sh
#   export WEAVIATE_URL='http://127.0.0.1:8080?grpc_port=50051' WEAVIATE_API_KEY=secret
#
# Variables: WEAVIATE_DATA_DIR and WEAVIATE_API_KEY (required); WEAVIATE_SERVER_BIN (default: what
# build-local.sh built), WEAVIATE_HOST (127.0.0.1), WEAVIATE_PORT (8080), WEAVIATE_GRPC_PORT (50051),
# WEAVIATE_GOSSIP_PORT (7946, and the next one), WEAVIATE_RAFT_PORT (8300, and the next one),
# WEAVIATE_NODE (ptwiki-weaviate: raft state is keyed by it, keep it across restarts on the same data).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=infra/weaviate/settings.sh
source "$here/settings.sh"

data=${WEAVIATE_DATA_DIR:?set WEAVIATE_DATA_DIR to the folder that holds (or will hold) the data}
key=${WEAVIATE_API_KEY:?set WEAVIATE_API_KEY: API-key authentication is always on}
bin=${WEAVIATE_SERVER_BIN:-${PTWIKI_CACHE:-/var/cache/ptwiki}/weaviate/$(<"$here/VERSION")/bin/weaviate-server}
[[ -x $bin ]] || { echo "run-local.sh: no weaviate-server at $bin: run infra/weaviate/build-local.sh" >&2; exit 1; }
mkdir -p "$data"

while IFS= read -r pair; do
    export "${pair?}"
done < <(weaviate_settings "$data" "$key" "${WEAVIATE_GRPC_PORT:-50051}" "${WEAVIATE_GOSSIP_PORT:-7946}" \
    "${WEAVIATE_RAFT_PORT:-8300}" "${WEAVIATE_NODE:-ptwiki-weaviate}")
exec "$bin" --host "${WEAVIATE_HOST:-127.0.0.1}" --port "${WEAVIATE_PORT:-8080}" --scheme http
