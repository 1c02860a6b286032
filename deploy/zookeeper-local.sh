#!/usr/bin/env bash
# A local, standalone ZooKeeper for development and for trying `coordination = "zookeeper"` on one
# machine. Not for production: one server, no quorum (see docs/operations.md, "A three-node
# ZooKeeper ensemble").
#
# Usage:
#   deploy/zookeeper-local.sh start    # start in the background, wait (ZK_WAIT_S) until `ruok`
#                                      # answers `imok` and `srvr` shows it serving, then print
#                                      # the connect string (e.g. 127.0.0.1:2181) on stdout
#   deploy/zookeeper-local.sh status   # serving (exit 0), not running (exit 3), not answering (1)
#   deploy/zookeeper-local.sh stop     # stop the background server (SIGTERM, SIGKILL after 10 s)
#   deploy/zookeeper-local.sh run      # run in the foreground (logs on stderr; Ctrl-C stops it)
#
#   export CANDYBOX_ZOOKEEPER_CONNECT="$(deploy/zookeeper-local.sh start)"
#
# Environment (all optional):
#   ZK_PORT      client port                                   (default 2181)
#   ZK_DIR       state directory: zoo.cfg, data/, zookeeper.pid, zookeeper.log
#                                                              (default ./zookeeper-data)
#   ZK_BIND      clientPortAddress                             (default 127.0.0.1)
#   ZK_TICK_MS   tickTime; sessions may last 2x..20x this      (default 2000)
#   ZK_WAIT_S    how long `start` waits for it to serve        (default 30)
#   ZK_JVM_OPTS  JVM options                                   (default -Xmx256m)
#
# The server runs as in notes/zookeeper.md: Debian's `zookeeper` package (installed
# with apt-get when /usr/share/java/zookeeper.jar is missing; that needs root), started directly
# with `java ... org.apache.zookeeper.server.ZooKeeperServerMain zoo.cfg`, admin server disabled,
# four-letter words limited to ruok and srvr. zoo.cfg is rewritten at every start/run from the
# variables above; the data under $ZK_DIR/data survives stop/start (delete $ZK_DIR to reset).
set -euo pipefail

ZK_PORT="${ZK_PORT:-2181}"
ZK_DIR="${ZK_DIR:-./zookeeper-data}"
ZK_BIND="${ZK_BIND:-127.0.0.1}"
ZK_TICK_MS="${ZK_TICK_MS:-2000}"
ZK_WAIT_S="${ZK_WAIT_S:-30}"
ZK_JVM_OPTS="${ZK_JVM_OPTS:--Xmx256m}"

ZK_JAR=/usr/share/java/zookeeper.jar
ZK_CLASSPATH="/usr/share/java/zookeeper.jar:/usr/share/java/*"
ZK_MAIN=org.apache.zookeeper.server.ZooKeeperServerMain
# /usr/share/java holds several SLF4J bindings and SLF4J takes the first on the class path; with
# the bare wildcard that is often slf4j-nop, which drops every server log line. Put slf4j-simple
# (stderr, INFO, with timestamps) first when it is there.
ZK_LOG_OPTS=()
if [[ -f /usr/share/java/slf4j-simple.jar ]]; then
  ZK_CLASSPATH="/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar:/usr/share/java/*"
  ZK_LOG_OPTS=(-Dzookeeper.jmx.log4j.disable=true -Dorg.slf4j.simpleLogger.defaultLogLevel=info -Dorg.slf4j.simpleLogger.showDateTime=true
    "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSSZ")
fi

prog="$(basename "$0")"
say() { printf '%s: %s\n' "$prog" "$*" >&2; }
die() { say "$*"; exit 1; }

for v in ZK_PORT ZK_TICK_MS ZK_WAIT_S; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || die "$v must be a number, not '${!v}'"
done
((ZK_PORT >= 1 && ZK_PORT <= 65535)) || die "ZK_PORT must lie in 1..65535"

# The address clients use: a wildcard bind is reached on loopback.
case "$ZK_BIND" in
  0.0.0.0 | "::" | "") connect_host=127.0.0.1 ;;
  *) connect_host="$ZK_BIND" ;;
esac
CONNECT="$connect_host:$ZK_PORT"

# Absolute paths, so the pid file and zoo.cfg do not depend on the caller's directory later
# (created by start/run only).
ZK_DIR="$(realpath -m -- "$ZK_DIR")"
CFG="$ZK_DIR/zoo.cfg"
PID_FILE="$ZK_DIR/zookeeper.pid"
LOG_FILE="$ZK_DIR/zookeeper.log"

# Sends a four-letter word and prints the reply; fails when nothing answers within 2 s.
four_letter() {
  # shellcheck disable=SC2016 # $1..$3 are the inner shell's arguments
  timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2" && printf "%s" "$3" >&3 && cat <&3' \
    _ "$connect_host" "$ZK_PORT" "$1" 2>/dev/null
}

answers_imok() { [[ "$(four_letter ruok || true)" == imok ]]; }

# `imok` only says the process is up: for a moment after it the server still answers
# "This ZooKeeper instance is not currently serving requests". `srvr` naming a Mode means it serves.
serving() { answers_imok && four_letter srvr | grep -q '^Mode: '; }

# The pid of our server if it is running: the pid file names a live process that is a
# ZooKeeperServerMain started with this state directory's zoo.cfg (guards against reused pids).
running_pid() {
  local pid
  [[ -f "$PID_FILE" ]] || return 1
  pid="$(cat "$PID_FILE" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [[ -r "/proc/$pid/cmdline" ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$ZK_MAIN $CFG" || return 1
  printf '%s\n' "$pid"
}

