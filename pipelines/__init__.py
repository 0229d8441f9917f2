"""ZenML pipelines over the steps in steps/."""
