#!/usr/bin/env bash
# Stops the broker of a run folder (KAFKA_RUN_DIR, default infra/kafka/run): SIGTERM for a clean
# shutdown, SIGKILL after a timeout. Keeps the data, so start.sh resumes it. Exits 0 if none runs.
# Usage: infra/kafka/stop.sh [TIMEOUT_SECONDS (default 30)]
set -euo pipefail
source "$(dirname "$0")/common.sh"
timeout="${1:-30}"
if ! pid="$(broker_pid)"; then
  echo "kafka: not running (run folder $run_dir)"
  rm -f "$pid_file"
  exit 0
fi
kill -TERM "$pid"
for ((i = 0; i < timeout * 10; i++)); do
  kill -0 "$pid" 2>/dev/null || { rm -f "$pid_file"; echo "kafka: stopped (pid $pid)"; exit 0; }
  sleep 0.1
done
echo "kafka: pid $pid did not stop within ${timeout}s; killing it" >&2
kill -KILL "$pid" 2>/dev/null || true
rm -f "$pid_file"
