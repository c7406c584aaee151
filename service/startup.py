"""What ``imgsweep run`` begins first, before the service's modules are imported: the outcome producer, and with
exactly-once delivery its ``init_transactions``, on a thread of its own.

A replica restarted with its instance id (the kubelet restarting a crashed container) finds its predecessor's
transaction still open: the transaction coordinator aborts it when the new producer asks for its id, answers
``CONCURRENT_TRANSACTIONS`` meanwhile, and librdkafka asks again 500 ms later (fixed). Until then every
``read_committed`` reader of the outcome topic is held at its last stable offset, and the replica does not
consume. Begun here, those 500 ms pass while Python imports the rest (about 150 ms), reads the control topic
and checks the internal topics; ``Transaction.start`` then only waits for what is left.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from service.kafka_clients import producer_config
from service.pipeline.inflight import InFlight
from service.settings import Settings

__all__ = ["INIT_TIMEOUT_SECONDS", "Begun", "begin"]

INIT_TIMEOUT_SECONDS = 30.0
"""``init_transactions``' own timeout: fences the previous producer of the same id and aborts its transaction."""


class _InitialisingProducer(Producer):
    """A transactional producer whose ``init_transactions`` began when it was made; called again, it waits for
    that one's outcome (raising what it raised) instead of asking the coordinator twice."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        initialise = super().init_transactions
        self._initialising = InFlight(lambda: initialise(INIT_TIMEOUT_SECONDS))

    def init_transactions(self, timeout: float = -1) -> None:
        if not self._initialising.wait(None if timeout < 0 else timeout):
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "init_transactions is still under way"))
        self._initialising.result()


@dataclass(frozen=True)
class Begun:
    process_id: str
    """This process's name among the replicas when it has no instance id (host, pid and a random suffix)."""
    producer: Producer
    """The outcome producer: transactional with exactly-once delivery (its id from the group instance id, else
    ``process_id``), its ``init_transactions`` already under way."""
    renew: Callable[[], Producer] | None = None
    """Makes another producer like it (exactly-once): to take over if librdkafka makes this one fatal."""


def begin(settings: Settings) -> Begun:
    process_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    kafka = settings.kafka
    if kafka.delivery != "exactly_once":
        return Begun(process_id, Producer(producer_config(settings)))
    config = producer_config(settings, transactional_id=kafka.transactional_id(process_id))
    return Begun(process_id, _InitialisingProducer(config), renew=lambda: Producer(config))
