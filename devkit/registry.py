"""A real Schema Registry for the tests (``pytest_plugins`` in tests/conftest.py), and delist records in its wire
format made with confluent-kafka's own serializers.

``schema_registry_url`` is one Apicurio Registry (deploy/local/schema_registry_local.py) for the whole session,
fetched with Maven the first time (``make setup`` does it ahead); ``SCHEMA_REGISTRY_URL`` points the tests at an
existing Confluent-compatible registry instead. Each test registers its own subjects (``RegistryRecords``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, Final

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from google.protobuf import descriptor_pb2, descriptor_pool, timestamp_pb2
from google.protobuf.message_factory import GetMessageClass

__all__ = [
    "AVRO_DELIST_SCHEMA",
    "JSON_DELIST_SCHEMA",
    "RegistryRecords",
    "load_schema_registry_local",
    "protobuf_delist_class",
    "schema_registry_url",
]

REPO: Final = Path(__file__).resolve().parent.parent
SCHEMA_REGISTRY_LOCAL: Final = REPO / "deploy" / "local" / "schema_registry_local.py"
STARTED_IN: list[float] = []
"""How long the session's registry took to answer (seconds), for the test that reports it."""

AVRO_DELIST_SCHEMA: Final = json.dumps(
    {
        "type": "record",
        "name": "ProductDelisted",
        "namespace": "catalog.events",
        "fields": [
            {"name": "event_id", "type": {"type": "string", "logicalType": "uuid"}},
            {"name": "type", "type": ["null", "string"], "default": None},
            {"name": "collection_name", "type": "string"},
            {"name": "product_id", "type": "string"},
            {"name": "image_ids", "type": {"type": "array", "items": "string"}},
            {"name": "occurred_at", "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}]},
            {"name": "source_system", "type": ["null", "bytes"], "default": None},
        ],
    }
)
"""The delist as a catalog team would write it in Avro: the JSON event's field names and types."""

JSON_DELIST_SCHEMA: Final = json.dumps(
    {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "ProductDelisted",
        "type": "object",
        "properties": {
            "event_id": {"type": "string"},
            "collection_name": {"type": "string"},
            "product_id": {"type": "string"},
            "image_ids": {"type": "array", "items": {"type": "string"}},
            "occurred_at": {"type": "string"},
        },
        "required": ["event_id", "collection_name", "product_id", "image_ids"],
    }
)


def protobuf_delist_class(package: str) -> Any:
    """A generated-like message class ``<package>.ProductDelisted`` (what a producer's protoc output would be),
    built from a descriptor in its own pool; the first message of the file is another one, so the records carry
    a non-zero message index."""
    field = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(
        name=f"{package.replace('.', '/')}/delisted.proto", package=package, syntax="proto3"
    )
    proto.dependency.append("google/protobuf/timestamp.proto")
    other = proto.message_type.add(name="ProductListed")
    other.field.add(name="product_id", number=1, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
    message = proto.message_type.add(name="ProductDelisted")
    for number, name in enumerate(("event_id", "collection_name", "product_id"), start=1):
        message.field.add(name=name, number=number, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
    message.field.add(name="image_ids", number=4, type=field.TYPE_STRING, label=field.LABEL_REPEATED)
    message.field.add(
        name="occurred_at",
        number=5,
        type=field.TYPE_MESSAGE,
        label=field.LABEL_OPTIONAL,
        type_name=".google.protobuf.Timestamp",
    )
    message.field.add(name="type", number=6, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
    message.field.add(name="sequence", number=7, type=field.TYPE_INT64, label=field.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(timestamp_pb2.DESCRIPTOR.serialized_pb)
    pool.AddSerializedFile(proto.SerializeToString())
    return GetMessageClass(pool.FindMessageTypeByName(f"{package}.ProductDelisted"))


class RegistryRecords:
    """Record values for one topic, each serializer registering its schema under its own subject."""

    def __init__(self, url: str, topic: str | None = None) -> None:
        self.client = SchemaRegistryClient({"url": url})
        self.topic = topic or f"sr-{uuid.uuid4().hex[:12]}"
        run = uuid.uuid4().hex[:8]
        self.protobuf_class = protobuf_delist_class(f"catalog.t{run}")
        # One subject per format (record name strategy): the three formats share a topic in these tests.
        by_record = {"subject.name.strategy.type": "RECORD"}
        self._avro = AvroSerializer(self.client, AVRO_DELIST_SCHEMA, conf={**by_record})
        self._protobuf = ProtobufSerializer(self.protobuf_class, self.client, {"use.deprecated.format": False})
        self._json = JSONSerializer(JSON_DELIST_SCHEMA, self.client, conf={"subject.name.strategy.type": "TOPIC"})
        self._context = SerializationContext(self.topic, MessageField.VALUE)
        self._json_context = SerializationContext(f"{self.topic}-json-{run}", MessageField.VALUE)

    def avro(self, record: dict[str, Any]) -> bytes:
        value: bytes = self._avro(record, self._context)
        return value

    def protobuf(self, **fields: Any) -> bytes:
        value: bytes = self._protobuf(self.protobuf_class(**fields), self._context)
        return value

    def json(self, record: dict[str, Any]) -> bytes:
        value: bytes = self._json(record, self._json_context)
        return value


def load_schema_registry_local() -> ModuleType:
    """deploy/local/schema_registry_local.py as a module (``LocalSchemaRegistry``, ``fetch``)."""
    loaded = sys.modules.get("schema_registry_local")
    if loaded is not None:
        return loaded
    spec = importlib.util.spec_from_file_location("schema_registry_local", SCHEMA_REGISTRY_LOCAL)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {SCHEMA_REGISTRY_LOCAL}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def schema_registry_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The Confluent API URL of a registry that serves for the whole session (started in 7-15 s)."""
    external = os.environ.get("SCHEMA_REGISTRY_URL")
    if external:
        yield external
        return
    local = load_schema_registry_local()
    registry = local.LocalSchemaRegistry(tmp_path_factory.mktemp("schema-registry") / "apicurio.log")
    url: str = registry.start()
    STARTED_IN.append(registry.started_in_seconds)
    try:
        yield url
    finally:
        registry.stop()
