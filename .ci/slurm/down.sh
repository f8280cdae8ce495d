#!/usr/bin/env bash
# Stop the single-node CI Slurm cluster started by .ci/slurm/up.sh:
# slurmd, slurmctld, slurmdbd (pid files), MariaDB and munged (via their sockets).
# Job/accounting state is kept, so up.sh brings the same cluster back.
#   KEEP_MUNGE=1 / KEEP_DB=1 leave munged / MariaDB running.
set -uo pipefail
log() { echo "[slurm-ci] $*" >&2; }
pid_alive() {  # pid file whose pid is alive AND is the daemon the file is named after
    local pid; pid=$(cat "$1" 2>/dev/null) || return 1
    [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$(basename "$1" .pid)" ]
}
stop_pid() {  # name pidfile
    if pid_alive "$2"; then
        local pid; pid=$(cat "$2")
        log "stopping $1 (pid $pid)"
        kill "$pid" 2>/dev/null
        for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
        kill -0 "$pid" 2>/dev/null && { log "$1 still alive, SIGKILL"; kill -9 "$pid" 2>/dev/null; }
    fi
    rm -f "$2"
}

# Let slurmctld save its state and tell slurmd to exit, then make sure.
command -v scontrol >/dev/null 2>&1 && pid_alive /run/slurmctld.pid \
    && timeout 10 scontrol shutdown >/dev/null 2>&1
stop_pid slurmd /run/slurmd.pid
stop_pid slurmctld /run/slurmctld.pid
stop_pid slurmdbd /run/slurmdbd.pid
if [ "${KEEP_DB:-0}" != 1 ] && command -v mariadb-admin >/dev/null 2>&1 \
        && mariadb-admin --protocol=socket ping >/dev/null 2>&1; then
    log "stopping mariadb"
    if [ -x /etc/init.d/mariadb ]; then
        /etc/init.d/mariadb stop >/dev/null 2>&1 || mariadb-admin --protocol=socket shutdown
    else
        mariadb-admin --protocol=socket shutdown
    fi
fi
if [ "${KEEP_MUNGE:-0}" != 1 ]; then
    # "munged --stop" finds the daemon through its socket (works without pid file)
    if [ -S /run/munge/munge.socket.2 ] && command -v munged >/dev/null 2>&1 \
            && timeout 10 munged --stop >/dev/null 2>&1; then
        log "stopped munged"
    fi
    stop_pid munged /run/munge/munged.pid
fi
log "down"
exit 0
