#!/usr/bin/env bash
# A private, loopback-only PostgreSQL cluster for postbackd's tests and local experiments.
#
#   scripts/postgres.sh start     install postgresql (apt) when missing, initdb, start, wait ready
#   scripts/postgres.sh stop      stop the cluster this script started (nothing else)
#   scripts/postgres.sh status    exit 0 when the cluster answers, 1 otherwise
#   scripts/postgres.sh url       print the URL the tests use (postgresql://…)
#
# No systemd and no system-wide cluster: the data directory, the socket and the log live under
# $POSTGRES_TEST_DIR (default /tmp/postbackd-postgres), the server listens on
# 127.0.0.1:$POSTGRES_TEST_PORT (default 55432) only, and trusts loopback connections as the
# superuser `postbackd` (a throw-away cluster: nothing but this machine can reach it).
# initdb refuses to run as root, so as root the server runs as the `postgres` account that
# Debian's package creates. The URL is written to $POSTGRES_TEST_DIR/url, where the tests read
# it (or from the environment variable POSTBACKD_TEST_PG, which wins).
set -euo pipefail

BASE="${POSTGRES_TEST_DIR:-/tmp/postbackd-postgres}"
PORT="${POSTGRES_TEST_PORT:-55432}"
START_TIMEOUT="${POSTGRES_START_TIMEOUT:-60}"
DATA="$BASE/data"
USER_NAME=postbackd
URL="postgresql://$USER_NAME@127.0.0.1:$PORT/postgres"

say() { printf 'postgres.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

pg_bin() {
    local dir
    dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
    [ -n "$dir" ] && [ -x "$dir/pg_ctl" ] && echo "$dir"
}

install_if_missing() {
    pg_bin >/dev/null && return 0
    [ "$(id -u)" = 0 ] || die "postgresql is not installed and installing it needs root: \
run 'apt-get install -y postgresql' as root"
    say "installing postgresql with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >&2 || die "apt-get update failed (see above)"
    apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confold \
        postgresql >&2 || die "apt-get install postgresql failed (see above)"
    pg_bin >/dev/null || die "postgresql installed but no /usr/lib/postgresql/*/bin/pg_ctl"
}

# Runs a server binary as the account that owns the cluster: root may not run PostgreSQL.
as_owner() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

ctl() { as_owner "$(pg_bin)/pg_ctl" -D "$DATA" "$@"; }

answers() {
    [ -n "$(pg_bin)" ] && "$(pg_bin)/pg_isready" -q -h 127.0.0.1 -p "$PORT" -t 2 2>/dev/null
}

ours_running() { [ -f "$DATA/postmaster.pid" ] && ctl status >/dev/null 2>&1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

init_cluster() {
    mkdir -p "$BASE"
    chmod 755 "$BASE"
    if [ "$(id -u)" = 0 ]; then
        id postgres >/dev/null 2>&1 || die "no 'postgres' account to run the server as (the \
postgresql package creates it): reinstall postgresql, or run this script as a normal user"
        chown postgres: "$BASE"
    fi
    [ -f "$DATA/PG_VERSION" ] && return 0
    say "creating a private cluster in $DATA"
    as_owner "$(pg_bin)/initdb" -D "$DATA" -U "$USER_NAME" --auth=trust -E UTF8 \
        --locale=C.UTF-8 >"$BASE/initdb.log" 2>&1 ||
        { tail -n 20 "$BASE/initdb.log" >&2; die "initdb failed (log: $BASE/initdb.log)"; }
    cat >>"$DATA/postgresql.conf" <<EOF
# scripts/postgres.sh: loopback only, socket in the cluster's own directory
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$BASE'
max_connections = 200
EOF
}

cmd_start() {
    install_if_missing
    if ours_running && answers; then
        echo "$URL" >"$BASE/url"
        say "already running: $URL"
        return 0
    fi
    if port_open; then
        die "port 127.0.0.1:$PORT is taken by another process (not the cluster in $DATA): \
stop it, or set POSTGRES_TEST_PORT to a free port"
    fi
    init_cluster
    say "starting PostgreSQL on 127.0.0.1:$PORT (files in $BASE)"
    ctl -l "$BASE/server.log" -w -t "$START_TIMEOUT" start >/dev/null ||
        { tail -n 20 "$BASE/server.log" >&2 || true; die "PostgreSQL did not start within \
${START_TIMEOUT}s (log: $BASE/server.log)"; }
    answers || die "PostgreSQL started but does not answer on 127.0.0.1:$PORT (log: \
$BASE/server.log)"
    echo "$URL" >"$BASE/url"
    say "ready: $URL"
}

cmd_stop() {
    [ -n "$(pg_bin)" ] || { say "not installed; nothing to stop"; return 0; }
    if ours_running; then
        ctl -m fast -w -t 30 stop >/dev/null || die "the cluster in $DATA did not stop in 30s \
(log: $BASE/server.log)"
    fi
    rm -f "$BASE/url"
    say "stopped"
}

cmd_status() {
    if ours_running && answers; then
        say "running: $URL"
        return 0
    fi
    say "not running"
    return 1
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    url) echo "$URL" ;;
    *) echo "usage: $0 start|stop|status|url" >&2; exit 2 ;;
esac
