#!/usr/bin/env bash
# Start a one-node SLURM cluster on this machine, for tests and for `configs/local-slurm.yaml`:
# munge, a private MariaDB + slurmdbd (so `sacct` works as on a real cluster), slurmctld, slurmd.
#
# The node line (hostname, CPUs, memory) comes from `slurmd -C`, so the same script works on any
# host. Idempotent: daemons already running are left alone; a changed slurm.conf restarts them.
# Needs root and the Debian packages: slurmctld slurmd slurm-client munge slurmdbd mariadb-server
# (slurmdbd + mariadb-server are optional: without them accounting is off and `sacct` is unavailable).
#
# Environment (all optional):
#   LOCAL_SLURM_STATE      state, logs and pid files        (default /var/lib/ptwiki-slurm)
#   LOCAL_SLURM_CONF_DIR   where slurm.conf is written       (default /etc/slurm, what clients read)
#   LOCAL_SLURM_CLUSTER    cluster name                      (default ptwiki)
#   LOCAL_SLURM_PARTITION  the one partition                 (default debug)
#   LOCAL_SLURM_DB_PORT    the private MariaDB's TCP port    (default 3306, bound to 127.0.0.1)
#   LOCAL_SLURM_ACCOUNTING 1 = slurmdbd + MariaDB, 0 = none   (default 1 when both are installed)
#   LOCAL_SLURM_CLEAN      1 = start slurmctld without the jobs of its last run (CI: nothing left over re-runs)
# Stop everything with infra/local-slurm/stop.sh.
set -euo pipefail

STATE=${LOCAL_SLURM_STATE:-/var/lib/ptwiki-slurm}
CONF_DIR=${LOCAL_SLURM_CONF_DIR:-/etc/slurm}
CLUSTER=${LOCAL_SLURM_CLUSTER:-ptwiki}
PARTITION=${LOCAL_SLURM_PARTITION:-debug}
DB_PORT=${LOCAL_SLURM_DB_PORT:-3306}
if [[ -z ${LOCAL_SLURM_ACCOUNTING:-} ]]; then
    if command -v slurmdbd >/dev/null && command -v mariadbd >/dev/null; then
        LOCAL_SLURM_ACCOUNTING=1
    else
        LOCAL_SLURM_ACCOUNTING=0
    fi
fi

