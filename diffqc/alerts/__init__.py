"""Alerts for the MES: the quality.alert record of a defective verdict and its severity.

    links = AlertLinks.from_settings(settings.gateway)
    record = alert_record(verdict, links)   # Avro record of protos/avro/quality_alert.avsc
    body = alert_json(record)               # the JSON the bridge POSTs to the MES webhook

Scoring produces one per DEFECT verdict (``AlertPublisher``); the bridge delivers those its stored
inspection bears out (``verify``).
"""

from diffqc.alerts.links import AlertLinks
from diffqc.alerts.publisher import AlertPublisher
from diffqc.alerts.record import alert_id, alert_json, alert_record
from diffqc.alerts.severity import Severity, severity

__all__ = ["AlertLinks", "AlertPublisher", "Severity", "alert_id", "alert_json", "alert_record", "severity"]
