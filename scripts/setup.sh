#!/usr/bin/env bash
# Installs what building Journey needs on a fresh Debian machine, then the local broker.
source "$(dirname "$0")/common.sh"

# librocksdb-sys generates bindings with libclang; rdkafka-sys builds librdkafka with make,
# against OpenSSL (libssl-dev) for TLS and SASL SCRAM to Kafka.
# The deployment checks use the real tools: docker-compose resolves
# docker-compose.yml (no Docker engine needed), promtool and amtool check
# deploy/, and tests/alerting.rs runs a real Prometheus and Alertmanager.
packages=(libclang-dev build-essential pkg-config libssl-dev docker-compose prometheus prometheus-alertmanager)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

"$ROOT/scripts/nisshi.sh" install

# Python's confluent-kafka serializer, for the schema registry interop test.
if ! python3 -c "import confluent_kafka, fastavro" >/dev/null 2>&1; then
  log "installing Python test packages (tests/python/requirements.txt)"
  python3 -m pip install --quiet --disable-pip-version-check -r "$ROOT/tests/python/requirements.txt"
fi
