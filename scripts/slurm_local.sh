#!/usr/bin/env bash
# A single-node SLURM cluster with accounting on this machine, for the tests and for trying the SLURM launchers:
#   sudo scripts/slurm_local.sh start   # installs what is missing (Debian), starts it, waits for an idle node
#   sudo scripts/slurm_local.sh stop    # stops the daemons it started, and nothing else
# Daemons: munged, mariadbd, slurmdbd, slurmctld, slurmd. Their state, logs and pids live in one folder,
# $SLURM_LOCAL_DIR (default /var/lib/harness-slurm). It writes /etc/slurm/slurm.conf and slurmdbd.conf (so sbatch
# and sacct need no SLURM_CONF) and refuses to touch a configuration it did not write.
# Settings measured on Debian 12 without systemd: no cgroup plugins, short credential and
# scheduling intervals (a requeued job restarts in seconds, not minutes), KillWait=5 (submitit ignores SIGTERM).
set -euo pipefail

DIR=${SLURM_LOCAL_DIR:-/var/lib/harness-slurm}
MARK="# written by scripts/slurm_local.sh of the activation harness; 'slurm_local.sh stop' leaves it in place"
CONF=/etc/slurm/slurm.conf
DBD_CONF=/etc/slurm/slurmdbd.conf
PIDS=$DIR/pids  # "name pid" of every daemon this script started
DB_PORT=${SLURM_LOCAL_DB_PORT:-33306}  # not 3306: a MariaDB of the machine's own may be there
NODE=$(hostname -s)
PACKAGES=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)
START_TIMEOUT=${SLURM_LOCAL_TIMEOUT:-90}

say() { echo "slurm_local: $*"; }
die() { echo "slurm_local: $*" >&2; exit 1; }

alive() {  # pid is a live process (a zombie is dead: PID 1 here may never reap it) named like $2
    local state
    state=$(awk '/^State:/ {print $2}' "/proc/$1/status" 2>/dev/null) || return 1
    [[ -n $state && $state != Z && $state != X ]] && [[ $(cat "/proc/$1/comm" 2>/dev/null) == "$2"* ]]
}

all_alive() {  # every daemon in $PIDS is running (and there are five)
    [[ -s $PIDS ]] || return 1
    local name pid n=0
    while read -r name pid; do alive "$pid" "$name" || return 1; n=$((n + 1)); done < "$PIDS"
    [[ $n -eq 5 ]]
}

ours() { [[ ! -e $1 ]] || head -n 1 "$1" | grep -qxF "$MARK"; }

check_root_and_configs() {
    [[ $(id -u) -eq 0 ]] || die "run as root (it installs packages, writes /etc/slurm and starts daemons)"
    for f in "$CONF" "$DBD_CONF"; do
        ours "$f" || die "$f exists and was not written by this script; a real SLURM install is here, use it"
    done
}

install_missing() {
    local missing=() p
    for p in "${PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    [[ ${#missing[@]} -eq 0 ]] && return
    command -v apt-get >/dev/null || die "needs Debian or Ubuntu (apt-get) to install ${missing[*]}"
    say "installing ${missing[*]}"
    apt-get update -qq >"$DIR/log/apt.log" 2>&1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
        >>"$DIR/log/apt.log" 2>&1 || { tail -n 20 "$DIR/log/apt.log" >&2; die "apt-get install failed"; }
}

write_configs() {
    local node_line
    node_line=$(slurmd -C | head -n 1)  # NodeName=<host> CPUs=... RealMemory=...: what this machine has
    mkdir -p /etc/slurm
    cat >"$CONF" <<EOF
$MARK
ClusterName=harness
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
AuthInfo=cred_expire=5
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerParameters=sched_interval=2,bf_interval=1
EnforcePartLimits=ALL
JobRequeue=1
KillWait=5
ReturnToService=2
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
JobAcctGatherType=jobacct_gather/none
$node_line NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=cpu Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    cat >"$DBD_CONF" <<EOF
$MARK
AuthType=auth/munge
DbdHost=$NODE
DbdAddr=127.0.0.1
SlurmUser=root
PidFile=$DIR/run/slurmdbd.pid
LogFile=$DIR/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$DBD_CONF"  # slurmdbd refuses a readable one: it holds the database password
}

spawn() {  # spawn NAME COMMAND...: a detached daemon in the foreground mode, its pid recorded
    local name=$1; shift
    setsid "$@" </dev/null >>"$DIR/log/$name.out" 2>&1 &
    echo "$name $!" >>"$PIDS"
}

