"""How long a user waits to learn that the input or config is bad: the CLI's pre-flight refusals.

Times, as a user runs them (a new process each), commands refused before any ZenML or MLflow set-up
(missing input, random bytes, a bz2 cut short, a YAML error, a bad value, an MLflow server that is
down) against the baseline of the same process doing nothing (`ptwiki-llm --version`: interpreter and
CLI start-up), interleaved, median of N rounds. The goal is under 3 s per refusal. The run before
these checks existed took ~25 s to reach the same errors (ZenML/MLflow set-up first).
Results: benchmarks/results/cli_preflight.{json,md}.

Usage: PTWIKI_ASSET_PATH=../shared .venv/bin/python benchmarks/cli_preflight.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._common import benchmark_machine, find_asset, write_results  # noqa: E402

LOCAL = str(REPO / "configs" / "local.yaml")


def _cases(tmp: Path) -> dict[str, list[str]]:
    junk = tmp / "junk.bin"
    junk.write_bytes(os.urandom(4096))
    cut = tmp / "cut.xml.bz2"
    cut.write_bytes(find_asset("data/ptwiki_dbpedia_minidump_berlim.xml.bz2").read_bytes()[:5000])
    broken = tmp / "broken.yaml"
    broken.write_text("data:\n  source: [unclosed\n")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return {
        "baseline: --version": ["--version"],
        "missing data.source": ["data", "-c", LOCAL, "--set", f"data.source={tmp / 'missing.xml'}"],
        "random bytes": ["data", "-c", LOCAL, "--set", f"data.source={junk}"],
        "bz2 cut short": ["data", "-c", LOCAL, "--set", f"data.source={cut}"],
        "YAML syntax error": ["data", "-c", str(broken)],
        "bad value": ["data", "-c", LOCAL, "--set", "data.max_articles=abc"],
        "MLflow server down": ["data", "-c", LOCAL, "--set", f"mlflow.tracking_uri=http://127.0.0.1:{port}"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        cases = _cases(tmp)
        env = dict(os.environ, PTWIKI_WORKDIR=str(tmp / "wd"), HF_HUB_OFFLINE="1")
        samples: dict[str, list[float]] = {case: [] for case in cases}
        codes: dict[str, int] = {}
        for _ in range(args.rounds):
            for case, argv in cases.items():  # interleaved: load from other users hits every case alike
                started = time.perf_counter()
                done = subprocess.run([sys.executable, "-m", "ptwiki_llm.cli", *argv], cwd=REPO, env=env,
                                      capture_output=True, text=True, timeout=120)
                samples[case].append(time.perf_counter() - started)
                codes[case] = done.returncode
        created = sorted(p.name for p in (tmp / "wd").iterdir()) if (tmp / "wd").exists() else []
    medians = {case: statistics.median(values) for case, values in samples.items()}
    baseline = medians["baseline: --version"]
    result = {
        "machine": benchmark_machine("typer", "pydantic", "zenml", "mlflow"),
        "rounds": args.rounds,
        "median_s": medians,
        "max_s": {case: max(values) for case, values in samples.items()},
        "exit_codes": codes,
        "workdir_entries_after_refusals": created,
    }
    lines = [
        "# CLI pre-flight refusals: time to the one-line error",
        "",
        f"Machine: {result['machine']['cpu_model']}, {result['machine']['cpus_usable']} usable cores, "
        f"{result['machine']['date_utc']}. The machine was shared with other jobs while this ran: absolute "
        "times carry their load; the baseline (same process, no command) was measured interleaved with the cases.",
        "",
        "| case | exit code | median (s) | max (s) | over baseline (s) |",
        "|---|---|---|---|---|",
    ]
    for case in cases:
        lines.append(f"| {case} | {codes[case]} | {medians[case]:.2f} | {result['max_s'][case]:.2f} | "
                     f"{medians[case] - baseline:+.2f} |")
    lines += ["", f"Workdir entries after every refusal: {created or 'none (nothing set up)'}.", ""]
    write_results("cli_preflight", result, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
