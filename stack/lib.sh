# Helpers for the stack scripts: progress lines, services, waiting with a deadline.
# shellcheck source=env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

say()  { printf '\033[1m==>\033[0m %s\n' "$*"; }
ok()   { printf '    \033[32mok\033[0m %s\n' "$*"; }
fail() { printf '\033[31mERROR\033[0m %s\n' "$*" >&2; }

# Services run under supervisord (online_ml/supervision.py: one per stack instance, its socket in
# RUN, every process it starts marked with this instance's state folder). No pid files: nothing
# is ever signalled because a file names a pid.
sv() { "$PY" -m online_ml.supervision "$@"; }

# pid_alive NAME: true when service NAME is supervised and up (or being restarted by supervisord).
pid_alive() { sv up "$1" 2>/dev/null; }

# pid_of NAME / child_pid NAME: the pid of service NAME's running process.
pid_of() { sv pid "$1" 2>/dev/null; }
child_pid() { pid_of "$1"; }

# port_open PORT: true when something accepts TCP connections on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_until SECONDS DESCRIPTION CMD...: poll CMD every 0.5 s until it succeeds or time runs out.
wait_until() {
  local deadline=$((SECONDS + $1)) what="$2"; shift 2
  while ! "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then return 1; fi
    sleep 0.5
  done
}

# stop_pid NAME: stop service NAME with its process group (TERM, KILL after 30 s) and stop
# supervising it. Harmless when it does not run.
stop_pid() { sv stop "$1" >/dev/null 2>&1 || true; }

# start_supervised NAME LOGFILE CMD...: run CMD as service NAME under supervisord, with this
# environment, its output in LOGFILE; started again at once when it dies unexpectedly.
start_supervised() {
  local name="$1" logfile="$2"; shift 2
  mkdir -p "$RUN" "$(dirname "$logfile")"
  sv start "$name" "$logfile" -- "$@" >/dev/null
}

# die_with_log SERVICE REASON LOGFILE: name the service, the reason and the log, show its tail.
die_with_log() {
  fail "$1 did not start: $2"
  fail "log file: $3"
  if [ -f "$3" ]; then tail -n 20 "$3" | sed 's/^/    | /' >&2; fi
  return 1
}
