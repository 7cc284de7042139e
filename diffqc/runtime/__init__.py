"""What every service process shares: JSON logs with the frame id (``logging``), Prometheus metrics
(``metrics``), the gRPC server with health and reflection (``grpc_server``), signal handling
(``shutdown``), start-up dependency waits (``dependencies``) and the entry point ``service.run_service``."""
