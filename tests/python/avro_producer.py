#!/usr/bin/env python3
"""Produces CustomerEvent records the way a Python producer team would: with
confluent-kafka's SerializingProducer and AvroSerializer, which registers
schemas/customer_event.avsc under "<topic>-value" on first use.

Prints one JSON line: {"subject": ..., "id": ..., "produced": N}.
The events are those of `event(i)`; the Rust interop test builds the same ones.
"""

import argparse
import json
import pathlib
import sys

from confluent_kafka import SerializingProducer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import StringSerializer

SCHEMA = pathlib.Path(__file__).resolve().parents[2] / "schemas" / "customer_event.avsc"


def event(i, prefix="py"):
    """The i-th test event: page views on the web, every third one a purchase in the app."""
    purchase = i % 3 == 2
    return {
        "event_id": f"{prefix}-{i}",
        "event_type": "PURCHASE" if purchase else "PAGE_VIEW",
        "occurred_at": 1_700_000_000_000 + i * 1_000,
        "customer_id": f"customer-{i % 4}",
        "channel": "APP" if purchase else "WEB",
        "page": None if purchase else {"url": f"https://shop.example/p/{i}", "title": None, "referrer": None},
        "order": {"order_id": f"o-{i}", "revenue": i * 10.5, "currency": "EUR", "item_count": i}
        if purchase
        else None,
        "properties": {"seq": str(i)},
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--registry", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--schema", type=pathlib.Path, default=SCHEMA,
                        help="writer schema (an older or newer version of the contract)")
    parser.add_argument("--prefix", default="py", help="event ids are <prefix>-<i>")
    args = parser.parse_args()

    registry = SchemaRegistryClient({"url": args.registry})
    producer = SerializingProducer(
        {
            "bootstrap.servers": args.bootstrap,
            "key.serializer": StringSerializer("utf_8"),
            "value.serializer": AvroSerializer(registry, args.schema.read_text()),
        }
    )
    failures = []

    def delivered(err, _msg):
        if err is not None:
            failures.append(str(err))

    for i in range(args.count):
        value = event(i, args.prefix)
        producer.produce(args.topic, key=value["customer_id"], value=value, on_delivery=delivered)
        producer.poll(0)
    left = producer.flush(30)
    if left or failures:
        print(f"{left} records undelivered, failures: {failures}", file=sys.stderr)
        return 1
    subject = f"{args.topic}-value"
    latest = registry.get_latest_version(subject)
    print(json.dumps({"subject": subject, "id": latest.schema_id, "produced": args.count}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
