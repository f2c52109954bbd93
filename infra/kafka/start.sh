#!/usr/bin/env bash
# Starts a single-node Apache Kafka (KRaft: broker + controller in one JVM) on 127.0.0.1.
# Usage: infra/kafka/start.sh [PORT]     PORT (or $KAFKA_PORT): the client port, default 9092; 0 picks a free one.
# Env:   KAFKA_RUN_DIR (default infra/kafka/run): config, data, log (broker.log), pid file, and `bootstrap`
#        (the HOST:PORT clients use). KAFKA_HEAP (default 512m).
# Idempotent: if this run folder's broker is already up it says so and exits 0. Returns once the JVM is
# started; infra/kafka/wait.sh waits until it serves requests.
set -euo pipefail
source "$(dirname "$0")/common.sh"

if pid="$(broker_pid)"; then
  echo "kafka: already running (pid $pid) at $(cat "$run_dir/bootstrap"), run folder $run_dir"
  exit 0
fi

"$here/fetch.sh"
mkdir -p "$run_dir"

port="${1:-${KAFKA_PORT:-}}"
# A restart of an existing run folder keeps its port, so clients and committed offsets stay valid.
if [[ -z "$port" && -f "$run_dir/bootstrap" ]]; then port="$(cut -d: -f2 < "$run_dir/bootstrap")"; fi
port="${port:-9092}"
if [[ "$port" == 0 ]]; then port="$(free_port)"; fi
if port_in_use "$port"; then
  echo "kafka: port $port on 127.0.0.1 is already in use by another process; pass another port (start.sh PORT, or 0 for a free one)" >&2
  exit 1
fi
controller_port="$(cat "$run_dir/controller.port" 2>/dev/null || true)"
if [[ -z "$controller_port" ]] || port_in_use "$controller_port"; then controller_port="$(free_port)"; fi
echo "$controller_port" > "$run_dir/controller.port"

cat > "$run_dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller_port
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$run_dir/data
num.partitions=1
# Topics are created explicitly (Bus.createTopic): producing to a missing topic is an error, not a new topic.
auto.create.topics.enable=false
default.replication.factor=1
min.insync.replicas=1
# One node: internal topics have one replica, and few partitions so the first group/transaction is quick.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Fast consumer-group rebalances (tests start and stop members often).
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=500
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.retention.hours=168
# Room for large records (a samples group is ~100 KB; allow well beyond).
message.max.bytes=16777216
PROPS

if [[ ! -f "$run_dir/data/meta.properties" ]]; then
  java -Xmx256m -cp "$here/dist/libs/*" -Dlog4j2.configurationFile="$here/log4j2.properties" \
    kafka.tools.StorageTool format --cluster-id "$(java -cp "$here/dist/libs/*" kafka.tools.StorageTool random-uuid 2>/dev/null)" \
    --config "$run_dir/server.properties" > "$run_dir/format.log" 2>&1 \
    || { echo "kafka: formatting the storage failed:" >&2; cat "$run_dir/format.log" >&2; exit 1; }
fi

echo "127.0.0.1:$port" > "$run_dir/bootstrap"
# setsid: the broker outlives this script and is not killed by a terminal's or test runner's signals.
setsid java -Xms128m -Xmx"${KAFKA_HEAP:-512m}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
  -Dlog4j2.configurationFile="$here/log4j2.properties" \
  -cp "$here/dist/libs/*" kafka.Kafka "$run_dir/server.properties" \
  >> "$run_dir/broker.log" 2>&1 < /dev/null &
echo $! > "$pid_file"
echo "kafka: started (pid $!) at 127.0.0.1:$port, run folder $run_dir"
