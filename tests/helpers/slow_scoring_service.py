"""A real ScoringService process whose Score call takes SLOW_SCORE_S: run by test_service.py.

``python slow_scoring_service.py [ok|failing-loop]``; ports, grace and log level come from the
DIFFQC_* environment like any service. Its one consume loop stands in for a ConsumeLoop.
"""

from __future__ import annotations

import logging
import sys
import threading
import time

import grpc

from diffqc.runtime.logging import frame_context
from diffqc.runtime.service import GrpcApi, run_service
from diffqc.settings import load_settings
from diffqc.v1 import scoring_pb2, scoring_pb2_grpc

SLOW_SCORE_S = 1.5
THRESHOLD = 0.5
SERVICE_NAME = scoring_pb2.DESCRIPTOR.services_by_name["ScoringService"].full_name
log = logging.getLogger("slow_scoring")


class SlowScoring(scoring_pb2_grpc.ScoringServiceServicer):
    """Fuses nothing: the score is the "pixel" component, after ``delay_s``; a negative one is refused."""

    def __init__(self, delay_s: float = SLOW_SCORE_S):
        self.delay_s = delay_s
        self.started = threading.Event()  # set when a call is in the handler

    def Score(self, request, context):
        frame = request.result.frame
        with frame_context(frame.frame_id):
            log.info("scoring")
            self.started.set()
            time.sleep(self.delay_s)
            score = request.result.component_scores.get("pixel", 0.0)
            if score < 0:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "negative score")
            verdict = scoring_pb2.VERDICT_DEFECT if score >= THRESHOLD else scoring_pb2.VERDICT_PASS
            log.info("scored")
            return scoring_pb2.ScoreResponse(
                verdict=scoring_pb2.InspectionVerdict(
                    frame=frame,
                    verdict=verdict,
                    score=score,
                    threshold=THRESHOLD,
                    component_scores=request.result.component_scores,
                )
            )


class TickLoop:
    """A consume loop without a broker: waits for the stop event, or dies at once when ``fail``."""

    topic = "test.ticks"

    def __init__(self, fail: bool = False):
        self.fail = fail

    def run(self, stop: threading.Event) -> None:
        if self.fail:
            raise RuntimeError("broker connection lost")
        stop.wait()
        log.info("loop drained")


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "ok"
    loops = [TickLoop(fail=mode == "failing-loop")]
    api = GrpcApi(SERVICE_NAME, scoring_pb2_grpc.add_ScoringServiceServicer_to_server, SlowScoring())
    sys.exit(run_service("slow-scoring", load_settings(), api, loops=loops))
