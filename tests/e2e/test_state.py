"""What imgsweep keeps on Kafka, end to end: the memory of deletions survives a restart and a handover, and the
internal topics are made by imgsweep (or named, with the command, when it may not make them).

The service runs as its own process against the real broker and the sandbox."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import ConfigResource  # confluent_kafka.admin re-exports it implicitly only
from confluent_kafka.cimpl import NewTopic  # confluent_kafka.admin re-exports it implicitly only

from devkit.fixtures import SandboxFactory, ServiceFactory, TopicsFactory
from devkit.processes import REPO, Record, clean_env, consume_all, imgsweep_env, produce, wait_for

pytestmark = pytest.mark.e2e

DELISTED = "com.example.catalog.product-delisted"
RELISTED = "com.example.catalog.product-relisted"


def cloudevent(event_id: str, event_type: str, product: str, images: list[str] | None = None) -> Record:
    data: dict[str, Any] = {"collection_name": "shoes", "product_id": product}
    if images is not None:
        data["image_ids"] = images
    document = {"specversion": "1.0", "id": event_id, "source": "/catalog", "type": event_type, "data": data}
    return product.encode(), json.dumps(document).encode(), [("content-type", b"application/cloudevents+json")]


def outcomes(bootstrap: str, topic: str, expect: int) -> dict[str, dict[str, Any]]:
    return {r.json()["event_id"]: r.json() for r in consume_all(bootstrap, topic, expect=expect, settle=1.0)}


def assert_re_add(outcome: dict[str, Any], images: list[str]) -> None:
    assert (outcome["kind"], outcome["status"]) == ("relist", "re_add_required")
    assert sorted(image["image_id"] for image in outcome["images"]) == images


def test_a_relist_after_a_crash_and_restart_still_names_the_images_to_add_again(
    kafka_bootstrap: str, topics: TopicsFactory, sandbox_process: SandboxFactory, service_process: ServiceFactory
) -> None:
    names = topics(partitions=2)
    sandbox = sandbox_process("--qps", "0")
    sandbox.seed({"shoes": [("p1", "a.jpg"), ("p1", "b.jpg")]})
    settings = {"BATCH__RELIST_GRACE_SECONDS": "0.5", "KAFKA__GROUP_INSTANCE_ID": "imgsweep-0"}
    first = service_process(names, sandbox, **settings)
    produce(kafka_bootstrap, names.input, [cloudevent("d1", DELISTED, "p1", ["a.jpg", "b.jpg"])])
    assert outcomes(kafka_bootstrap, names.outcome, expect=1)["d1"]["status"] == "deleted"
    first.kill()  # SIGKILL: nothing of its memory is left but what it wrote to Kafka
    second = service_process(names, sandbox, **settings)
    wait_for(lambda: second.metric("imgsweep_state_remembered_products") == 1, 30, "the memory was not restored")
    produce(kafka_bootstrap, names.input, [cloudevent("r1", RELISTED, "p1")])
    assert_re_add(outcomes(kafka_bootstrap, names.outcome, expect=2)["r1"], ["a.jpg", "b.jpg"])
    assert second.metric("imgsweep_state_restored_records_total") >= 1


def test_a_relist_read_by_another_replica_after_a_handover_names_the_images_to_add_again(
    kafka_bootstrap: str, topics: TopicsFactory, sandbox_process: SandboxFactory, service_process: ServiceFactory
) -> None:
    names = topics(partitions=2)
    sandbox = sandbox_process("--qps", "0")
    sandbox.seed({"shoes": [("p1", "a.jpg")]})
    first = service_process(names, sandbox, BATCH__RELIST_GRACE_SECONDS="0.5")
    first.wait_assigned(2)
    produce(kafka_bootstrap, names.input, [cloudevent("d1", DELISTED, "p1", ["a.jpg"])])
    assert outcomes(kafka_bootstrap, names.outcome, expect=1)["d1"]["status"] == "deleted"
    second = service_process(names, sandbox, BATCH__RELIST_GRACE_SECONDS="0.5")
    assert first.terminate() == 0  # a drain and a clean leave: every partition goes to the second replica
    second.wait_assigned(2)
    produce(kafka_bootstrap, names.input, [cloudevent("r1", RELISTED, "p1")])
    assert_re_add(outcomes(kafka_bootstrap, names.outcome, expect=2)["r1"], ["a.jpg"])


@pytest.mark.parametrize("routed", [True, False], ids=["router", "input"])
def test_imgsweep_makes_its_deletions_changelog_co_partitioned_and_compacted(
    routed: bool, kafka_admin: AdminClient, topics: TopicsFactory, service_process: ServiceFactory
) -> None:
    """Co-partitioned with what the pipeline reads: behind the router the collections topic, and the changelog is
    then ``<deletions topic>.by-collection`` (the plain one, keyed by input partition, is not made); the router
    off, the input topic and the changelog's own name."""
    names = topics(partitions=3)
    changelog = f"{names.input}.made-by-imgsweep"
    made, unmade = (f"{changelog}.by-collection", changelog) if routed else (changelog, f"{changelog}.by-collection")
    try:
        service_process(names, None, KAFKA__DELETIONS_TOPIC=changelog, KAFKA__REPARTITION=str(routed).lower())
        listed = kafka_admin.list_topics(timeout=10).topics
        read = names.collections_topic if routed else names.input
        assert len(listed[made].partitions) == len(listed[read].partitions) == 3, "as many partitions as it reads"
        assert unmade not in listed
        resource = ConfigResource("topic", made)
        config = kafka_admin.describe_configs([resource])[resource].result(30)
        assert config["cleanup.policy"].value == "compact,delete"
        assert config["retention.ms"].value == str(7 * 86_400_000)
    finally:
        kafka_admin.delete_topics([made], operation_timeout=30)


