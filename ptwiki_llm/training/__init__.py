"""LoRA/QLoRA fine-tuning with TRL: config mapping, the training run, checkpoints/preemption, metrics."""

from ptwiki_llm.training.preemption import (
    CANCELLED_EXIT_CODE,
    PREEMPTED_EXIT_CODE,
    TrainingCancelled,
    TrainingPreempted,
)

__all__ = ["CANCELLED_EXIT_CODE", "PREEMPTED_EXIT_CODE", "TrainingCancelled", "TrainingPreempted"]
