"""An independent Kafka + schema registry client for test/common/schema-registry-interop.test.ts:
confluent-kafka (librdkafka) with its own AvroSerializer / AvroDeserializer (fastavro) and
SchemaRegistryClient, none of it sharing code with t2i-stream.

  read BOOTSTRAP REGISTRY_URL COUNT TOPIC...   consume COUNT messages from the TOPICs (from the start),
                                               deserialize each, print one JSON line per message
  write BOOTSTRAP REGISTRY_URL TOPIC SCHEMA    serialize the JSON lines of stdin ({"key", "value"}) with
                                               SCHEMA (a .avsc file) under <TOPIC>-value, produce them
"""

import datetime
import json
import struct
import sys
import uuid

from confluent_kafka import Consumer, Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def plain(value):
    """timestamp-millis fields come back as datetimes: as epoch milliseconds for the comparison."""
    if isinstance(value, datetime.datetime):
        return (value - EPOCH) // datetime.timedelta(milliseconds=1)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def read(bootstrap, registry_url, count, topics):
    deserializer = AvroDeserializer(SchemaRegistryClient({"url": registry_url}))
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"interop-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe(topics)
    seen = 0
    try:
        while seen < count:
            message = consumer.poll(30.0)
            if message is None:
                raise SystemExit(f"read {seen} of {count} messages: nothing more within 30 s")
            if message.error():
                raise SystemExit(f"consumer error: {message.error()}")
            raw = message.value()
            magic, schema_id = struct.unpack(">bI", raw[:5])
            value = deserializer(raw, SerializationContext(message.topic(), MessageField.VALUE))
            print(
                json.dumps(
                    {
                        "topic": message.topic(),
                        "key": message.key().decode(),
                        "headers": [h[0] for h in (message.headers() or [])],
                        "magic": magic,
                        "schemaId": schema_id,
                        "value": plain(value),
                    }
                ),
                flush=True,
            )
            seen += 1
    finally:
        consumer.close()


def write(bootstrap, registry_url, topic, schema_file):
    with open(schema_file, encoding="utf-8") as f:
        schema = f.read()
    serializer = AvroSerializer(SchemaRegistryClient({"url": registry_url}), schema)
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    failures = []
    for line in sys.stdin:
        if not line.strip():
            continue
        record = json.loads(line)
        value = serializer(record["value"], SerializationContext(topic, MessageField.VALUE))
        producer.produce(topic, key=record["key"], value=value, on_delivery=lambda err, _msg: err and failures.append(str(err)))
    if producer.flush(30) != 0 or failures:
        raise SystemExit(f"produce failed: {failures or 'not delivered within 30 s'}")
    print(json.dumps({"written": True}), flush=True)


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    if mode == "read":
        read(args[0], args[1], int(args[2]), args[3:])
    elif mode == "write":
        write(*args)
    else:
        raise SystemExit(f"unknown mode {mode}")
