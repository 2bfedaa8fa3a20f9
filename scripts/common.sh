# Shared settings of the project scripts; sourced, not run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
JOURNEY_CACHE="${JOURNEY_CACHE:-$HOME/.cache/journey}"
NISSHI_VERSION="0.8.1"
NISSHI_ROOT="${NISSHI_ROOT:-$JOURNEY_CACHE/nisshi-$NISSHI_VERSION}"
export NISSHI_BIN="${NISSHI_BIN:-$NISSHI_ROOT/bin/nisshi}"

log() { printf '==> %s\n' "$*" >&2; }