ensure_installed() {
  if [[ -f "$ZK_JAR" ]] && command -v java >/dev/null 2>&1; then
    return 0
  fi
  say "$ZK_JAR or java is missing: installing Debian's zookeeper package"
  if [[ "$(id -u)" -ne 0 ]]; then
    die "installing needs root: run this as root, or first run
    sudo apt-get update && sudo apt-get install -y zookeeper"
  fi
  command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install ZooKeeper 3.8 by hand"
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y zookeeper
  [[ -f "$ZK_JAR" ]] || die "apt-get install zookeeper did not provide $ZK_JAR"
  command -v java >/dev/null 2>&1 || die "java not found after installing zookeeper"
}

write_config() {
  mkdir -p "$ZK_DIR/data"
  cat >"$CFG" <<EOF
# Written by $prog; rewritten at every start, edits are lost.
tickTime=$ZK_TICK_MS
dataDir=$ZK_DIR/data
clientPort=$ZK_PORT
clientPortAddress=$ZK_BIND
admin.enableServer=false
4lw.commands.whitelist=ruok,srvr
# Keep at most 3 snapshots and their logs; purge every hour.
autopurge.snapRetainCount=3
autopurge.purgeInterval=1
EOF
}

refuse_if_port_taken() {
  if four_letter ruok >/dev/null; then
    die "something already answers on $CONNECT (not the server of $ZK_DIR): stop it or set ZK_PORT"
  fi
  local taken=
  if command -v ss >/dev/null 2>&1; then
    [[ -z "$(ss -Hltn "sport = :$ZK_PORT" 2>/dev/null)" ]] || taken=1
  else
    # shellcheck disable=SC2016 # $1, $2 are the inner shell's arguments
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$connect_host" "$ZK_PORT" 2>/dev/null && taken=1
  fi
  [[ -z "$taken" ]] || die "port $ZK_PORT is already in use on this host: set ZK_PORT"
}

cmd_start() {
  local pid
  if pid="$(running_pid)"; then
    say "already running (pid $pid, state $ZK_DIR)"
    printf '%s\n' "$CONNECT"
    return 0
  fi
  rm -f "$PID_FILE"
  ensure_installed
  refuse_if_port_taken
  write_config

  # setsid: the server gets its own session, so the terminal's Ctrl-C or hang-up does not reach
  # it. The inner shell writes its own pid and then becomes java (exec), so the pid file names
  # the JVM.
  # shellcheck disable=SC2086,SC2016 # ZK_JVM_OPTS is a list of options; $$, $1 are the inner shell's
  setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$PID_FILE" \
    java $ZK_JVM_OPTS "${ZK_LOG_OPTS[@]}" -cp "$ZK_CLASSPATH" "$ZK_MAIN" "$CFG" \
    </dev/null >>"$LOG_FILE" 2>&1 &

  local deadline=$((SECONDS + ZK_WAIT_S))
  until serving; do
    # The pid file appears once the server process runs; then it must stay alive.
    if [[ -s "$PID_FILE" ]] && ! running_pid >/dev/null; then
      say "the server exited during start-up; last lines of $LOG_FILE:"
      tail -n 20 "$LOG_FILE" >&2 || true
      rm -f "$PID_FILE"
      exit 1
    fi
    if ((SECONDS >= deadline)); then
      say "no 'imok' (or not serving) on $CONNECT after ${ZK_WAIT_S}s; stopping it. Last lines of $LOG_FILE:"
      tail -n 20 "$LOG_FILE" >&2 || true
      cmd_stop >/dev/null 2>&1 || true
      exit 1
    fi
    sleep 0.2
  done
  say "running (pid $(running_pid), state $ZK_DIR, log $LOG_FILE)"
  printf '%s\n' "$CONNECT"
}

cmd_stop() {
  local pid
  if ! pid="$(running_pid)"; then
    rm -f "$PID_FILE"
    say "not running (state $ZK_DIR)"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  local i
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "pid $pid did not exit within 10 s of SIGTERM; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
  fi
  rm -f "$PID_FILE"
  say "stopped (pid $pid)"
}

cmd_status() {
  local pid
  if ! pid="$(running_pid)"; then
    say "not running (state $ZK_DIR)"
    return 3
  fi
  if ! answers_imok; then
    say "pid $pid is running but $CONNECT does not answer 'ruok'"
    return 1
  fi
  if ! serving; then
    say "pid $pid answers 'ruok' on $CONNECT but is not serving requests (yet)"
    return 1
  fi
  say "running (pid $pid, connect $CONNECT, state $ZK_DIR)"
  four_letter srvr | grep -E '^(Zookeeper version|Mode|Node count|Connections):' >&2 || true
  printf '%s\n' "$CONNECT"
}

cmd_run() {
  local pid
  if pid="$(running_pid)"; then
    die "already running in the background (pid $pid): '$prog stop' first"
  fi
  ensure_installed
  refuse_if_port_taken
  write_config
  say "running in the foreground on $CONNECT (state $ZK_DIR); Ctrl-C stops it"
  # shellcheck disable=SC2086 # ZK_JVM_OPTS is a list of options
  exec java $ZK_JVM_OPTS "${ZK_LOG_OPTS[@]}" -cp "$ZK_CLASSPATH" "$ZK_MAIN" "$CFG"
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  run) cmd_run ;;
  *)
    printf 'usage: %s start|stop|status|run   (env: ZK_PORT, ZK_DIR, ZK_BIND, ZK_TICK_MS, ZK_WAIT_S, ZK_JVM_OPTS)\n' "$prog" >&2
    exit 2
    ;;
esac
