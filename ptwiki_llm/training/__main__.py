"""``python -m ptwiki_llm.training``: the training entry point for one process or each torchrun rank.

    # one process (what the pipeline's train step runs in-process)
    python -m ptwiki_llm.training --config configs/local.yaml --formatted .ptwiki/data/formatted/<key>
    # one node, 4 GPUs (DDP; set train.fsdp for FSDP)
    torchrun --standalone --nproc_per_node=4 -m ptwiki_llm.training --config configs/atena.yaml --formatted DIR
    accelerate launch --num_processes 4 -m ptwiki_llm.training --config configs/atena.yaml --formatted DIR

Exit codes: 0 trained, 75 preempted by SIGUSR1 after saving a checkpoint (requeue and rerun: it resumes),
143 cancelled by SIGTERM (checkpoint saved if there was time; not requeued), 2 bad input (message says
what to fix), 1 anything else.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ptwiki_llm.config import Config, load_config
from ptwiki_llm.overrides import merge, parse_overrides


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ptwiki_llm.training", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", type=Path, help="YAML preset")
    source.add_argument("--config-json", type=Path, help="a resolved config (what the train step passes)")
    data = parser.add_mutually_exclusive_group(required=True)
    data.add_argument("--formatted", type=Path, help="the format step's folder (train.jsonl, eval.jsonl)")
    data.add_argument("--formatted-json", type=Path, help="the format step's output (FormattedData) as JSON")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="KEY=VALUE override")
    parser.add_argument("--mlflow-run-id", help="log into this MLflow run (default: a new 'train' run)")
    parser.add_argument("--pipeline-run-id", help="nest the new MLflow run under this pipeline run")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    from ptwiki_llm.data.format import FormattedData
    from ptwiki_llm.models.refs import ModelNotStagedError
    from ptwiki_llm.models.runtime import DeviceUnavailableError
    from ptwiki_llm.training.data import TrainingDataError
    from ptwiki_llm.training.settings import TrainingSetupError
    from ptwiki_llm.training.trainer import run_training, world

    if args.config_json:
        config = Config.model_validate(json.loads(args.config_json.read_text(encoding="utf-8")))
        if args.sets:
            config = Config.model_validate(merge(config.to_dict(), parse_overrides(args.sets)))
    else:
        config = load_config(args.config, parse_overrides(args.sets))
    formatted = (FormattedData.model_validate_json(args.formatted_json.read_text(encoding="utf-8"))
                 if args.formatted_json else FormattedData.from_folder(args.formatted))
    try:
        if args.mlflow_run_id or world()[0] != 0:
            run_training(config, formatted, args.mlflow_run_id, not args.no_progress)
        else:
            from ptwiki_llm import tracking

            with tracking.step_run(config, "train", args.pipeline_run_id) as run:
                run_training(config, formatted, run.info.run_id, not args.no_progress)
    except (TrainingDataError, TrainingSetupError, DeviceUnavailableError, ModelNotStagedError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
