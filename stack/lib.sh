# Helpers for the stack scripts: progress lines, pid files, waiting with a deadline.
# shellcheck source=env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

say()  { printf '\033[1m==>\033[0m %s\n' "$*"; }
ok()   { printf '    \033[32mok\033[0m %s\n' "$*"; }
fail() { printf '\033[31mERROR\033[0m %s\n' "$*" >&2; }

# A pid file holds "PID STARTTIME": the process's start time (/proc/PID/stat field 22, clock
# ticks since boot) tells our process from an unrelated one that got the same pid later (after a
# crash or a reboot). Nothing is signalled unless both match.
# start_time PID: field 22 of /proc/PID/stat (the command name may hold spaces and parentheses).
start_time() {
  local stat rest
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  rest=${stat##*) }
  # shellcheck disable=SC2086
  set -- $rest
  echo "${20}"
}

# write_pid NAME PID: record PID and its start time in RUN/NAME.pid.
write_pid() { echo "$2 $(start_time "$2" || echo 0)" > "$RUN/$1.pid"; }

# pid_of NAME: the pid in RUN/NAME.pid when that process is alive and is the one we started.
pid_of() {
  local f="$RUN/$1.pid" pid started now
  [ -f "$f" ] || return 1
  read -r pid started < "$f" || true
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  now=$(start_time "$pid") || return 1
  # a pid file from before start times were recorded holds the pid alone: trusted as before
  [ -z "${started:-}" ] || [ "$started" = "$now" ] || return 1
  echo "$pid"
}

# child_pid NAME: the live process a supervisor of ours runs (RUN/NAME.child.pid).
child_pid() {
  local c
  pid_alive "$1" || return 1
  c=$(cut -d' ' -f1 "$RUN/$1.child.pid" 2>/dev/null) || return 1
  [[ "$c" =~ ^[0-9]+$ ]] && kill -0 "$c" 2>/dev/null && echo "$c"
}

# pid_alive NAME: true when RUN/NAME.pid names a live process that we started.
pid_alive() { pid_of "$1" >/dev/null; }

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

# stop_pid NAME [SECONDS]: TERM the process of RUN/NAME.pid and its process group (a supervisor,
# its child and the child's children), KILL what is left after the grace period, remove the pid
# file. Only processes we started have pid files.
stop_pid() {
  local name="$1" grace="${2:-20}" f="$RUN/$1.pid" pid
  [ -f "$f" ] || return 0
  if ! pid=$(pid_of "$name"); then  # gone, or its pid now belongs to someone else: hands off
    rm -f "$f" "$RUN/$name.child.pid"
    return 0
  fi
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + grace))
    while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.3; done
    if kill -0 "$pid" 2>/dev/null; then
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  # stragglers of the group (e.g. Python workers of a TaskManager): a short grace, then KILL
  local until=$((SECONDS + 5))
  while kill -0 -- "-$pid" 2>/dev/null && [ "$SECONDS" -lt "$until" ]; do sleep 0.3; done
  kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$f" "$RUN/$name.child.pid"
}

# start_bg NAME LOGFILE CMD...: run CMD detached in its own session, record its pid.
start_bg() {
  local name="$1" logfile="$2"; shift 2
  mkdir -p "$RUN" "$(dirname "$logfile")"
  setsid "$@" >>"$logfile" 2>&1 < /dev/null &
  write_pid "$name" $!
}

# start_supervised NAME LOGFILE CMD...: like start_bg, but under stack/supervise.sh, which starts
# CMD again (with backoff) when it dies unexpectedly. RUN/NAME.pid names the supervisor, whose
# process group includes the child; RUN/NAME.child.pid names the child.
start_supervised() {
  local name="$1" logfile="$2"; shift 2
  start_bg "$name" "$logfile" bash "$ROOT/stack/supervise.sh" "$name" "$RUN/$name.child.pid" "$@"
}

# die_with_log SERVICE REASON LOGFILE: name the service, the reason and the log, show its tail.
die_with_log() {
  fail "$1 did not start: $2"
  fail "log file: $3"
  if [ -f "$3" ]; then tail -n 20 "$3" | sed 's/^/    | /' >&2; fi
  return 1
}
