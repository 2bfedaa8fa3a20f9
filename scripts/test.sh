#!/usr/bin/env bash
# Runs every test: unit, property, broker integration and end-to-end.
# Installs what is missing first; each broker test starts its own nisshi.
source "$(dirname "$0")/common.sh"

"$ROOT/scripts/setup.sh"
cd "$ROOT"
log "running the tests"
cargo test --workspace --locked "$@"