wait_for() {  # wait_for WHAT SECONDS COMMAND...: until the command succeeds
    local what=$1 seconds=$2; shift 2
    local deadline=$((SECONDS + seconds))
    local name pid
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || fail "$what did not come up within ${seconds} s"
        while read -r name pid; do alive "$pid" "$name" || fail "$name exited while starting"; done <"$PIDS"
        sleep 0.5
    done
}

fail() {  # one clear line, then what the daemons said
    echo "slurm_local: $*; logs in $DIR/log" >&2
    local f
    for f in "$DIR"/log/*.log "$DIR"/log/*.out; do
        [[ -s $f ]] && { echo "--- $f" >&2; tail -n 8 "$f" >&2; }
    done
    stop_daemons >/dev/null 2>&1 || true
    exit 1
}

start_database() {
    if [[ ! -d $DIR/mysql/mysql ]]; then
        mkdir -p "$DIR/mysql" && chown mysql:mysql "$DIR/mysql"
        mariadb-install-db --user=mysql --datadir="$DIR/mysql" --skip-test-db >"$DIR/log/mariadb-install.log" 2>&1 \
            || fail "mariadb-install-db failed"
    fi
    mkdir -p "$DIR/mysql-run" && chown mysql:mysql "$DIR/mysql-run"
    spawn mariadbd mariadbd --user=mysql --datadir="$DIR/mysql" --socket="$DIR/mysql-run/mysqld.sock" \
        --pid-file="$DIR/mysql-run/mysqld.pid" --port="$DB_PORT" --bind-address=127.0.0.1 --skip-name-resolve
    wait_for MariaDB 60 mariadb-admin --socket="$DIR/mysql-run/mysqld.sock" ping
    mariadb --socket="$DIR/mysql-run/mysqld.sock" -e "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';" || fail "could not create the database user"
}

node_idle() { [[ $(sinfo -h -n "$NODE" -o %T 2>/dev/null) == idle ]]; }

start() {
    check_root_and_configs
    if all_alive; then  # its jobs, if any, run on: nothing restarts
        say "already running (node $NODE $(sinfo -h -n "$NODE" -o %T 2>/dev/null)); state and logs in $DIR"
        return
    fi
    [[ -s $PIDS ]] && stop_daemons  # a cluster half up (a daemon died): start it afresh
    mkdir -p "$DIR"/{log,run,state,spool,munge}
    install_missing
    write_configs
    : >"$PIDS"
    mkdir -p /run/munge && chown munge:munge /run/munge "$DIR/munge"
    # setpriv execs munged as the munge user (munged refuses root): the recorded pid is munged's
    spawn munged setpriv --reuid=munge --regid=munge --init-groups munged --foreground \
        --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/munge/munged.log"
    wait_for munged 20 bash -c "munge -n | unmunge"
    start_database
    spawn slurmdbd slurmdbd -D
    wait_for slurmdbd 60 sacctmgr -n list cluster
    sacctmgr -n -P list cluster format=cluster | grep -qx harness || sacctmgr -i add cluster harness >/dev/null
    spawn slurmctld slurmctld -D
    spawn slurmd slurmd -D -N "$NODE"
    wait_for "the node $NODE (idle in sinfo)" "$START_TIMEOUT" node_idle
    say "cluster up: node $NODE idle, partition cpu, accounting on; state and logs in $DIR"
}

stop_daemons() {  # TERM in reverse start order, then KILL whatever is left after 20 s
    [[ -s $PIDS ]] || return 0
    local name pid lines=()
    mapfile -t lines < <(tac "$PIDS")
    for line in "${lines[@]}"; do
        read -r name pid <<<"$line"
        alive "$pid" "$name" && kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 40); do alive "$pid" "$name" || break; sleep 0.5; done
        alive "$pid" "$name" && kill -KILL "$pid" 2>/dev/null || true
    done
    sleep 0.5
    for line in "${lines[@]}"; do
        read -r name pid <<<"$line"
        alive "$pid" "$name" && die "$name (pid $pid) is still running after SIGKILL"
    done
    rm -f "$PIDS"
}

stop() {
    check_root_and_configs
    if [[ ! -s $PIDS ]]; then say "not running (no daemons recorded in $PIDS)"; return; fi
    if all_alive; then  # end the jobs first: their slurmstepd would outlive slurmd
        squeue -h -o %A 2>/dev/null | xargs -r scancel 2>/dev/null || true
        for _ in $(seq 30); do [[ -z $(squeue -h 2>/dev/null) ]] && break; sleep 0.5; done
    fi
    local steps
    steps=$(pgrep -x slurmstepd || true)
    stop_daemons
    for pid in $steps; do alive "$pid" slurmstepd && kill -KILL "$pid" 2>/dev/null || true; done
    say "stopped; state and logs kept in $DIR"
}

case ${1:-} in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
