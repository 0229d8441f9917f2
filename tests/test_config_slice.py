"""A step's config holds the sections its stage declares, and reading any other one is an error, never a default."""

from __future__ import annotations

import copy
import pickle

import pytest

from ptwiki_llm.config import Config, load_config
from ptwiki_llm.config_slice import (
    STAGE_SECTIONS,
    UndeclaredSectionError,
    config_for_stage,
    config_from_stage,
    slice_sha256,
)


def _config(tmp_path) -> Config:
    """Every section away from its default, so a read that fell back to a default would show."""
    return load_config(None, {"workdir": str(tmp_path), "seed": 7, "data": {"max_articles": 12,
                       "format": {"mode": "completion"}, "validate": {"max_failing_share": 0.3}},
                       "rag": {"retrieval": {"k": 9}}, "train": {"max_steps": 5}, "registry": {"model_name": "m"},
                       "evaluation": {"rag_k": 3}, "zenml": {"enable_cache": False}}, environ={})


def _sliced(config: Config, stage: str) -> Config:
    return config_from_stage(config_for_stage(config, stage))


@pytest.mark.parametrize("stage", sorted(STAGE_SECTIONS))
def test_declared_sections_read_as_the_run_set_them_and_others_raise(tmp_path, stage):
    config = _config(tmp_path)
    sliced = _sliced(config, stage)
    declared = STAGE_SECTIONS[stage]
    assert sliced.seed == 7 and sliced.workdir == config.workdir and sliced.mlflow == config.mlflow
    for dotted in declared:
        section, _, key = dotted.partition(".")
        if key:
            field = "validate_" if key == "validate" else key
            assert getattr(sliced.data, field) == getattr(config.data, field), dotted
        else:
            assert getattr(sliced, section) == getattr(config, section), dotted
    with pytest.raises(UndeclaredSectionError):
        _ = sliced.zenml_config_path  # a derived location reads the zenml section: the driver's business
    for section in ("rag", "train", "registry", "evaluation", "models", "zenml", "hpc"):
        if section not in declared:
            with pytest.raises(UndeclaredSectionError, match=f"'{section}' is not in this step's config slice"):
                getattr(sliced, section)
    if not any(dotted.startswith("data.") for dotted in declared):
        with pytest.raises(UndeclaredSectionError, match="'data' is not"):
            _ = sliced.data
        return
    for key, field in (("max_articles", "max_articles"), ("format", "format"), ("validate", "validate_")):
        if f"data.{key}" not in declared:
            with pytest.raises(UndeclaredSectionError, match=f"'data.{key}'"):
                getattr(sliced.data, field)


def test_the_error_is_no_attribute_error_so_getattr_defaults_cannot_hide_it(tmp_path):
    sliced = _sliced(_config(tmp_path), "validate")
    assert not issubclass(UndeclaredSectionError, AttributeError)
    with pytest.raises(UndeclaredSectionError):
        getattr(sliced, "rag", None)
    assert hasattr(sliced.data, "validate_")


def test_a_slice_serializes_copies_and_assigns_like_a_config(tmp_path):
    config = _config(tmp_path)
    sliced = _sliced(config, "register")
    assert isinstance(sliced, Config) and type(sliced).__name__ == "Config"
    assert sliced.to_dict()["rag"] == Config().to_dict()["rag"]  # what steps always held: defaults, never read
    on_cpu = sliced.model_copy(deep=True)
    on_cpu.models.device = "cpu"
    assert on_cpu.models.device == "cpu" and sliced.models.device == config.models.device
    with pytest.raises(UndeclaredSectionError):
        copy.deepcopy(sliced).rag  # noqa: B018 - the read is the test
    unpickled = pickle.loads(pickle.dumps(sliced))  # e.g. into a worker process: a plain Config
    assert type(unpickled) is Config and unpickled.to_dict() == sliced.to_dict()


@pytest.mark.parametrize("stage", sorted(STAGE_SECTIONS))
def test_a_slice_hash_is_the_same_in_the_driver_and_the_step(tmp_path, stage):
    config = _config(tmp_path)
    assert slice_sha256(_sliced(config, stage), stage) == slice_sha256(config, stage)
    other = config.model_copy(update={"seed": 8})
    assert slice_sha256(other, stage) != slice_sha256(config, stage)


def test_slices_differ_by_stage_and_from_the_whole_config(tmp_path):
    config = _config(tmp_path)
    hashes = {stage: slice_sha256(config, stage) for stage in STAGE_SECTIONS}
    assert len(set(hashes.values())) == len(STAGE_SECTIONS) and config.digest() not in hashes.values()
    # a section no stage declares changes the run config's hash and no slice's
    cache_off = config.model_copy(update={"zenml": config.zenml.model_copy(update={"enable_cache": True})})
    assert cache_off.digest() != config.digest()
    assert {stage: slice_sha256(cache_off, stage) for stage in STAGE_SECTIONS} == hashes


def test_the_parent_run_holds_the_whole_config_hash_though_a_step_created_it(tmp_path):
    from mlflow.tracking import MlflowClient

    from ptwiki_llm import tracking

    config = _config(tmp_path)
    sliced = _sliced(config, "validate")
    assert sliced.digest() != config.digest()  # validate's config holds data.max_articles at its default
    with tracking.step_run(sliced, "validate", "zenml-run-1") as run:  # the first step creates the parent
        step_id = run.info.run_id
    client = MlflowClient()
    parent_id = client.get_run(step_id).data.tags["mlflow.parentRunId"]
    assert client.get_run(parent_id).data.tags["ptwiki.config_sha256"] == sliced.digest()
    assert tracking.parent_run_id(config, "zenml-run-1", log_config=True) == parent_id  # the runner, at the end
    parent, step = client.get_run(parent_id).data.tags, client.get_run(step_id).data.tags
    assert parent["ptwiki.config_sha256"] == config.digest()
    assert step["ptwiki.slice_sha256"] == parent["ptwiki.slice_sha256.validate"] == slice_sha256(config, "validate")
    assert {key for key in parent if key.startswith("ptwiki.slice_sha256.")} == {
        f"ptwiki.slice_sha256.{stage}" for stage in STAGE_SECTIONS}
