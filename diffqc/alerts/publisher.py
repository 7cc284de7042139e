"""Producing alerts: one Avro message on quality.alert per DEFECT or NOT_INSPECTED verdict, acknowledged
before return."""

from __future__ import annotations

from diffqc.alerts.links import AlertLinks
from diffqc.alerts.record import alert_record, raises_alert
from diffqc.bus.producer import Publisher
from diffqc.contracts.avro import ALERT_SCHEMA, AvroTopic, load_schema, registry_client
from diffqc.contracts.topics import QUALITY_ALERT
from diffqc.settings import KafkaSettings, RegistrySettings
from diffqc.v1.scoring_pb2 import InspectionVerdict


class AlertPublisher:
    """Encodes alerts with the registry's AvroSerializer and produces them keyed by line id.

    Call ``register(timeout_s)`` at start: it waits for the registry, sets the subject to BACKWARD and
    registers the schema, so an incompatible schema stops the service there (SchemaRejected, with the reason).
    """

    def __init__(self, kafka: KafkaSettings, registry: RegistrySettings, links: AlertLinks):
        self.links = links  # the gateway links the alert gives for its image and heatmap
        self.topic = AvroTopic(registry_client(registry), QUALITY_ALERT, load_schema(ALERT_SCHEMA))
        self.publisher = Publisher(kafka)

    def register(self, timeout_s: float) -> int:
        return self.topic.register_at_start(timeout_s)

    def publish(self, verdict: InspectionVerdict) -> str | None:
        """Produce the alert of a DEFECT or NOT_INSPECTED verdict and return its id; a PASS raises nothing (None)."""
        if not raises_alert(verdict):
            return None
        record = alert_record(verdict, self.links)
        self.publisher.publish(
            QUALITY_ALERT,
            record["line_id"].encode(),
            self.topic.encode(record),
            [
                ("frame_id", record["frame_id"].encode()),
                ("inspection_id", record["inspection_id"].encode()),
                ("alert_id", record["alert_id"].encode()),
            ],
        )
        return record["alert_id"]

    def close(self) -> None:
        self.publisher.close()
