#!/usr/bin/env bash
# Long-running processes of the demo (dagster dev with its code servers and run workers, the producer), each
# started in a session of its own whose id is recorded, so that stopping finds every process it started by
# that id, never by a name pattern.
#
#   platform/procs.sh start NAME LOG -- COMMAND...   start COMMAND in a new session (LOG "-": this terminal)
#   platform/procs.sh stop [NAME...]                 stop the named sessions (default: every recorded one)
#   platform/procs.sh status [NAME...]
#   platform/procs.sh wait NAME                      return when the session's leader has exited
#
# A session started by `setsid` has id = process group id = its leader's pid. Stop sends SIGTERM to the
# leader and gives it half of PROCS_STOP_TIMEOUT (default 30 s) to stop its children, then SIGTERM to the
# process group and to every process still in the session (a child that moved to a group of its own stays
# in the session), and after the other half SIGKILL to what is left.
# Environment: PROCS_STATE_DIR (default .local/procs) holds NAME.sid files.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
state=${PROCS_STATE_DIR:-$root/.local/procs}

say() { echo "[procs] $*" >&2; }

# The pids of every live process (zombies excluded) whose session id is $1 (fields after the command name:
# state ppid pgrp session).
members() {
  local sid=$1 f line
  local -a fields
  for f in /proc/[0-9]*/stat; do
    { line=$(<"$f"); } 2>/dev/null || continue
    read -ra fields <<<"${line##*) }"
    [[ ${fields[3]:-} == "$sid" && ${fields[0]} != Z ]] && { f=${f#/proc/}; echo "${f%/stat}"; }
  done
  return 0
}

alive() { [[ -n $(members "$1") ]]; }

start() {
  local name=$1 log=$2
  shift 3  # NAME LOG --
  mkdir -p "$state"
  if [[ -f $state/$name.sid ]] && alive "$(<"$state/$name.sid")"; then
    say "$name is already running (session $(<"$state/$name.sid"))"; return 1
  fi
  # A background job of a script is not a group leader, so setsid makes this very process the session
  # leader (no fork): $! is the session id.
  if [[ $log == - ]]; then setsid "$@" </dev/null & else setsid "$@" </dev/null >"$log" 2>&1 & fi
  local pid=$!
  for _ in $(seq 1 50); do
    [[ $(ps -o sid= -p "$pid" 2>/dev/null | tr -d ' ') == "$pid" ]] && break
    sleep 0.1
  done
  echo "$pid" >"$state/$name.sid"
  say "started $name (session $pid)"
}

stop_one() {
  local name=$1 file=$state/$1.sid sid pid
  [[ -f $file ]] || { say "$name: not recorded"; return 0; }
  sid=$(<"$file")
  if alive "$sid"; then
    # The leader first (dagster dev stops its code servers and daemon itself), then the rest, then SIGKILL.
    local timeout=${PROCS_STOP_TIMEOUT:-30} deadline
    kill -TERM "$sid" 2>/dev/null || true
    deadline=$((SECONDS + timeout / 2))
    while alive "$sid" && ((SECONDS < deadline)); do sleep 0.3; done
    kill -TERM -- "-$sid" 2>/dev/null || true
    for pid in $(members "$sid"); do kill -TERM "$pid" 2>/dev/null || true; done
    deadline=$((SECONDS + timeout - timeout / 2))
    while alive "$sid" && ((SECONDS < deadline)); do sleep 0.3; done
    if alive "$sid"; then
      say "$name: killing what did not stop within $timeout s: $(members "$sid" | tr '\n' ' ')"
      kill -KILL -- "-$sid" 2>/dev/null || true
      for pid in $(members "$sid"); do kill -KILL "$pid" 2>/dev/null || true; done
    fi
    say "stopped $name (session $sid)"
  else
    say "$name: not running"
  fi
  rm -f "$file"
}

names() {
  if (($#)); then printf '%s\n' "$@"; return; fi
  local f
  for f in "$state"/*.sid; do [[ -e $f ]] && basename "$f" .sid; done
  return 0
}

case "${1:-}" in
  start) [[ $# -ge 4 && $4 == -- ]] || { echo "usage: $0 start NAME LOG -- COMMAND..." >&2; exit 2; }; shift; start "$@" ;;
  stop) shift; for n in $(names "$@"); do stop_one "$n"; done ;;
  status)
    shift
    for n in $(names "$@"); do
      if [[ -f $state/$n.sid ]] && alive "$(<"$state/$n.sid")"; then
        say "$n running (session $(<"$state/$n.sid"): $(members "$(<"$state/$n.sid")" | wc -l) processes)"
      else say "$n not running"; fi
    done ;;
  wait)
    [[ -f $state/$2.sid ]] || exit 0
    while kill -0 "$(<"$state/$2.sid")" 2>/dev/null; do sleep 1; done ;;
  *) echo "usage: $0 start|stop|status|wait" >&2; exit 2 ;;
esac
