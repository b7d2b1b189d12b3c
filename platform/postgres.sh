#!/usr/bin/env bash
# A real PostgreSQL 15 server on 127.0.0.1, run as a plain process with its own data directory:
# the commerce source database of the warehouse domain.
#
#   platform/postgres.sh start | stop | status
#
# Environment (all optional):
#   POSTGRES_PORT        port (default 5432)
#   POSTGRES_USER        superuser created at init (default commerce)
#   POSTGRES_PASSWORD    its password, for TCP connections (default commerce)
#   POSTGRES_DB          database created at init (default commerce)
#   POSTGRES_STATE_DIR   data directory, socket, log and pid (default .local/postgres-$POSTGRES_PORT)
#   POSTGRES_BIN_DIR     server binaries (default /usr/lib/postgresql/15/bin)
# initdb refuses to run as root: as root, the server runs as the `postgres` system user.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
port=${POSTGRES_PORT:-5432}
user=${POSTGRES_USER:-commerce}
password=${POSTGRES_PASSWORD:-commerce}
db=${POSTGRES_DB:-commerce}
state=${POSTGRES_STATE_DIR:-$root/.local/postgres-$port}
bin=${POSTGRES_BIN_DIR:-/usr/lib/postgresql/15/bin}
data=$state/data

say() { echo "[postgres] $*" >&2; }
die() { say "error: $*"; exit 1; }

# Run a server binary as the owner of the data directory (the `postgres` user when we are root).
as_owner() {
  if [[ $EUID -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_ctl_status() { [[ -f $data/PG_VERSION ]] && as_owner "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; }

ready() { "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" -d "$db" -U "$user"; }

start() {
  [[ -x $bin/postgres && -x $bin/initdb ]] \
    || die "PostgreSQL 15 server binaries not found in $bin: apt-get install postgresql (or set POSTGRES_BIN_DIR)."
  if pg_ctl_status; then say "already running on 127.0.0.1:$port (data in $data)"; return 0; fi
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && die "port $port is taken by another process; set POSTGRES_PORT to a free port."
  mkdir -p "$state"
  if [[ $EUID -eq 0 ]]; then
    id postgres >/dev/null 2>&1 || die "running as root needs the 'postgres' system user (created by apt-get install postgresql)."
    chown postgres: "$state"; chmod 700 "$state"
  fi
  if [[ ! -f $data/PG_VERSION ]]; then
    local pwfile=$state/.pw
    printf '%s\n' "$password" >"$pwfile"; [[ $EUID -eq 0 ]] && chown postgres: "$pwfile"
    as_owner "$bin/initdb" -D "$data" -U "$user" --pwfile="$pwfile" --auth-host=scram-sha-256 \
      --auth-local=trust -E UTF8 --locale=C.UTF-8 >"$state/initdb.log" 2>&1 \
      || { rm -f "$pwfile"; die "initdb failed; see $state/initdb.log"; }
    rm -f "$pwfile"
  fi
  say "starting on 127.0.0.1:$port (data in $data)"
  as_owner "$bin/pg_ctl" -D "$data" -l "$state/server.log" -w -t "${POSTGRES_START_TIMEOUT:-60}" \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $state -c fsync=${POSTGRES_FSYNC:-on}" start >/dev/null \
    || { tail -n 20 "$state/server.log" >&2 || true; die "the server did not start; see $state/server.log"; }
  local deadline=$((SECONDS + 30))
  until ready; do
    (( SECONDS < deadline )) || die "the server does not accept connections; see $state/server.log"
    sleep 0.2
  done
  # The database exists once: create it on first start (connecting through the private socket).
  if ! as_owner "$bin/psql" -h "$state" -p "$port" -U "$user" -d postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1; then
    as_owner "$bin/createdb" -h "$state" -p "$port" -U "$user" "$db"
  fi
  say "ready on 127.0.0.1:$port, database $db, user $user"
}

stop() {
  if ! pg_ctl_status; then say "not running"; return 0; fi
  as_owner "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null
  say "stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) if pg_ctl_status; then say "running on 127.0.0.1:$port (data in $data)"; else say "not running"; exit 1; fi ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
