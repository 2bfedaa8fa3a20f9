#!/usr/bin/env bash
# The local Kafka-protocol broker (nisshi): install | start [PORT] | stop | status.
#
# install  builds nisshi with the nightly toolchain once and caches the binary.
# start    runs one broker on 127.0.0.1:PORT (default 9092) with SQLite storage
#          under $JOURNEY_CACHE/broker-PORT, and waits until it accepts connections.
# stop     stops the broker started by `start` and waits for it to exit.
source "$(dirname "$0")/common.sh"

port="${2:-9092}"
data="$JOURNEY_CACHE/broker-$port"
pidfile="$data/nisshi.pid"

case "${1:-}" in
  install)
    if [ -x "$NISSHI_BIN" ]; then
      log "nisshi $NISSHI_VERSION already installed at $NISSHI_BIN"
      exit 0
    fi
    log "building nisshi $NISSHI_VERSION with the nightly toolchain (about 15 minutes on 2 cores, once)"
    mkdir -p "$NISSHI_ROOT"
    cargo +nightly install nisshi --version "$NISSHI_VERSION" --locked --root "$NISSHI_ROOT" --quiet
    ;;
  start)
    [ -x "$NISSHI_BIN" ] || "$0" install
    mkdir -p "$data"
    if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      log "nisshi already running on 127.0.0.1:$port (pid $(cat "$pidfile"))"
      exit 0
    fi
    url="tcp://127.0.0.1:$port"
    "$NISSHI_BIN" broker --listener-url "$url" --advertised-listener-url "$url" \
      --storage-engine "sqlite:///$data/nisshi.db" --group-initial-rebalance-delay 0s \
      >"$data/nisshi.log" 2>&1 &
    echo $! >"$pidfile"
    for _ in $(seq 1 100); do
      if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        log "nisshi listening on 127.0.0.1:$port (log: $data/nisshi.log)"
        exit 0
      fi
      kill -0 "$(cat "$pidfile")" 2>/dev/null || { cat "$data/nisshi.log" >&2; log "nisshi exited"; exit 1; }
      sleep 0.1
    done
    log "nisshi did not accept connections on port $port within 10 s"; exit 1
    ;;
  stop)
    if [ -f "$pidfile" ]; then
      pid="$(cat "$pidfile")"
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      rm -f "$pidfile"
      log "nisshi on port $port stopped"
    fi
    ;;
  status)
    if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      echo "running on 127.0.0.1:$port (pid $(cat "$pidfile"))"
    else
      echo "not running"; exit 1
    fi
    ;;
  *)
    echo "usage: $0 install | start [PORT] | stop [PORT] | status [PORT]" >&2; exit 2
    ;;
esac
