#!/usr/bin/env bash
# The embedded default: a local broker, the four services and the synthetic
# producer in one process, printing what happens. Ctrl-C stops everything.
source "$(dirname "$0")/common.sh"

"$ROOT/scripts/setup.sh"
cd "$ROOT"
log "building journey (release)"
cargo build --release --locked -p journey-cli --quiet
port="${JOURNEY_BROKER_PORT:-9092}"
"$ROOT/scripts/nisshi.sh" start "$port"
trap '"$ROOT/scripts/nisshi.sh" stop "$port"' EXIT
JOURNEY_KAFKA__BOOTSTRAP_SERVERS="127.0.0.1:$port" \
  cargo run --release --locked --quiet -p journey-cli -- --config "$ROOT/deploy/embedded.toml" run "$@"
