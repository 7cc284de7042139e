"""Wire contracts: the protobuf messages and gRPC services of ``diffqc.v1`` (generated from
``protos/`` by :mod:`diffqc.contracts.codegen`) and the Kafka topics that carry them
(:mod:`diffqc.contracts.topics`)."""
