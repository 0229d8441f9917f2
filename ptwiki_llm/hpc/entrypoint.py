"""The ZenML step entrypoint a SLURM job runs.

ZenML's own entrypoint ``chdir``s to ``/app`` (created if missing), which a user cannot do on a cluster
node outside a container. This one starts from the source root the job script names (the repository on
the host, its bind mount inside an image), so steps, pipelines and this flavor import the same way as
where the run was started.
"""

from __future__ import annotations

import os
import sys

from zenml.entrypoints.step_entrypoint_configuration import StepEntrypointConfiguration
from zenml.utils import source_utils

SOURCE_ROOT_ENV = "PTWIKI_SOURCE_ROOT"


class SlurmStepEntrypointConfiguration(StepEntrypointConfiguration):
    def prepare_code_environment(self) -> None:
        root = os.environ.get(SOURCE_ROOT_ENV)
        if not root or not os.path.isdir(root):
            raise RuntimeError(
                f"{SOURCE_ROOT_ENV}={root!r} is not a directory: the job script must point it at the repository "
                "(bound at the image's app_dir when the step runs in Apptainer)"
            )
        os.chdir(root)
        if root not in sys.path:
            sys.path.insert(0, root)
        source_utils.set_custom_source_root(root)