def _run(env: dict[str, str], *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service", *command],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_where_it_may_not_make_topics_it_stops_and_names_the_command(
    kafka_bootstrap: str, kafka_admin: AdminClient, topics: TopicsFactory, tmp_path: Any
) -> None:
    """Behind the router (the default) the collections topic is made first: missing, the start stops naming its
    command; once it is there (made by hand, 2 partitions), the start stops naming the changelog's, which follows
    the collections topic's partitions; the probe names it too. The router off, the changelog is the plain one."""
    names = topics(partitions=2)
    missing = f"it-never-created-{uuid.uuid4().hex[:6]}"
    settings = {"KAFKA__DELETIONS_TOPIC": missing, "KAFKA__CREATE_TOPICS": "false", "SECRETS_DIR": str(tmp_path)}
    env = {**clean_env(), **imgsweep_env(bootstrap=kafka_bootstrap, topics=names, endpoint=None, settings=settings)}
    create = f"kafka-topics.sh --bootstrap-server {kafka_bootstrap} --create --topic"

    run = _run(env, "run")
    assert run.returncode == 2, run.stdout[-2000:] + run.stderr[-2000:]
    assert f"{create} {names.collections_topic} --partitions 2" in run.stdout + run.stderr

    new = NewTopic(names.collections_topic, num_partitions=2, replication_factor=1)
    kafka_admin.create_topics([new])[names.collections_topic].result(30)
    for command in (("run",), ("check-config", "--probe")):
        result = _run(env, *command)
        assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
        said = result.stdout + result.stderr
        (line,) = [line for line in said.splitlines() if f"{create} {missing}.by-collection --partitions 2" in line]
        assert "IMGSWEEP_KAFKA__DELETIONS_TOPIC: topic " in line, command

    for command in (("run",), ("check-config", "--probe")):
        result = _run({**env, "IMGSWEEP_KAFKA__REPARTITION": "false"}, *command)
        assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
        said = result.stdout + result.stderr
        (line,) = [line for line in said.splitlines() if f"{create} {missing} --partitions 2 " in line]
        assert "IMGSWEEP_KAFKA__DELETIONS_TOPIC: topic " in line, command
