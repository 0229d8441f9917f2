#!/usr/bin/env bash
# Stop the daemons infra/local-slurm/start.sh started (by their pid files); state and logs stay in
# $LOCAL_SLURM_STATE for the next start. munged is left running (other services may use it).
set -euo pipefail

STATE=${LOCAL_SLURM_STATE:-/var/lib/ptwiki-slurm}

for daemon in slurmd slurmctld slurmdbd mariadb; do
    pidfile=$STATE/run/$daemon.pid
    if [[ -s $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        pid=$(cat "$pidfile")
        printf 'local-slurm: stopping %s (pid %s)\n' "$daemon" "$pid" >&2
        kill "$pid"
        for _ in $(seq 1 150); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
    fi
done
