"""The model lifecycle table and handler discovery."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest

from hyperserve.handlers import registry
from hyperserve.server.errors import ServingError
from hyperserve.server.lifecycle import TRANSITIONS, Lifecycle, State


def test_happy_path_and_drain():
    life = Lifecycle()
    assert not life.ready
    assert life.fire("load") is State.LOADING and not life.ready
    assert life.fire("loaded") is State.READY and life.ready
    assert life.fire("drain") is State.DRAINING and not life.ready


def test_a_load_finishing_during_drain_does_not_make_the_model_ready():
    life = Lifecycle()
    life.fire("load")
    life.fire("drain")
    assert life.fire("loaded") is State.DRAINING and not life.ready


def test_events_outside_the_table_raise():
    life = Lifecycle()
    with pytest.raises(RuntimeError, match="not allowed"):
        life.fire("loaded")
    life.fire("load")
    life.fire("failed", "boom")
    assert life.state is State.FAILED and life.reason == "boom"
    with pytest.raises(RuntimeError):
        life.fire("loaded")


def test_only_ready_is_ready():
    assert [s for s in State if s is State.READY] == [State.READY]
    assert all(target in State for target in TRANSITIONS.values())


def test_builtin_handlers_are_registered_as_entry_points():
    names = {ep.name for ep in entry_points(group="hyperserve.handlers")}
    assert {"onnx", "sklearn", "xgboost"} <= names
    for name in ("onnx", "sklearn", "xgboost"):
        assert registry.load_class(name).name == name


def test_detection_by_file_name(tmp_path):
    for filename, framework in [("model.onnx", "onnx"), ("model.joblib", "sklearn"), ("model.pkl", "sklearn"),
                                ("model.bst", "xgboost"), ("model.ubj", "xgboost")]:
        d = tmp_path / framework / filename.replace(".", "_")
        d.mkdir(parents=True)
        (d / filename).write_bytes(b"")
        name, artifact = registry.detect(d)
        assert (name, artifact.name) == (framework, filename)
        assert registry.detect(d / filename)[0] == framework


def test_unknown_framework_and_bad_handler_paths_are_clear():
    with pytest.raises(ServingError, match="unknown framework 'nope'"):
        registry.load_class("nope")
    with pytest.raises(ServingError, match="cannot load handler"):
        registry.load_class("no.such.module:Handler")
    with pytest.raises(ServingError, match="is not a hyperserve Handler"):
        registry.load_class("json:JSONDecoder")


def test_max_batch_size_is_zero_for_the_handlers_or_a_number_of_instances():
    from hyperserve.server.serve import batch_limit

    assert [batch_limit(v) for v in (0, 1, 4096)] == [0, 1, 4096]
    for bad in (-1, "64", 1.5, True):  # a flag is parsed as int; these come from --model-config's JSON
        with pytest.raises(ServingError, match=r"--max-batch-size must be 0 \(the handler's default\)"):
            batch_limit(bad)
