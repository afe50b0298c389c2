#!/usr/bin/env bash
# A private, loopback-only RabbitMQ node for postbackd's tests and local experiments.
#
#   scripts/rabbitmq.sh start     install rabbitmq-server (apt) when missing, start, wait ready;
#                                 prints one word on stdout: `started` when this call started
#                                 the node, `running` when it was already running (reused: a
#                                 caller that did not start it must not stop it)
#   scripts/rabbitmq.sh stop      stop the node (and epmd when nothing else uses it)
#   scripts/rabbitmq.sh status    exit 0 when the node answers, 1 otherwise
#   scripts/rabbitmq.sh ctl ARGS  rabbitmqctl against this node (e.g. `ctl stop_app`)
#
# No systemd is needed: the server runs in the background as the calling user with every
# RABBITMQ_* path under $RABBITMQ_TEST_DIR (default /tmp/postbackd-rabbitmq), AMQP on
# 127.0.0.1:$RABBITMQ_NODE_PORT (default 5672), epmd and Erlang distribution on loopback only.
# The guest/guest user works because clients connect over loopback.
set -euo pipefail

BASE="${RABBITMQ_TEST_DIR:-/tmp/postbackd-rabbitmq}"
PORT="${RABBITMQ_NODE_PORT:-5672}"
NODE="${RABBITMQ_TEST_NODENAME:-postbackd-test@localhost}"
START_TIMEOUT="${RABBITMQ_START_TIMEOUT:-60}"
RMQ_BIN=/usr/lib/rabbitmq/bin

