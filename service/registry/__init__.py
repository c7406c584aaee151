"""Schema Registry input: records in the Confluent wire format (magic byte 0, a 4-byte schema id, the payload)
decoded with confluent-kafka's own Avro, Protobuf and JSON Schema deserializers, then read like plain JSON.

``settings`` (``IMGSWEEP_SCHEMA_REGISTRY__*``), ``mapping`` (pure: the framing, deserialized values -> the JSON
document of the same event) and ``decoder`` (the registry client, retries, ``event_decoder``).
See docs/decisions/0014-schema-registry-input.md.
"""
