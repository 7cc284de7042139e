"""Statistical process control on the anomaly scores of each line and product type.

    monitor = SpcMonitor(settings.spc)
    for signal in monitor.observe_verdict(verdict):       # every InspectionVerdict of qc.inspections.v1
        sink.write(spc_signal_point(signal, {"plant": plant}))
        publish(signal_record(signal, plant))             # Avro, protos/avro/quality_spc.avsc
    monitor.state("line-1")                               # [diffqc.v1 SpcState]

    chart = chart_from_history(line, product, rows)       # rows (time, score, verdict, lot) from the store
    render_chart(chart, "spc.png")                       # diffqc.spc.render (matplotlib: reports only)

Limits (``charts``), the Western Electric and Nelson run rules (``rules``), EWMA and CUSUM
(``ewma_cusum``), the stateful charts (``monitor``), a chart's state as JSON (``state``), InfluxDB
points (``sink``), Avro records (``avro``), the picture (``render``); docs/spc.md explains them.
"""

from diffqc.spc.avro import SPC_SCHEMA, signal_record
from diffqc.spc.charts import ChartError, IndividualsChart, PChart, individuals_chart, moving_ranges, p_chart
from diffqc.spc.monitor import (
    P_CHART_RULE,
    Observation,
    Rebase,
    SpcChart,
    SpcMonitor,
    SpcSignal,
    chart_from_history,
    is_defect,
)
from diffqc.spc.rules import RULES, Rule, evaluate
from diffqc.spc.sink import spc_limits_point, spc_signal_point

__all__ = [
    "RULES",
    "P_CHART_RULE",
    "SPC_SCHEMA",
    "ChartError",
    "IndividualsChart",
    "Observation",
    "PChart",
    "Rebase",
    "Rule",
    "SpcChart",
    "SpcMonitor",
    "SpcSignal",
    "chart_from_history",
    "evaluate",
    "individuals_chart",
    "is_defect",
    "moving_ranges",
    "p_chart",
    "signal_record",
    "spc_limits_point",
    "spc_signal_point",
]