say() { printf 'rabbitmq.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

node_env() {
    mkdir -p "$BASE/log"
    chmod 700 "$BASE"
    if [ ! -f "$BASE/.erlang.cookie" ]; then
        (umask 077 && head -c 30 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$BASE/.erlang.cookie")
    fi
    chmod 400 "$BASE/.erlang.cookie"
    cd "$BASE"  # Erlang writes stray files (crash dumps) to its working directory
    export HOME="$BASE"  # the Erlang cookie lives here, shared by server and rabbitmqctl
    export ERL_CRASH_DUMP="$BASE/log/erl_crash.dump"
    export RABBITMQ_NODENAME="$NODE"
    export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
    export RABBITMQ_NODE_PORT="$PORT"
    export RABBITMQ_DIST_PORT="$((PORT + 20000))"
    export ERL_EPMD_ADDRESS=127.0.0.1
    export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
    export RABBITMQ_CONF_ENV_FILE="$BASE/rabbitmq-env.conf"
    export RABBITMQ_CONFIG_FILE="$BASE/rabbitmq.conf"
    export RABBITMQ_ADVANCED_CONFIG_FILE="$BASE/advanced.config"
    export RABBITMQ_ENABLED_PLUGINS_FILE="$BASE/enabled_plugins"
    export RABBITMQ_MNESIA_BASE="$BASE/mnesia"
    export RABBITMQ_LOG_BASE="$BASE/log"
    export RABBITMQ_PID_FILE="$BASE/rabbitmq.pid"
    export RABBITMQ_PLUGINS_EXPAND_DIR="$BASE/plugins-expand"
}

ctl() { "$RMQ_BIN/rabbitmqctl" -n "$NODE" "$@"; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

node_answers() { ctl -q --timeout 5 ping >/dev/null 2>&1; }

install_if_missing() {
    [ -x "$RMQ_BIN/rabbitmq-server" ] && return 0
    [ "$(id -u)" = 0 ] || die "rabbitmq-server is not installed and installing it needs root: \
run 'apt-get install -y rabbitmq-server' as root"
    say "installing rabbitmq-server with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >&2 || die "apt-get update failed (see above)"
    apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confold \
        rabbitmq-server >&2 || die "apt-get install rabbitmq-server failed (see above)"
    [ -x "$RMQ_BIN/rabbitmq-server" ] || die "rabbitmq-server installed but $RMQ_BIN is missing"
    # Debian's package may have started a system-wide node through its init script.
    if [ -x /etc/init.d/rabbitmq-server ] && /etc/init.d/rabbitmq-server status >/dev/null 2>&1
    then
        say "stopping the system-wide node the package started (it would hold port 5672)"
        /etc/init.d/rabbitmq-server stop >&2 || true
    fi
}

write_config() {
    mkdir -p "$BASE/mnesia" "$BASE/log" "$BASE/plugins-expand"
    : >"$RABBITMQ_CONF_ENV_FILE"
    echo '[].' >"$RABBITMQ_ENABLED_PLUGINS_FILE"
    echo '[].' >"$RABBITMQ_ADVANCED_CONFIG_FILE"
    cat >"$RABBITMQ_CONFIG_FILE" <<EOF
listeners.tcp.default = 127.0.0.1:$PORT
disk_free_limit.absolute = 50MB
log.console = false
log.file.level = info
EOF
}

cmd_start() {
    install_if_missing
    node_env
    if node_answers; then
        ctl -q --timeout "$START_TIMEOUT" await_startup >/dev/null 2>&1 ||
            die "node $NODE is up but its app does not start (see $BASE/log)"
        say "already running: node $NODE, amqp://guest:guest@127.0.0.1:$PORT/ (not started \
by this call: reused and left running)"
        echo running
        return 0
    fi
    if port_open; then
        stop_idle_epmd
        die "port 127.0.0.1:$PORT is taken by another process (not node $NODE): stop it, or \
set RABBITMQ_NODE_PORT to a free port"
    fi
    write_config
    say "starting node $NODE on 127.0.0.1:$PORT (files in $BASE)"
    setsid nohup "$RMQ_BIN/rabbitmq-server" >"$BASE/log/console.log" 2>&1 </dev/null &
    local deadline=$((SECONDS + START_TIMEOUT))
    until port_open && node_answers; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            tail -n 20 "$BASE/log/console.log" >&2 || true
            die "node $NODE did not start within ${START_TIMEOUT}s (logs: $BASE/log)"
        fi
        sleep 0.5
    done
    ctl -q --timeout "$START_TIMEOUT" await_startup >/dev/null ||
        die "node $NODE did not finish booting within ${START_TIMEOUT}s (logs: $BASE/log)"
    say "ready: amqp://guest:guest@127.0.0.1:$PORT/"
    echo started
}

# rabbitmqctl starts epmd (Erlang's name server) when it is not running; end it again when no
# Erlang node is registered with it, so a status check leaves nothing behind.
stop_idle_epmd() {
    if command -v epmd >/dev/null && ! epmd -names 2>/dev/null | grep -q '^name '; then
        epmd -kill >/dev/null 2>&1 || true
    fi
}

cmd_stop() {
    [ -x "$RMQ_BIN/rabbitmqctl" ] || { say "not installed; nothing to stop"; return 0; }
    node_env
    local pid=""
    [ -f "$RABBITMQ_PID_FILE" ] && pid="$(cat "$RABBITMQ_PID_FILE")"
    if node_answers; then
        ctl -q --timeout 30 stop >/dev/null 2>&1 || true
    fi
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        if kill -0 "$pid" 2>/dev/null; then
            say "node did not stop in 30s; killing pid $pid"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$RABBITMQ_PID_FILE"
    stop_idle_epmd
    say "stopped"
}

cmd_status() {
    [ -x "$RMQ_BIN/rabbitmqctl" ] || { say "not installed"; return 1; }
    node_env
    if node_answers && port_open; then
        say "running: node $NODE, amqp://guest:guest@127.0.0.1:$PORT/"
        return 0
    fi
    stop_idle_epmd
    say "not running"
    return 1
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    ctl) shift; node_env; ctl "$@" ;;
    *) echo "usage: $0 start|stop|status|ctl RABBITMQCTL-ARGS" >&2; exit 2 ;;
esac
