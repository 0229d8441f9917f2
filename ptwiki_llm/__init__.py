"""ptwiki-llm: adapt Llama-family models to Portuguese Wikipedia."""

__version__ = "0.1.0"
