"""What the gateway's control chart of a line costs: rebuilt from the line's whole history (the gateway of
before, and its fallback today) against the chart the bridge stored, moved on by the rows since.

    .venv/bin/python benchmarks/spc_gateway.py [--sizes 10000 100000] [--behind 20] [--repeat 5]

For each size, one line of that many inspections goes into a throwaway PostgreSQL database (on
``DIFFQC_DATABASE_URL`` when it is PostgreSQL, else the local server), with the chart the bridge would
have stored ``--behind`` inspections ago (its lag). Timed, median of ``--repeat`` runs, each a fresh
database session: the whole-history rebuild (``score_history`` of the line, ``chart_from_history``, the API
model), and ``services.gateway.spc.line_spc`` (the stored chart, the rows since, the API model); both
give the same answer, which is checked. Also timed: the bridge's save of a chart after a point (the
UPDATE with the whole state), and the size of that state. Default SPC settings (500 recent points).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np
from sqlalchemy import Engine, insert

from diffqc.infra.postgres import throwaway_database
from diffqc.settings import SpcSettings
from diffqc.spc import Observation, chart_from_history
from diffqc.spc.state import chart_state
from diffqc.store import db, spc_charts, spc_rebases
from diffqc.store.engine import make_engine
from diffqc.store.inspections import score_history
from diffqc.store.migrate import upgrade
from diffqc.store.models import Frame, Inspection, Verdict
from diffqc.store.products import register_product
from services.gateway.spc import LineSpc, chart_out, line_spc

T0 = datetime(2026, 1, 5, 6, 0, tzinfo=UTC)
BATCH = 10_000


def store_line(engine: Engine, line: str, size: int, seed: int = 0) -> None:
    """``size`` inspections of one line, a part every 100 ms, lots of 50, about 2 % defective."""
    rng = np.random.default_rng(seed)
    scores = 0.5 + 0.05 * rng.standard_normal(size)
    defective = rng.random(size) < 0.02
    for start in range(0, size, BATCH):
        frames, inspections = [], []
        for i in range(start, min(size, start + BATCH)):
            frame_id = f"{line}-f{i:07d}"
            captured = T0 + timedelta(milliseconds=100 * i)
            frames.append(
                dict(
                    id=frame_id,
                    plant_id="P1",
                    line_id=line,
                    station_id="S1",
                    camera_id="C1",
                    product_type="pcb",
                    work_order="WO-1",
                    lot=f"LOT-{i // 50}",
                    captured_at=captured,
                    process_parameters={},
                    image_uri=f"file:///blobs/{frame_id}.png",
                    image_sha256="0" * 64,
                    height=100,
                    width=100,
                    channels=3,
                    received_at=captured,
                )
            )
            inspections.append(
                dict(
                    id=f"{line}-i{i:07d}",
                    frame_id=frame_id,
                    model_version="1",
                    component_scores={},
                    score=float(scores[i]),
                    threshold=1.0,
                    verdict=Verdict.DEFECT if defective[i] else Verdict.PASS,
                    regions=[],
                    latency_ms=1.0,
                    inspected_at=captured,
                )
            )
        with db.session(engine, write=True) as session:
            session.execute(insert(Frame), frames)
            session.execute(insert(Inspection), inspections)


def whole_history(engine: Engine, settings: SpcSettings, line: str) -> LineSpc:
    """The gateway of before: every chart of the line rebuilt from its first score."""
    with db.session(engine) as session:
        history = score_history(session, line)
        rebases = spc_rebases.rebases_of(session, line)
    charts = []
    for (_, product), rows in sorted(history.items()):
        chart = chart_from_history(
            line, product, [Observation(*r) for r in rows], settings, rebases.get((line, product), ())
        )
        charts.append(chart_out(chart))
    return LineSpc(line_id=line, charts=charts)


def median_ms(call: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def measure(engine: Engine, settings: SpcSettings, size: int, behind: int, repeat: int) -> dict[str, float]:
    line = f"bench-{size}"
    store_line(engine, line, size)
    with db.session(engine, write=True) as session:  # the chart as the bridge stored it, ``behind`` points ago
        rows = score_history(session, line)[(line, "pcb")]
        chart = chart_from_history(line, "pcb", [Observation(*r) for r in rows[: size - behind]], settings)
        spc_charts.save(session, chart, None)
    with db.session(engine, write=True) as session:  # so the planner knows the tables' sizes, as in a plant
        session.connection().exec_driver_sql("ANALYZE frames; ANALYZE inspections")
    if line_spc(engine, settings, line).model_dump() != whole_history(engine, settings, line).model_dump():
        raise SystemExit(f"{line}: the stored-state chart differs from the whole-history chart")

    state = chart_state(chart)

    def save() -> None:
        with db.session(engine, write=True) as session:
            assert spc_charts.save(session, chart, chart.sample_count)

    return {
        "whole": median_ms(lambda: whole_history(engine, settings, line), repeat),
        "stored": median_ms(lambda: line_spc(engine, settings, line), max(repeat, 20)),
        "save": median_ms(save, 50),
        "state_kb": len(json.dumps(state)) / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000], help="inspections of the line")
    parser.add_argument("--behind", type=int, default=20, help="inspections the bridge has not charted yet")
    parser.add_argument("--repeat", type=int, default=5, help="runs per figure (the median is shown)")
    args = parser.parse_args()
    settings = SpcSettings()
    print(
        f"| inspections of the line | whole-history rebuild | stored chart + {args.behind} new rows "
        "| bridge: save after a point | stored state |"
    )
    print("|---|---|---|---|---|")
    with throwaway_database() as url:
        engine = make_engine(url)
        try:
            upgrade(engine)
            with db.session(engine, write=True) as session:
                register_product(session, "pcb", {"height": 100, "width": 100, "channels": 3}, {})
            for size in args.sizes:
                figures = measure(engine, settings, size, args.behind, args.repeat)
                print(
                    f"| {size:,} | {figures['whole']:.0f} ms | {figures['stored']:.1f} ms "
                    f"| {figures['save']:.1f} ms | {figures['state_kb']:.0f} KiB JSON |"
                )
        finally:
            engine.dispose()


if __name__ == "__main__":
    main()
