#!/usr/bin/env bash
# A real single-node Apache Kafka broker (KRaft) on 127.0.0.1, run from Apache's release artifacts
# on Maven Central, resolved once into a cache folder.
#
#   platform/kafka.sh start | stop | status
#
# Environment (all optional):
#   KAFKA_PORT             broker port (default 9092); the controller listens on KAFKA_CONTROLLER_PORT
#                          (default KAFKA_PORT + 1000)
#   KAFKA_STATE_DIR        data, logs and pid file (default .local/kafka-$KAFKA_PORT)
#   KAFKA_CACHE_DIR        resolved jars (default .cache/kafka)
#   KAFKA_HEAP_OPTS        JVM heap (default -Xms256m -Xmx1g)
#   KAFKA_SASL_MECHANISM   empty (default): a PLAINTEXT listener without authentication, for the laptop.
#                          PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512: the client listener is SASL_PLAINTEXT and
#                          accepts only KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD (the platform's own
#                          settings). SCRAM credentials are stored when the KRaft storage is formatted: use
#                          a fresh KAFKA_STATE_DIR when switching an existing broker to SCRAM. (This is the
#                          local broker for development and tests; a managed cluster adds TLS: SASL_SSL.)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
port=${KAFKA_PORT:-9092}
controller_port=${KAFKA_CONTROLLER_PORT:-$((port + 1000))}
state=${KAFKA_STATE_DIR:-$root/.local/kafka-$port}
cache=${KAFKA_CACHE_DIR:-$root/.cache/kafka}
version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/kafka/pom.xml")
libs=$cache/$version/libs
pidfile=$state/broker.pid
mechanism=${KAFKA_SASL_MECHANISM:-}

say() { echo "[kafka] $*" >&2; }
die() { say "error: $*"; exit 1; }

