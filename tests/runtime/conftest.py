"""A real gRPC server (GrpcServer with a ScoringService) and a client channel to it."""

from __future__ import annotations

import grpc
import pytest

from tests.helpers.scoring_server import scoring_server


@pytest.fixture
def server():
    server, _ = scoring_server()
    server.start()
    yield server
    server.stop(grace=0)


@pytest.fixture
def channel(server):
    with grpc.insecure_channel(server.address) as channel:
        yield channel
