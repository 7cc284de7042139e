"""The diffqc services: each one a thin adapter (gRPC servicer + Kafka worker) over the library."""