running_pid() {
  [[ -f $pidfile ]] || return 1
  local pid; pid=$(<"$pidfile")
  kill -0 "$pid" 2>/dev/null && echo "$pid"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

resolve() {
  [[ -f $libs/.complete ]] && return 0
  command -v java >/dev/null || die "java not found: install a JDK 17 (apt-get install openjdk-17-jre-headless)."
  command -v mvn >/dev/null || die "mvn not found: install Maven (apt-get install maven) to resolve Kafka from Maven Central."
  say "resolving Apache Kafka $version from Maven Central into $libs (once)..."
  local tmp="$libs.tmp.$$"
  rm -rf "$tmp"; mkdir -p "$tmp"
  mvn -q -B -Dstyle.color=never -f "$here/kafka/pom.xml" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$tmp" >&2 \
    || die "Maven could not resolve org.apache.kafka:kafka_2.13:$version (is Maven Central reachable?)"
  touch "$tmp/.complete"
  rm -rf "$libs"; mv "$tmp" "$libs"
}

start() {
  if pid=$(running_pid); then
    say "already running (pid $pid) on 127.0.0.1:$port"; return 0
  fi
  port_open "$port" && die "port $port is taken by another process; set KAFKA_PORT to a free port."
  command -v java >/dev/null || die "java not found: install a JDK 17 (apt-get install openjdk-17-jre-headless)."
  resolve
  mkdir -p "$state/logs"
  local cp="$libs/*"
  local props=$state/server.properties
  local listener=PLAINTEXT scram=()
  if [[ -n $mechanism ]]; then
    [[ $mechanism =~ ^(PLAIN|SCRAM-SHA-256|SCRAM-SHA-512)$ ]] \
      || die "KAFKA_SASL_MECHANISM must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (got $mechanism)"
    local user=${KAFKA_SASL_USERNAME:?KAFKA_SASL_USERNAME is required with KAFKA_SASL_MECHANISM}
    local password=${KAFKA_SASL_PASSWORD:?KAFKA_SASL_PASSWORD is required with KAFKA_SASL_MECHANISM}
    # Kafka's --add-scram parser splits on commas and the JAAS line is quoted: keep those characters out.
    local forbidden='[],["\]'
    [[ $user$password =~ $forbidden ]] && die 'KAFKA_SASL_USERNAME/PASSWORD must not contain " , [ ] or \'
    listener=SASL_PLAINTEXT
  fi
  cat >"$props" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller_port
listeners=$listener://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=$listener://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=$listener
listener.security.protocol.map=$listener:$listener,CONTROLLER:PLAINTEXT
log.dirs=$state/data
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.retention.hours=-1
log.flush.interval.messages=9223372036854775807
PROPS
  if [[ -n $mechanism ]]; then
    # The broker authenticates to itself with the same user. PLAIN keeps its users in the JAAS line
    # (user_<name>="<password>"); SCRAM keeps salted credentials in the cluster metadata, added at format time.
    local module=scram.ScramLoginModule users=""
    if [[ $mechanism == PLAIN ]]; then
      module=plain.PlainLoginModule users=" user_$user=\"$password\""
    else
      scram=(--add-scram "$mechanism=[name=$user,password=$password]")
    fi
    local lower; lower=$(tr '[:upper:]' '[:lower:]' <<<"$mechanism")
    cat >>"$props" <<PROPS
sasl.enabled.mechanisms=$mechanism
sasl.mechanism.inter.broker.protocol=$mechanism
listener.name.sasl_plaintext.$lower.sasl.jaas.config=org.apache.kafka.common.security.$module required username="$user" password="$password"$users;
PROPS
    chmod 600 "$props"
  fi
  local jvm=(-cp "$cp" -Dlog4j2.configurationFile="$here/kafka/log4j2.properties"
             -Dkafka.logs.dir="$state/logs" ${KAFKA_HEAP_OPTS:--Xms256m -Xmx1g}
             -XX:+UseG1GC -Djava.awt.headless=true)
  if [[ ! -f $state/data/meta.properties ]]; then
    java "${jvm[@]}" kafka.tools.StorageTool format --ignore-formatted \
      --cluster-id "$(java "${jvm[@]}" kafka.tools.StorageTool random-uuid)" \
      --config "$props" "${scram[@]}" >"$state/logs/format.log" 2>&1 \
      || die "formatting KRaft storage failed; see $state/logs/format.log"
  fi
  say "starting broker on 127.0.0.1:$port (${mechanism:-no} authentication; state in $state)"
  nohup java "${jvm[@]}" kafka.Kafka "$props" >"$state/logs/stdout.log" 2>&1 &
  echo $! >"$pidfile"
  local deadline=$((SECONDS + ${KAFKA_START_TIMEOUT:-90}))
  until port_open "$port" && grep -q "Kafka Server started" "$state/logs/server.log" 2>/dev/null; do
    if ! running_pid >/dev/null; then
      tail -n 30 "$state/logs/stdout.log" "$state/logs/server.log" >&2 2>/dev/null || true
      die "the broker exited during start-up; logs above and in $state/logs"
    fi
    (( SECONDS < deadline )) || { stop; die "the broker did not accept connections within ${KAFKA_START_TIMEOUT:-90}s; see $state/logs"; }
    sleep 0.3
  done
  say "ready on 127.0.0.1:$port (pid $(<"$pidfile"))"
}

stop() {
  local pid
  if ! pid=$(running_pid); then say "not running"; rm -f "$pidfile"; return 0; fi
  kill -TERM "$pid"
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.3; done
  kill -0 "$pid" 2>/dev/null && { say "broker did not stop in 30 s, killing it"; kill -KILL "$pid"; }
  rm -f "$pidfile"
  say "stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) if pid=$(running_pid); then say "running (pid $pid) on 127.0.0.1:$port"; else say "not running"; exit 1; fi ;;
  resolve) resolve ;;
  *) echo "usage: $0 start|stop|status|resolve" >&2; exit 2 ;;
esac
