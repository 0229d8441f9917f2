"""LoRA/QLoRA fine-tuning with TRL: config mapping, the training run, checkpoints/preemption, metrics."""

from ptwiki_llm.training.preemption import PREEMPTED_EXIT_CODE, TrainingPreempted

__all__ = ["PREEMPTED_EXIT_CODE", "TrainingPreempted"]
