"""A stand-in for the trainer inside a SLURM job: the real PreemptionWatcher around a loop of small units.

``python tests/hpc/signal_step.py <state_dir>``: counts units of 0.1 s; when the watcher asks for a stop it
saves the count ("checkpoint") and raises what the trainer raises (exit 75 after the time-limit warning,
143 after a cancel). Used by tests/hpc/test_slurm_signals.py through a generated job script.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from ptwiki_llm.training.preemption import PreemptionWatcher  # noqa: E402

UNITS = 3000


def main(state_dir: Path) -> None:
    checkpoint = state_dir / "count.json"
    done = json.loads(checkpoint.read_text())["done"] if checkpoint.exists() else 0
    with PreemptionWatcher(state_dir) as watcher:
        print(f"signal_step: ready at {done}", flush=True)
        while done < UNITS:
            if watcher.requested:
                checkpoint.write_text(json.dumps({"done": done}))
                stop = watcher.stop(str(checkpoint), done)
                print(f"signal_step: {watcher.reason} at {done}, checkpoint saved, exiting {stop.code}", flush=True)
                raise stop
            time.sleep(0.1)
            done += 1
    print(f"signal_step: finished {done}", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