log() { printf 'local-slurm: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $(id -u) -eq 0 ]] || die "run as root (it writes $CONF_DIR and starts system daemons)"
for tool in munged slurmctld slurmd sbatch; do
    command -v "$tool" >/dev/null || die "$tool not found: apt-get install -y slurmctld slurmd slurm-client munge"
done

mkdir -p "$STATE"/{ctld,spool,log,run} "$CONF_DIR"

running() {  # running <pidfile>: the pid in it is alive
    [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

wait_for() {  # wait_for <seconds> <description> <command...>
    local seconds=$1 what=$2
    shift 2
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || die "$what did not come up within ${seconds}s (logs in $STATE/log)"
        sleep 0.2
    done
}

# --- munge: authentication between the daemons and the clients ---
if [[ ! -s /etc/munge/munge.key ]]; then
    mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null \
        || dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
fi
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    log "starting munged"
    runuser -u munge -- /usr/sbin/munged --force  # --force: a killed munged leaves its socket behind
    wait_for 10 munged bash -c 'munge -n | unmunge'
fi

# --- slurm.conf for this host ---
node_line=$(slurmd -C | head -n 1)
host=$(hostname -s)
[[ $node_line == "NodeName=$host "* ]] || die "unexpected 'slurmd -C' output: $node_line"
cpus=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$node_line")

if [[ $LOCAL_SLURM_ACCOUNTING == 1 ]]; then
    accounting="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30"
else
    accounting="AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none"
fi

new_conf=$(cat <<CONF
# Written by infra/local-slurm/start.sh for host $host; rewritten on every start.
ClusterName=$CLUSTER
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
# no cgroups inside containers/VMs without systemd
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
# schedule every few seconds: tests wait on dependencies and requeued jobs
SchedulerParameters=sched_interval=2,bf_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
ReturnToService=2
JobRequeue=1
# finished jobs stay visible to squeue/scontrol for 10 minutes
MinJobAge=600
KillWait=10
InactiveLimit=0
Waittime=0
$accounting
JobCompType=jobcomp/none
NodeName=$host NodeAddr=127.0.0.1 ${node_line#"NodeName=$host "} State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
)
conf_changed=0
if [[ ! -f $CONF_DIR/slurm.conf ]] || [[ $(cat "$CONF_DIR/slurm.conf") != "$new_conf" ]]; then
    printf '%s\n' "$new_conf" >"$CONF_DIR/slurm.conf"
    conf_changed=1
fi
# Debian's cgroup.conf is not wanted here; plugstack.conf from the package is harmless.

if ((conf_changed)); then
    for daemon in slurmd slurmctld; do
        if running "$STATE/run/$daemon.pid"; then
            log "slurm.conf changed: stopping $daemon"
            kill "$(cat "$STATE/run/$daemon.pid")"
            wait_for 30 "$daemon shutdown" bash -c "! kill -0 $(cat "$STATE/run/$daemon.pid")"
        fi
    done
fi

# --- accounting: a private MariaDB + slurmdbd ---
if [[ $LOCAL_SLURM_ACCOUNTING == 1 ]]; then
    db_dir=$STATE/mysql
    db_sock=$STATE/run/mysqld.sock
    if [[ ! -d $db_dir/mysql ]]; then
        log "initialising MariaDB in $db_dir"
        mariadb-install-db --user=root --datadir="$db_dir" --auth-root-authentication-method=socket \
            --skip-test-db >"$STATE/log/mariadb-install.log" 2>&1
    fi
    if ! running "$STATE/run/mariadb.pid"; then
        log "starting MariaDB on 127.0.0.1:$DB_PORT"
        mariadbd --user=root --datadir="$db_dir" --socket="$db_sock" --port="$DB_PORT" \
            --bind-address=127.0.0.1 --pid-file="$STATE/run/mariadb.pid" \
            --log-error="$STATE/log/mariadb.log" --innodb-buffer-pool-size=64M >/dev/null 2>&1 &
        wait_for 30 MariaDB mariadb --socket="$db_sock" -e 'SELECT 1'
    fi
    mariadb --socket="$db_sock" <<SQL
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm-local';
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm-local';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
SQL
    dbd_conf=$(cat <<CONF
# Written by infra/local-slurm/start.sh: accounting for the one-node test cluster.
AuthType=auth/munge
DbdAddr=127.0.0.1
DbdHost=localhost
SlurmUser=root
PidFile=$STATE/run/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=slurm-local
StorageLoc=slurm_acct_db
CONF
)
    if [[ ! -f $CONF_DIR/slurmdbd.conf ]] || [[ $(cat "$CONF_DIR/slurmdbd.conf") != "$dbd_conf" ]]; then
        printf '%s\n' "$dbd_conf" >"$CONF_DIR/slurmdbd.conf"
        chmod 0600 "$CONF_DIR/slurmdbd.conf"
        if running "$STATE/run/slurmdbd.pid"; then
            kill "$(cat "$STATE/run/slurmdbd.pid")"
            wait_for 30 "slurmdbd shutdown" bash -c "! kill -0 $(cat "$STATE/run/slurmdbd.pid")"
        fi
    fi
    if ! running "$STATE/run/slurmdbd.pid"; then
        log "starting slurmdbd"
        slurmdbd
        wait_for 60 slurmdbd sacctmgr -n list cluster
    fi
    if [[ -z $(sacctmgr -n -P list cluster "$CLUSTER" format=cluster) ]]; then
        sacctmgr -i add cluster "$CLUSTER" >/dev/null
    fi
fi

# --- the controller and the node daemon ---
if ! running "$STATE/run/slurmctld.pid"; then
    log "starting slurmctld"
    if [[ ${LOCAL_SLURM_CLEAN:-0} == 1 ]]; then
        slurmctld -c
    else
        slurmctld
    fi
    wait_for 30 slurmctld scontrol ping
fi
if ! running "$STATE/run/slurmd.pid"; then
    log "starting slurmd"
    slurmd
fi
node_ready() {
    local state
    state=$(sinfo -h -n "$host" -o %T 2>/dev/null) || return 1
    case $state in
        idle* | mixed* | allocated* | completing*) return 0 ;;
        down* | drain* | fail*) scontrol update NodeName="$host" State=RESUME >/dev/null 2>&1; return 1 ;;
        *) return 1 ;;
    esac
}
wait_for 60 "node $host" node_ready
log "ready: cluster $CLUSTER, partition $PARTITION, node $host ($cpus CPUs), accounting $LOCAL_SLURM_ACCOUNTING"
