#!/usr/bin/env bash
# Install (if needed) and start a real single-node Slurm cluster on this machine
# (Debian, root, no systemd, loopback only) for integration tests that submit
# jobs through submitit / hydra-submitit-launcher.
#
#   bash .ci/slurm/up.sh      # exit 0: cluster up (partition "debug")
#                             # exit 3: cluster unavailable, reason on stderr
#
# Idempotent: running it again only fixes what is missing (restarts the daemons
# only when the generated config changed or a daemon is down).
#
# Environment knobs:
#   SLURM_CI_ACCOUNTING=1|0   (default 1) run MariaDB + slurmdbd so that `sacct`
#                             works. submitit polls job state with sacct; without
#                             it a job that dies without writing its result
#                             (scancel, timeout, node failure) is never seen as
#                             finished. If the accounting setup fails, the
#                             cluster still comes up without it (warning).
#   SLURM_CI_TIMEOUT=60       seconds to wait for the node / self-check job.
set -uo pipefail

ACCOUNTING="${SLURM_CI_ACCOUNTING:-1}"
TIMEOUT="${SLURM_CI_TIMEOUT:-60}"
CLUSTER=ci
PARTITION=debug
CONF_DIR=/etc/slurm
LOG_DIR=/var/log/slurm
CTLD_SPOOL=/var/spool/slurmctld
SLURMD_SPOOL=/var/spool/slurmd
DB_PASS=slurmci   # loopback-only throwaway CI database

log() { echo "[slurm-ci] $*" >&2; }
# On failure: daemon log tails first, then ONE last stderr line with the reason
# (callers use that line as their skip reason).
fail() {
    for f in "$LOG_DIR"/slurmctld.log "$LOG_DIR"/slurmd.log; do
        [ -s "$f" ] && { echo "--- tail $f" >&2; tail -n 15 "$f" >&2; }
    done
    echo "[slurm-ci] UNAVAILABLE: $*" >&2
    exit 3
}
T0=$(date +%s)
# Slurm clients retry for minutes when a daemon does not answer: bound them.
q() { timeout 15 "$@"; }

[ "$(id -u)" = 0 ] || fail "must run as root (apt-get, daemons)"

# Serialise concurrent callers (e.g. several pytest workers). Every daemon is
# started with "9>&-": one that inherited the lock fd would hold it forever.
exec 9>/var/lock/slurm-ci.lock
flock -w 600 9 || fail "another up.sh holds /var/lock/slurm-ci.lock"

# ---------------------------------------------------------------- install ---
pkgs=()
command -v slurmctld >/dev/null 2>&1 || pkgs+=(slurm-wlm)
command -v munged >/dev/null 2>&1 || pkgs+=(munge)
if [ "$ACCOUNTING" = 1 ]; then
    command -v slurmdbd >/dev/null 2>&1 || pkgs+=(slurmdbd)
    command -v mariadbd >/dev/null 2>&1 || pkgs+=(mariadb-server)
