"""LoRA/QLoRA fine-tuning with TRL: config mapping, the training run, checkpoints/preemption, metrics.

The preemption names load on first use: ``preemption`` imports transformers (seconds), which readers of
``training.result`` (the step output the driver loads) do not need.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CANCELLED_EXIT_CODE", "PREEMPTED_EXIT_CODE", "TrainingCancelled", "TrainingPreempted"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from ptwiki_llm.training import preemption

        return getattr(preemption, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
