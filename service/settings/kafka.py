"""Where events come from and where outcomes go: the broker, the group, the topics, librdkafka's extras."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from service.settings.fields import JSON_OBJECT_OF_STRINGS, Section, TopicName, json_setting

__all__ = ["DRY_RUN_SUFFIX", "KafkaSettings", "dry_run_form"]

DRY_RUN_SUFFIX = ".dry-run"
"""Appended, in dry-run, to the consumer group id and the outcome, dead-letter and demand topics."""


def dry_run_form(name: str) -> str:
    """The name a group or topic has in dry-run; one that has the suffix already keeps it."""
    return name if name.endswith(DRY_RUN_SUFFIX) else name + DRY_RUN_SUFFIX


# librdkafka properties the service sets itself: letting configuration override them would break
# "offsets never run ahead of outcomes" or the consumer group contract.
_RESERVED_KAFKA_PROPERTIES = {
    "bootstrap.servers": "IMGSWEEP_KAFKA__BOOTSTRAP_SERVERS",
    "group.id": "IMGSWEEP_KAFKA__GROUP_ID",
    "enable.auto.commit": "none: offsets are committed only after outcomes are acknowledged",
    "enable.auto.offset.store": "none: offsets are stored only after outcomes are acknowledged",
    "enable.idempotence": "none: the producer is always idempotent",
    "acks": "none: outcomes are always published with acks=all",
    "partition.assignment.strategy": "none: the service uses cooperative-sticky (classic protocol)",
    "group.protocol": "IMGSWEEP_KAFKA__GROUP_PROTOCOL",
    "group.instance.id": "IMGSWEEP_KAFKA__GROUP_INSTANCE_ID",
    "transactional.id": "IMGSWEEP_KAFKA__GROUP_INSTANCE_ID (the transactional id is made from it)",
    "isolation.level": "none: imgsweep reads its input read_committed",
}
# Options librdkafka refuses with group.protocol=consumer (KIP-848): the broker decides them.
_CLASSIC_ONLY_KAFKA_PROPERTIES = {
    "session.timeout.ms": "the broker's group.consumer.session.timeout.ms",
    "heartbeat.interval.ms": "the broker's group.consumer.heartbeat.interval.ms",
}
# Kafka's rule for group.instance.id (the same characters as a topic name); a pod's name always fits.
_GROUP_INSTANCE_ID = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


class KafkaSettings(Section):
    """Where events come from and where outcomes go."""

    bootstrap_servers: str = Field(
        default="localhost:9092", min_length=1, description="Comma-separated host:port list."
    )
    group_id: str = Field(default="imgsweep", min_length=1, description="Consumer group of all replicas.")
    group_instance_id: str | None = Field(
        default=None,
        description=(
            "Static group membership (librdkafka group.instance.id), unique per replica: a replica restarted "
            "with the same id gets its partitions back at once instead of after the session timeout."
        ),
    )
    group_protocol: Literal["classic", "consumer"] = Field(
        default="classic",
        description="Consumer group protocol: classic (cooperative-sticky) or consumer (KIP-848, Kafka 4.0+).",
    )
    input_topic: TopicName = "catalog.product-delisted"
    outcome_topic: TopicName = "catalog.product-image-deletions"
    dlq_topic: TopicName = "catalog.product-delisted.dlq"
    demand_topic: TopicName = Field(
        default="catalog.imgsweep.demand",
        description=(
            "Compacted topic where replicas announce how many calls they could make, to share the account's QPS "
            "by demand (IMGSWEEP_API__QPS_SHARE=demand); missing or unreachable: shared by partitions."
        ),
    )
    delivery: Literal["exactly_once", "at_least_once"] = Field(
        default="exactly_once",
        description=(
            "exactly_once: outcomes, dead letters and input offsets in one Kafka transaction (readers use "
            "isolation.level=read_committed; needs a cluster with transactions); at_least_once: offsets committed "
            "after the outcomes are acknowledged, a crash may publish an outcome twice (same outcome_id)."
        ),
    )
    transaction_timeout_ms: int = Field(
        default=30_000,
        ge=1_000,
        le=900_000,
        description=(
            "librdkafka transaction.timeout.ms: how long a crashed replica's open transaction (without a group "
            "instance id to fence it at once) holds back read_committed readers and its partitions' offsets."
        ),
    )
    deletions_topic: TopicName = Field(
        default="catalog.imgsweep.deletions",
        description=(
            "Compacted changelog of the memory of deletions (for relists), co-partitioned with the input topic: "
            "as many partitions, created by imgsweep when missing (IMGSWEEP_KAFKA__CREATE_TOPICS)."
        ),
    )
    budget_topic: TopicName | None = Field(
        default=None,
        description=(
            "Compacted topic (1 partition) of each account's budget day: every replica's calls spent and claimed, "
            "and its planner's state, so a pack's daily spending limit holds for the account as a whole across "
            "replicas and restarts; default imgsweep.<group id>.budget; created by imgsweep when missing."
        ),
    )
    create_topics: bool = Field(
        default=True,
        description=(
            "Create imgsweep's internal topics (control, deletions, demand, budget, collections) when they are "
            "missing; false for clusters where only operators create topics: `imgsweep check-config --probe` and "
            "the start-up log then print the commands."
        ),
    )
    control_topic: TopicName = Field(
        default="catalog.imgsweep.control",
        description=(
            "Compacted topic of pauses and tripped brakes every replica obeys (imgsweep pause/resume, brake); "
            "created when missing (1 partition, cleanup.policy=compact) unless create_topics is false."
        ),
    )
    repartition: bool = Field(
        default=True,
        description=(
            "Batch each collection in one place (decision 0022): a router stage forwards every input record to the "
            "collections topic, partitioned by collection and dealt out by account, which the pipeline consumes "
            "(group <group_id>.collections); N replicas then make no more calls than one, and an account waiting "
            "for its quota holds only its own partitions. false (the opt-out, e.g. one replica and one account): "
            "the pipeline consumes the input topic itself, about 0.2 s sooner and without the second write and read."
        ),
    )
    collections_topic: TopicName = Field(
        # One per consumer group, as Kafka Streams names internal topics after the application id: two deployments
        # on one cluster (two shops, or staging and production) must never read each other's forwarded records.
        default_factory=lambda data: f"imgsweep.{data.get('group_id', 'imgsweep')}.collections",
        description=(
            "The router's output with IMGSWEEP_KAFKA__REPARTITION=true: input records by collection (a partition "
            "set per account), created when missing (cleanup.policy=delete, 7 days, purged below the pipeline's "
            "commits); default imgsweep.<group id>.collections; its deletions changelog is "
            "<deletions_topic>.by-collection."
        ),
    )
    purge_interval_seconds: float = Field(
        default=30.0,
        ge=0,
        description=(
            "How often each replica deletes the collections topic's records below the pipeline group's commits "
            "(Kafka Streams' repartition.purge.interval.ms, 30 s); 0: never (retention alone bounds the topic)."
        ),
    )
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    properties: Annotated[dict[str, str], json_setting(JSON_OBJECT_OF_STRINGS)] = Field(
        default_factory=dict,
        repr=False,  # may hold TLS/SASL secrets as plain strings
        description=(
            "Extra librdkafka properties for the consumer and the producer, as JSON, e.g. "
            '{"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512"}.'
        ),
    )
    secret_properties: Annotated[dict[str, SecretStr], json_setting(JSON_OBJECT_OF_STRINGS)] = Field(
        default_factory=dict,
        description=(
            "librdkafka properties that hold secrets (sasl.password, ssl.key.password, ssl.key.pem...): as JSON, "
            "or one per variable IMGSWEEP_KAFKA__SECRET_PROPERTIES__<property> (environment or secret files)."
        ),
    )
    max_poll_interval_ms: int = Field(default=300_000, ge=10_000)
    session_timeout_ms: int = Field(default=45_000, ge=6_000)
    max_pending_events: int = Field(
        default=10_000,
        ge=1,
        description="Events held in memory before partitions are paused (bounds memory under backlog).",
    )
    max_unacknowledged: int = Field(
        default=5_000,
        ge=1,
        description="Records produced and not yet acknowledged (outcome topic or brokers unavailable) at which no "
        "more API calls start, until acknowledgements bring them below it.",
    )

    @field_validator("bootstrap_servers")
    @classmethod
    def _servers_have_ports(cls, value: str) -> str:
        for server in value.split(","):
            host, sep, port = server.strip().rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"{server.strip()!r} is not host:port (e.g. kafka-0.kafka:9092)")
        return value

    @field_validator("group_instance_id")
    @classmethod
    def _sane_instance_id(cls, value: str | None) -> str | None:
        if value is not None and not _GROUP_INSTANCE_ID.match(value):
            raise ValueError(
                f"{value!r} is not a valid group instance id (1-249 characters of A-Z a-z 0-9 . _ -, unique per "
                "replica, e.g. the pod's name; leave it unset for dynamic membership)"
            )
        return value

    @field_validator("properties", "secret_properties")
    @classmethod
    def _no_reserved_properties(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if name in _RESERVED_KAFKA_PROPERTIES:
                raise ValueError(
                    f"librdkafka property {name!r} is managed by imgsweep and cannot be overridden "
                    f"(use {_RESERVED_KAFKA_PROPERTIES[name]})"
                )
        return value

    @model_validator(mode="after")
    def _options_the_protocol_accepts(self) -> KafkaSettings:
        if self.group_protocol == "consumer":
            if "session_timeout_ms" in self.model_fields_set:
                raise ValueError(
                    "IMGSWEEP_KAFKA__SESSION_TIMEOUT_MS has no effect with group_protocol consumer (KIP-848): the "
                    "broker's group.consumer.session.timeout.ms decides it; unset it or use group_protocol classic"
                )
            for name, instead in _CLASSIC_ONLY_KAFKA_PROPERTIES.items():
                if name in self.properties:
                    raise ValueError(
                        f"IMGSWEEP_KAFKA__PROPERTIES: librdkafka property {name!r} is refused with group_protocol "
                        f"consumer (KIP-848): {instead} decides it; remove it or use group_protocol classic"
                    )
        return self

    @model_validator(mode="after")
    def _each_property_set_once(self) -> KafkaSettings:
        both = sorted(set(self.properties) & set(self.secret_properties))
        if both:
            raise ValueError(
                f"librdkafka properties {', '.join(map(repr, both))} are set in both IMGSWEEP_KAFKA__PROPERTIES and "
                "IMGSWEEP_KAFKA__SECRET_PROPERTIES: keep each in one of them (a secret in SECRET_PROPERTIES)"
            )
        return self

    @model_validator(mode="after")
    def _distinct_topics(self) -> KafkaSettings:
        topics = [
            self.input_topic, self.outcome_topic, self.dlq_topic, self.demand_topic, self.deletions_topic,
            self.control_topic, self.budget_topic_name, self.collections_topic,
        ]  # fmt: skip
        if len(set(topics)) != len(topics):
            raise ValueError(
                "input_topic, outcome_topic and dlq_topic must be three different topics, and demand_topic, "
                "deletions_topic, control_topic, budget_topic and collections_topic five more "
                f"(got {', '.join(topics)})"
            )
        return self

    @property
    def budget_topic_name(self) -> str:
        """The budget topic: ``budget_topic``, else one per consumer group (a group is one deployment)."""
        return self.budget_topic or f"imgsweep.{self.group_id}.budget"

    def transactional_id(self, fallback: str) -> str:
        """The producer's ``transactional.id``: the group's and the instance's (the pod's name), so a restarted
        pod fences its predecessor; without an instance id, ``fallback`` (unique per process): a crash's open
        transaction then waits out ``transaction_timeout_ms``."""
        return f"{self.group_id}.{self.group_instance_id or fallback}"

    def librdkafka_common(self) -> dict[str, Any]:
        """Properties shared by the consumer and the producer (security, extras)."""
        config: dict[str, Any] = {"bootstrap.servers": self.bootstrap_servers}
        if self.sasl_username is not None:
            config["sasl.username"] = self.sasl_username
        if self.sasl_password is not None:
            config["sasl.password"] = self.sasl_password.get_secret_value()
        config.update(self.properties)
        config.update((name, value.get_secret_value()) for name, value in self.secret_properties.items())
        return config
