"""Bad input to the training run fails before any model is loaded, with a message that says what to do."""

from __future__ import annotations

import pytest
import torch

from ptwiki_llm.models.runtime import DeviceUnavailableError
from ptwiki_llm.training.data import TrainingDataError
from ptwiki_llm.training.settings import TrainingSetupError
from ptwiki_llm.training.trainer import run_training
from tests.training.conftest import tiny_config, write_formatted


def test_sequence_longer_than_the_model_context(model_store, tmp_path, formatted):
    config = tiny_config(tmp_path, model_store, max_seq_length=8193)  # SmolLM2 has 8192 positions
    with pytest.raises(TrainingDataError, match="exceeds the context of smollm2-135m-instruct"):
        run_training(config, formatted)


def test_empty_training_split(model_store, tmp_path):
    formatted = write_formatted(tmp_path / "formatted", [], ["eval text"])
    with pytest.raises(TrainingDataError, match="holds no examples"):
        run_training(tiny_config(tmp_path, model_store), formatted)


def test_qlora_requested_on_cpu(model_store, tmp_path, formatted):
    with pytest.raises(TrainingSetupError, match="QLoRA"):
        run_training(tiny_config(tmp_path, model_store, quantization="nf4"), formatted)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_cuda_requested_without_a_gpu(model_store, tmp_path, formatted):
    config = tiny_config(tmp_path, model_store)
    config.models.device = "cuda"
    with pytest.raises(DeviceUnavailableError, match="no CUDA GPU"):
        run_training(config, formatted)
