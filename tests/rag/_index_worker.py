"""Runs index_stage in its own process (so a test can kill it mid-way): argv = a JSON job file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ptwiki_llm.config import load_config
from ptwiki_llm.data.validate import ValidationResult
from ptwiki_llm.stages import index_stage

if __name__ == "__main__":
    job = json.loads(Path(sys.argv[1]).read_text())
    config = load_config(job["config_file"], job["overrides"], environ={})
    validated = ValidationResult.model_validate(job["validated"])
    result = index_stage(config, validated, None, show_progress=False, max_articles=job["limit"])
    print(result.model_dump_json())
