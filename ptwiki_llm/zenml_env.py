"""Prepare ZenML for a run: its store inside the workdir, no telemetry, our source root.

Must run before ``zenml`` is first imported: ZenML reads ZENML_CONFIG_PATH at import time.
"""

from __future__ import annotations

import os
import sys

from ptwiki_llm.config import Config
from ptwiki_llm.provenance import SOURCE_ROOT


def prepare_zenml(config: Config) -> None:
    path = str(config.zenml_config_path)
    if "zenml" in sys.modules and os.environ.get("ZENML_CONFIG_PATH") != path:
        raise RuntimeError(
            f"zenml was imported before its store was set to {path}; call prepare_zenml() first "
            "(or start a new process)"
        )
    config.zenml_config_path.mkdir(parents=True, exist_ok=True)
    os.environ["ZENML_CONFIG_PATH"] = path
    os.environ.setdefault("ZENML_ANALYTICS_OPT_IN", "false")
    os.environ.setdefault("ZENML_ENABLE_RICH_TRACEBACK", "false")
    os.environ.setdefault("AUTO_OPEN_DASHBOARD", "false")
    from zenml.utils import source_utils

    source_utils.set_custom_source_root(str(SOURCE_ROOT))


def record_run_config(run_id: str, config: Config) -> None:
    """The whole run config's hash and each stage slice's hash as the ZenML pipeline run's metadata."""
    from zenml import log_metadata

    from ptwiki_llm.config_slice import STAGE_SECTIONS, slice_sha256

    log_metadata(metadata={"config_sha256": config.digest(),
                           "slice_sha256": {stage: slice_sha256(config, stage) for stage in STAGE_SECTIONS}},
                 run_id_name_or_prefix=run_id)
