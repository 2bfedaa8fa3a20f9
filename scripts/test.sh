#!/usr/bin/env bash
# Runs every test: unit, property, broker integration and end-to-end.
# Installs what is missing first; each broker test starts its own nisshi.
source "$(dirname "$0")/common.sh"

"$ROOT/scripts/setup.sh"
cd "$ROOT"
log "running the tests"
# The failure tests run the service binaries as processes of their own.
cargo build --workspace --bins --locked
cargo test --workspace --locked "$@"
