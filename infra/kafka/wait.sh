#!/usr/bin/env bash
# Waits until the broker of a run folder (KAFKA_RUN_DIR, default infra/kafka/run) answers metadata
# requests. Prints its bootstrap HOST:PORT on success; on timeout or if it died, shows the log tail.
# Usage: infra/kafka/wait.sh [TIMEOUT_SECONDS (default 90)]
set -euo pipefail
source "$(dirname "$0")/common.sh"
timeout="${1:-90}"
fail() {
  echo "kafka: $1" >&2
  echo "--- last lines of $run_dir/broker.log ---" >&2
  tail -n 40 "$run_dir/broker.log" >&2 2>/dev/null || echo "(no log)" >&2
  exit 1
}
[[ -f "$run_dir/bootstrap" ]] || fail "no broker was started in $run_dir (run infra/kafka/start.sh)"
bootstrap="$(cat "$run_dir/bootstrap")"
deadline=$((SECONDS + timeout))
until node "$here/probe.mjs" "$bootstrap" 2>/dev/null; do
  broker_pid >/dev/null || fail "the broker process exited before it was ready"
  ((SECONDS < deadline)) || fail "not ready at $bootstrap after ${timeout}s"
  sleep 0.5
done
echo "$bootstrap"
