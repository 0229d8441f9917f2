"""HPC: run the pipeline's ZenML steps as SLURM jobs, on the host or inside Apptainer or OCI (podman) images.

- ``jobscript``: the sbatch job script, the submit command line and the ``apptainer exec`` command of a
  step (pure functions of the config; what the unit tests check line by line);
- ``podman``: the ``podman run`` command of a step and the content id of its OCI image;
- ``slurm``: a thin client over ``sbatch``/``squeue``/``sacct``/``scontrol``/``scancel``;
- ``logs``: follows job logs on the shared filesystem and quotes a failed job's tail;
- ``flavor`` / ``orchestrator`` / ``entrypoint``: the ZenML orchestrator flavor (a DAG of sbatch jobs
  chained with ``--dependency=afterok``);
- ``stack``: ``ptwiki-llm stack up`` (register flavor, components and stack; choose the stack for a run);
- ``services``: URL files written by the service launchers in ``infra/``.
"""
