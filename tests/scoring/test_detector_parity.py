"""Preprocessing -> the detector -> scoring gives the detector's own verdicts, scores and regions."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy.orm import Session

from diffqc.core.artifact import artifact_registration
from diffqc.core.components import COMPONENTS
from diffqc.core.regions import find_regions
from diffqc.data.mvtec import list_samples
from diffqc.detector.detector import Detector
from diffqc.preprocess import PreprocessSpec, prepare_frame
from diffqc.scoring import Scorer
from diffqc.settings import ScoringSettings
from diffqc.store.blobs import FileBlobStore, get_array, put_array
from diffqc.store.engine import make_engine
from diffqc.store.inspections import register_model_version
from diffqc.store.migrate import upgrade
from diffqc.store.models import ProductType
from diffqc.v1.common_pb2 import ModelRef
from diffqc.v1.frame_pb2 import Frame
from diffqc.v1.inference_pb2 import InferenceResult
from diffqc.v1.scoring_pb2 import VERDICT_DEFECT
from tests.helpers.models import TINY_PRODUCT


@pytest.mark.parametrize("threshold_shift", [0.0, None])  # the calibrated threshold, and one mid-way
def test_pipeline_verdicts_equal_the_detector_run_in_process(tiny_artifact, tmp_path, threshold_shift):
    artifact, data = tiny_artifact
    detector = Detector.load(artifact)
    blobs = FileBlobStore(tmp_path / "blobs")
    engine = make_engine(f"sqlite:///{tmp_path}/qc.db")
    upgrade(engine)
    registration = artifact_registration(artifact, TINY_PRODUCT)
    samples = list_samples(data, "test")
    frames, tensors = [], []
    spec = PreprocessSpec.from_dict({"height": 64, "width": 64, "channels": 3}, TINY_PRODUCT)
    for i, sample in enumerate(samples):
        frame = Frame(
            frame_id=f"f-{threshold_shift}-{i}",
            line_id="L1",
            product_type=TINY_PRODUCT,
            image=blobs.put(sample.path.read_bytes(), "image/png"),
            process_parameters={"oven_temp_c": 240.0},
        )
        prepared = prepare_frame(frame, spec, blobs)
        frames.append(prepared.frame)
        tensors.append(get_array(blobs, prepared.tiles[0].tensor))
    prediction = detector.predict(np.stack(tensors), TINY_PRODUCT)
    amaps, components, scores = prediction.anomaly_map, prediction.components, prediction.score
    if threshold_shift is None:  # a threshold between the scores, so both verdicts occur
        registration["threshold"] = float(np.median(scores))
    with Session(engine) as session, session.begin():
        session.add(ProductType(name=TINY_PRODUCT, nominal_ranges={"oven_temp_c": [230, 250]}))
        session.flush()
        register_model_version(session, TINY_PRODUCT, "1", artifact.as_uri(), **registration)
    scorer = Scorer(ScoringSettings(), engine, blobs)
    level = registration["metrics"]["region_level"]

    expected = (
        detector.verdicts(scores, TINY_PRODUCT)
        if threshold_shift == 0.0
        else ["defect" if s > registration["threshold"] else "good" for s in scores]
    )
    for frame, amap, comps, score, want in zip(frames, amaps, components, scores, expected, strict=True):
        result = InferenceResult(
            frame=frame,
            score=float(score),
            anomaly_map=put_array(blobs, amap[0]),
            component_scores=dict(zip(COMPONENTS, map(float, comps), strict=True)),
            model=ModelRef(name="diffqc_detector", version="1"),
        )
        verdict = scorer.score(result)
        assert (verdict.verdict == VERDICT_DEFECT) == (want == "defect")
        assert verdict.score == pytest.approx(float(score), abs=1e-6)
        if want == "defect":
            regions = find_regions(amap[0], level)
            assert [
                (r.bbox.x, r.bbox.y, r.bbox.x + r.bbox.width, r.bbox.y + r.bbox.height) for r in verdict.regions
            ] == [tuple(r["bbox"]) for r in regions]
    if threshold_shift is None:
        assert {"defect", "good"} <= set(expected)
    engine.dispose()
