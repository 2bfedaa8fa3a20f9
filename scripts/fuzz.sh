#!/usr/bin/env bash
# Fuzzes the Avro decoder for a while; a bench/fuzz job, not CI.
#   scripts/fuzz.sh [seconds=60] [target=decode_event]
# Needs a nightly toolchain; installs cargo-fuzz if it is missing. Crashes
# land in fuzz/artifacts/<target>/, the corpus grows in fuzz/corpus/<target>/.
source "$(dirname "$0")/common.sh"

seconds="${1:-60}"
target="${2:-decode_event}"

"$ROOT/scripts/setup.sh"
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  log "cargo-fuzz needs nightly: rustup toolchain install nightly"
  exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  log "installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi
cd "$ROOT/fuzz"
log "fuzzing $target for ${seconds}s"
# Kept apart from the main target dir: nightly and sanitizer flags rebuild everything.
cargo +nightly fuzz run "$target" --target-dir "$JOURNEY_CACHE/fuzz-target" -- -max_total_time="$seconds"
