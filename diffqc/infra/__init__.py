"""The embedded local infrastructure: a Kafka-protocol broker, a time-series store, a database.

Used by ``diffqc infra up|down|status``, by ``diffqc demo`` and by the pytest fixtures, so the
servers that tests talk to are started exactly as a plant engineer starts them locally.
"""
