# shellcheck shell=bash
# shellcheck disable=SC2034  # the variables set here are read by the launchers that source this file
# Helpers for the service launchers in infra/*/server.sbatch (sourced, not run).
#
# A launcher runs one server (MLflow, ZenML, Weaviate) in the foreground of a long SLURM job (or of a
# shell on a service node), inside its Apptainer image, and writes the server's URL to
# $PTWIKI_SERVICES_DIR/<name>.url once the port answers; the pipeline reads that file
# (hpc.services.<name> in the config). The URL file disappears when the server stops.
#
# Environment (all optional):
#   PTWIKI_WORKDIR          the pipeline's workdir; default $PWD/.ptwiki
#   PTWIKI_SERVICES_DIR     URL files, secrets, database backups (shared FS); default $PTWIKI_WORKDIR/services
#   PTWIKI_IMAGES_DIR       where the .sif images are; default $PTWIKI_WORKDIR/images
#   PTWIKI_LOCAL_DIR        node-local disk for live databases; default ${TMPDIR:-/tmp}
#   PTWIKI_SERVICE_HOST     the host name clients use; default `hostname -f`
#   PTWIKI_SERVICE_RUNTIME  apptainer (default) or host (the server's command from PATH, e.g. the venv)
#   PTWIKI_BACKUP_SECONDS   how often live SQLite databases are copied to the shared FS; default 600
#   PTWIKI_DRY_RUN=1        print the server command, one argument per line, and exit (tests)

service_init() {  # service_init <name>
    SERVICE=$1
    PTWIKI_WORKDIR=${PTWIKI_WORKDIR:-$PWD/.ptwiki}
    SERVICES_DIR=${PTWIKI_SERVICES_DIR:-$PTWIKI_WORKDIR/services}
    IMAGES_DIR=${PTWIKI_IMAGES_DIR:-$PTWIKI_WORKDIR/images}
    STATE_DIR=$SERVICES_DIR/$SERVICE
    LOCAL_DIR=${PTWIKI_LOCAL_DIR:-${TMPDIR:-/tmp}}/ptwiki-$SERVICE-${SLURM_JOB_ID:-$$}
    SERVICE_HOST=${PTWIKI_SERVICE_HOST:-$(hostname -f 2>/dev/null || hostname)}
    RUNTIME=${PTWIKI_SERVICE_RUNTIME:-apptainer}
    URL_FILE=$SERVICES_DIR/$SERVICE.url
    BACKUPS=()
    case $RUNTIME in
        apptainer | host) ;;
        *) service_die "PTWIKI_SERVICE_RUNTIME=$RUNTIME: expected apptainer or host" ;;
    esac
    mkdir -p "$SERVICES_DIR" "$STATE_DIR" "$LOCAL_DIR"
    chmod 700 "$STATE_DIR" "$LOCAL_DIR"
}

service_log() { printf '[ptwiki-%s] %s\n' "$SERVICE" "$*" >&2; }
service_die() { service_log "error: $*"; exit 1; }

service_secret() {  # service_secret <file>: print the secret kept in <file>, created (0600, random) on first use
    local file=$1
    if [[ ! -s $file ]]; then
        (
            umask 077
            head -c 48 /dev/urandom | base64 | tr -d '/+=\n' | head -c 40 >"$file"
        )
    fi
    cat "$file"
}

service_env_file() {  # service_env_file <file> KEY=VALUE...: a 0600 env file (secrets stay off command lines)
    local file=$1 pair
    shift
    (
        umask 077
        : >"$file"
        for pair in "$@"; do
            printf '%s=%q\n' "${pair%%=*}" "${pair#*=}" >>"$file"
        done
    )
}

service_image() {  # service_image <path>: the image must exist (unless dry-running)
    if [[ $RUNTIME == apptainer && ! -f $1 && ${PTWIKI_DRY_RUN:-0} != 1 ]]; then
        service_die "image $1 not found: build it (apptainer/build.sh) or set the launcher's *_IMAGE variable"
    fi
}

service_restore() {  # service_restore <live db> <backup>: start from the last backup on the shared FS
    if [[ -s $2 && ! -e $1 ]]; then
        cp "$2" "$1"
        service_log "restored $1 from $2"
    fi
    BACKUPS+=("$1=$2")
}

service_backup() {  # copy each live SQLite database to its backup, consistently (sqlite3 backup API)
    local pair live backup
    for pair in "${BACKUPS[@]}"; do
        live=${pair%%=*}
        backup=${pair#*=}
        [[ -s $live ]] || continue
        "${BACKUP_PYTHON[@]}" -c 'import os, sqlite3, sys
os.umask(0o077)  # the auth database holds password hashes
src, dst = sys.argv[1], sys.argv[2]
tmp = dst + ".tmp"
with sqlite3.connect(src) as s, sqlite3.connect(tmp) as d:
    s.backup(d)
os.replace(tmp, dst)' "$live" "$backup" || service_log "warning: backup of $live failed"
    done
}

service_port_open() {  # service_port_open <port>
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

service_run() {  # service_run <port> <url> <command...>: run, publish the URL when the port opens, supervise
    local port=$1 url=$2
    shift 2
    if [[ ${PTWIKI_DRY_RUN:-0} == 1 ]]; then
        printf '%s\n' "$@"  # one argument per line
        exit 0
    fi
    if service_port_open "$port"; then
        service_die "port $port on $(hostname) is already in use: choose another (the launcher's *_PORT variable)"
    fi
    "$@" &
    SERVER_PID=$!
    BACKUP_PID=
    trap 'service_stop' TERM INT
    trap 'service_cleanup' EXIT
    local deadline=$((SECONDS + ${PTWIKI_START_SECONDS:-300}))
    until service_port_open "$port"; do
        kill -0 "$SERVER_PID" 2>/dev/null || service_die "the server exited before opening port $port"
        ((SECONDS < deadline)) || service_die "port $port did not open within ${PTWIKI_START_SECONDS:-300}s"
        sleep 1
    done
    printf '%s\n' "$url" >"$URL_FILE.tmp.$$"
    mv "$URL_FILE.tmp.$$" "$URL_FILE"
    service_log "serving $url (job ${SLURM_JOB_ID:-none} on $(hostname)); URL in $URL_FILE"
    if ((${#BACKUPS[@]})); then
        (
            trap - TERM INT EXIT
            while sleep "${PTWIKI_BACKUP_SECONDS:-600}"; do service_backup; done
        ) &
        BACKUP_PID=$!
    fi
    wait "$SERVER_PID"
    while kill -0 "$SERVER_PID" 2>/dev/null; do wait "$SERVER_PID"; done
}

service_stop() {
    service_log "stopping"
    kill -TERM "$SERVER_PID" 2>/dev/null || true
}

service_cleanup() {
    local status=$?
    set +e  # clean up as far as possible, whatever already went away
    trap - TERM INT EXIT
    rm -f "$URL_FILE"
    if [[ -n ${BACKUP_PID:-} ]]; then
        kill "$BACKUP_PID" 2>/dev/null
    fi
    if [[ -n ${SERVER_PID:-} ]] && kill -TERM "$SERVER_PID" 2>/dev/null; then
        wait "$SERVER_PID" 2>/dev/null
    fi
    if ((${#BACKUPS[@]})); then
        service_backup
        service_log "stopped (exit $status); databases backed up to $STATE_DIR"
    else
        service_log "stopped (exit $status)"
    fi
    exit "$status"
}