fi
if [ ${#pkgs[@]} -gt 0 ]; then
    log "installing ${pkgs[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/tmp/slurm-ci-apt.log 2>&1 \
        || fail "apt-get update failed (see /tmp/slurm-ci-apt.log)"
    apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >>/tmp/slurm-ci-apt.log 2>&1 \
        || fail "apt-get install ${pkgs[*]} failed (see /tmp/slurm-ci-apt.log)"
fi
command -v slurmctld >/dev/null 2>&1 || fail "slurmctld not installed"
if [ "$ACCOUNTING" = 1 ] && ! command -v slurmdbd >/dev/null 2>&1; then
    log "WARNING: slurmdbd missing; continuing without accounting (no sacct)"
    ACCOUNTING=0
fi

mkdir -p "$CONF_DIR" "$LOG_DIR" "$CTLD_SPOOL" "$SLURMD_SPOOL"

# ------------------------------------------------------------------ munge ---
KEY=/etc/munge/munge.key
if [ ! -s "$KEY" ]; then
    log "creating munge key"
    mkdir -p /etc/munge
    if command -v mungekey >/dev/null 2>&1; then
        mungekey --create --keyfile="$KEY" --force >/dev/null 2>&1 \
            || dd if=/dev/urandom of="$KEY" bs=1 count=1024 status=none
    else
        dd if=/dev/urandom of="$KEY" bs=1 count=1024 status=none
    fi
fi
munge_user=munge
id munge >/dev/null 2>&1 || munge_user=root
chown "$munge_user:$munge_user" "$KEY" /etc/munge 2>/dev/null
chmod 700 /etc/munge; chmod 400 "$KEY"
munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }
if ! munge_ok; then
    log "starting munged"
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    chown "$munge_user:$munge_user" /run/munge /var/lib/munge /var/log/munge
    chmod 755 /run/munge
    rm -f /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock
    if [ "$munge_user" = munge ]; then
        runuser -u munge -- /usr/sbin/munged >/dev/null 2>&1 9>&- || true
    fi
    for _ in $(seq 20); do munge_ok && break; sleep 0.25; done
    if ! munge_ok; then
        log "munged as user munge failed; retrying as root with --force"
        /usr/sbin/munged --force >/dev/null 2>&1 9>&- || true
        for _ in $(seq 20); do munge_ok && break; sleep 0.25; done
    fi
    munge_ok || fail "munged does not work (munge -n | unmunge fails)"
fi

# ------------------------------------------------------------- accounting ---
conf_changed=0
write_if_changed() {  # path mode <content on stdin>
    local tmp; tmp=$(mktemp)
    cat >"$tmp"
    if ! cmp -s "$tmp" "$1"; then
        install -m "$2" "$tmp" "$1"; conf_changed=1; log "wrote $1"
    fi
    rm -f "$tmp"
}
db_ok() { timeout 5 mariadb-admin --protocol=socket ping >/dev/null 2>&1; }
dbd_ok() { (exec 3<>/dev/tcp/127.0.0.1/6819) 2>/dev/null; }
# /run is not a tmpfs here: a pid file can outlive its daemon (machine snapshot),
# so also check that the pid still belongs to the daemon named by the file.
pid_alive() {
    local pid; pid=$(cat "$1" 2>/dev/null) || return 1
    [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$(basename "$1" .pid)" ]
}

if [ "$ACCOUNTING" = 1 ]; then
    if ! db_ok; then
        log "starting mariadb"
        mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
        if [ -x /etc/init.d/mariadb ]; then
            /etc/init.d/mariadb start >/tmp/slurm-ci-mariadb.log 2>&1 9>&- || true
        fi
        if ! db_ok; then
            (setsid mariadbd-safe --user=mysql --skip-syslog >/tmp/slurm-ci-mariadb.log 2>&1 9>&- &)
            for _ in $(seq 60); do db_ok && break; sleep 0.5; done
        fi
    fi
    if db_ok && timeout 30 mariadb --protocol=socket -e "
        CREATE DATABASE IF NOT EXISTS slurm_acct_db;
        CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';" 2>/tmp/slurm-ci-mariadb.err; then
        write_if_changed "$CONF_DIR/slurmdbd.conf" 600 <<EOF
# generated by .ci/slurm/up.sh
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
LogFile=$LOG_DIR/slurmdbd.log
PidFile=/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
        if [ $conf_changed = 1 ] && pid_alive /run/slurmdbd.pid; then
            pid=$(cat /run/slurmdbd.pid 2>/dev/null) && kill "$pid" 2>/dev/null
            for _ in $(seq 40); do pid_alive /run/slurmdbd.pid || break; sleep 0.25; done
        fi
        if ! pid_alive /run/slurmdbd.pid; then
            log "starting slurmdbd"
            slurmdbd 9>&- || true
        fi
        for _ in $(seq $((TIMEOUT * 2))); do dbd_ok && break; sleep 0.5; done
        if ! dbd_ok; then
            log "WARNING: slurmdbd not answering (see $LOG_DIR/slurmdbd.log); continuing without accounting"
            ACCOUNTING=0
        fi
    else
        log "WARNING: mariadb unavailable (see /tmp/slurm-ci-mariadb.*); continuing without accounting"
        ACCOUNTING=0
    fi
fi

# ------------------------------------------------------------- slurm.conf ---
NODE=$(hostname -s)
# Hardware as slurmd sees it (must not exceed it, or the node is drained).
hw=$(slurmd -C 2>/dev/null | head -n1)
CPUS=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$hw"); CPUS=${CPUS:-$(nproc)}
SOCK=$(sed -n 's/.*SocketsPerBoard=\([0-9]*\).*/\1/p' <<<"$hw"); SOCK=${SOCK:-1}
CORES=$(sed -n 's/.*CoresPerSocket=\([0-9]*\).*/\1/p' <<<"$hw"); CORES=${CORES:-$CPUS}
THREADS=$(sed -n 's/.*ThreadsPerCore=\([0-9]*\).*/\1/p' <<<"$hw"); THREADS=${THREADS:-1}
MEM=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$hw")
MEM=${MEM:-$(free -m | awk '/^Mem:/{print $2}')}

if [ "$ACCOUNTING" = 1 ]; then
    ACCT_LINES="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30"
else
    ACCT_LINES="AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none"
fi

conf_changed=0
write_if_changed "$CONF_DIR/slurm.conf" 644 <<EOF
# generated by .ci/slurm/up.sh -- single-node CI cluster, loopback only
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# A requeued job is held back cred_expire seconds (default 120) before it may
# start again; keep requeue tests short.
AuthInfo=cred_expire=10
CredType=cred/munge
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$CTLD_SPOOL
SlurmdSpoolDir=$SLURMD_SPOOL
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
SchedulerType=sched/backfill
# Default main loop is 60 s / backfill 30 s: a requeued job whose BeginTime
# has passed would wait up to a minute for the next pass.
SchedulerParameters=sched_interval=5,bf_interval=5
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
JobRequeue=1
EnforcePartLimits=ALL
MaxJobCount=10000
MinJobAge=300
KillWait=5
InactiveLimit=0
SlurmctldTimeout=60
SlurmdTimeout=60
MailProg=/bin/true
JobCompType=jobcomp/none
$ACCT_LINES
NodeName=$NODE NodeHostname=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS Boards=1 SocketsPerBoard=$SOCK CoresPerSocket=$CORES ThreadsPerCore=$THREADS RealMemory=$MEM State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF

# -------------------------------------------------------------- daemons ---
if [ "$ACCOUNTING" = 1 ]; then  # register the cluster in the accounting DB (once)
    q sacctmgr -n -P list cluster format=cluster 2>/dev/null | grep -qx "$CLUSTER" \
        || q sacctmgr -i add cluster "$CLUSTER" >/dev/null 2>&1 \
        || log "WARNING: sacctmgr add cluster $CLUSTER failed"
fi
if [ $conf_changed = 1 ]; then
    for p in /run/slurmctld.pid /run/slurmd.pid; do
        pid=$(cat "$p" 2>/dev/null) || continue
        if pid_alive "$p"; then
            log "config changed: stopping $(basename "$p" .pid) (pid $pid)"
            kill "$pid" 2>/dev/null
            for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
        fi
    done
fi
if ! pid_alive /run/slurmctld.pid; then
    log "starting slurmctld"
    slurmctld >/dev/null 2>&1 9>&- || fail "slurmctld failed to start"
fi
if ! pid_alive /run/slurmd.pid; then
    log "starting slurmd"
    slurmd >/dev/null 2>&1 9>&- || fail "slurmd failed to start"
fi

state=""; i=0; deadline=$(( $(date +%s) + TIMEOUT ))
while [ "$(date +%s)" -lt "$deadline" ]; do
    i=$((i + 1))
    state=$(timeout 5 sinfo -h -N -n "$NODE" -o %T 2>/dev/null | head -n1)
    case "$state" in
        idle|mixed|allocated|completing) break ;;
        *drain*|down*|*fail*)
            [ $((i % 4)) = 1 ] && q scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 ;;
    esac
    sleep 0.5
