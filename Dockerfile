# One image with every Journey binary; docker-compose picks the service by command.
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends libclang-dev libssl-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bins \
 && mkdir /out \
 && cp target/release/journey target/release/journey-ingest target/release/journey-sessionizer \
       target/release/journey-classifier target/release/journey-alerting /out/

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl libssl3 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home /var/lib/journey journey \
 && mkdir -p /var/lib/journey && chown journey /var/lib/journey
COPY --from=build /out/ /usr/local/bin/
USER journey
WORKDIR /var/lib/journey
ENV JOURNEY_RUNTIME__STATE_DIR=/var/lib/journey/state \
    JOURNEY_LOG__FORMAT=json
