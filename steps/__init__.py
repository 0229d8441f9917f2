"""ZenML steps: thin wrappers that call ptwiki_llm.stages."""
