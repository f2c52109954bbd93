# Shared by start.sh, stop.sh, wait.sh: where the run folder is and whether its broker is alive.
# KAFKA_RUN_DIR: the run folder (default infra/kafka/run): server.properties, data/, broker.log, broker.pid, bootstrap.
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
run_dir="${KAFKA_RUN_DIR:-$here/run}"
pid_file="$run_dir/broker.pid"

broker_pid() { # prints the pid of this run folder's broker if it is alive
  [[ -f "$pid_file" ]] || return 1
  local pid; pid="$(cat "$pid_file")"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
  # Guard against a recycled pid: it must be a java process started with this run folder's config.
  tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$run_dir/server.properties" || return 1
  echo "$pid"
}

port_in_use() { # true if something listens on 127.0.0.1:$1
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

free_port() {
  node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}
