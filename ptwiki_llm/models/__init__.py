"""Models by job: ``refs`` (which model a name means, its local folder, its tokenizer), ``staging`` (the model
store: GGUF conversion, linked folders, Hub downloads, the stage manifest) and ``runtime`` (device and
precision policy, loading a staged causal LM)."""