done
case "$state" in
    idle|mixed|allocated|completing) ;;
    *) fail "node $NODE not ready after ${TIMEOUT}s (state: '${state:-no answer from slurmctld}')" ;;
esac

# ----------------------------------------------------------- self-check ---
out=$(mktemp -d /tmp/slurm-ci-check.XXXXXX)
jid=$(q sbatch --parsable -p "$PARTITION" -J ci-selfcheck -t 1 -o "$out/out.txt" \
      --wrap 'echo hi' 2>"$out/err.txt") \
    || fail "sbatch failed: $(cat "$out/err.txt")"
jstate=""; reason=""; deadline=$(( $(date +%s) + TIMEOUT ))
while [ "$(date +%s)" -lt "$deadline" ]; do
    jinfo=$(timeout 5 scontrol show job -o "$jid" 2>/dev/null)
    jstate=$(sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p' <<<"$jinfo")
    reason=$(sed -n 's/.* Reason=\([^ ]*\).*/\1/p' <<<"$jinfo")
    case "$jstate" in PENDING|CONFIGURING|RUNNING|COMPLETING|"") sleep 0.5 ;; *) break ;; esac
done
if [ "$jstate" = PENDING ] && { [ "$reason" = Resources ] || [ "$reason" = Priority ]; }; then
    # Cluster busy with other (test) jobs: the scheduler works, just no free CPU.
    q scancel "$jid" 2>/dev/null; rm -rf "$out"
    log "UP (busy: self-check job $jid still pending on $reason after ${TIMEOUT}s, cancelled)"
    exit 0
fi
if [ "$jstate" != COMPLETED ] || ! grep -qx hi "$out/out.txt" 2>/dev/null; then
    fail "self-check job $jid did not complete (state '$jstate', output '$(cat "$out/out.txt" 2>/dev/null)')"
fi
rm -rf "$out"

log "UP in $(( $(date +%s) - T0 ))s: node $NODE CPUs=$CPUS RealMemory=${MEM}MB partition=$PARTITION accounting=$([ "$ACCOUNTING" = 1 ] && echo sacct || echo none) (self-check job $jid COMPLETED)"
exit 0
