# shellcheck shell=bash
# The Weaviate server's environment, defined once for every launcher (sourced, not run): server.sbatch (a
# service node: the image or a binary) and run-local.sh (tests, benchmarks, a local user: the binary that
# build-local.sh builds). Names checked against the 1.39 source (usecases/config/environment.go).
#
# weaviate_settings <data dir> <api key> <gRPC port> <gossip port> <raft port> <node name>
# prints NAME=VALUE lines. The gossip and raft ports each take the next port too: the cluster data port is
# gossip + 1 and the raft RPC port raft + 1 (ports must be unique per host when several servers share one).
weaviate_settings() {
    local data=$1 key=$2 grpc=$3 gossip=$4 raft=$5 node=$6
    printf '%s\n' \
        "PERSISTENCE_DATA_PATH=$data" \
        "AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED=false" \
        "AUTHENTICATION_APIKEY_ENABLED=true" \
        "AUTHENTICATION_APIKEY_ALLOWED_KEYS=$key" \
        "AUTHENTICATION_APIKEY_USERS=ptwiki" \
        "DEFAULT_VECTORIZER_MODULE=none" \
        "ENABLE_MODULES=" \
        "CLUSTER_HOSTNAME=$node" \
        "CLUSTER_GOSSIP_BIND_PORT=$gossip" \
        "CLUSTER_DATA_BIND_PORT=$((gossip + 1))" \
        "RAFT_PORT=$raft" \
        "RAFT_INTERNAL_RPC_PORT=$((raft + 1))" \
        "RAFT_BOOTSTRAP_EXPECT=1" \
        "RAFT_JOIN=$node:$raft" \
        "GRPC_PORT=$grpc" \
        "DISABLE_TELEMETRY=true" \
        "GO_PROFILING_DISABLE=true" \
        "QUERY_DEFAULTS_LIMIT=25"
}
