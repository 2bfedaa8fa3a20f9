#!/usr/bin/env python3
"""Reads Confluent-framed Avro records back with confluent-kafka's
DeserializingConsumer and AvroDeserializer (which fetches writer schemas by
id from the registry) and prints each value as one JSON line, timestamps as
epoch milliseconds.
"""

import argparse
import datetime
import json
import sys
import time

from confluent_kafka import DeserializingConsumer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer


def millis(value):
    if isinstance(value, datetime.datetime):
        return int(value.timestamp() * 1000)
    raise TypeError(f"cannot write {type(value)} as JSON")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--registry", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()

    registry = SchemaRegistryClient({"url": args.registry})
    consumer = DeserializingConsumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": f"py-reader-{args.topic}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "value.deserializer": AvroDeserializer(registry),
        }
    )
    consumer.subscribe([args.topic])
    read = 0
    deadline = time.monotonic() + args.timeout
    try:
        while read < args.count and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None:
                continue
            if message.error() is not None:
                print(f"consumer error: {message.error()}", file=sys.stderr)
                return 1
            print(json.dumps(message.value(), default=millis))
            read += 1
    finally:
        consumer.close()
    if read < args.count:
        print(f"read {read} of {args.count} records", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
