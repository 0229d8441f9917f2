"""Retrieval-augmented generation over the article corpus.

articles -> :mod:`chunking` (token-aware passages with deterministic ids) -> :mod:`embeddings`
(sentence-transformers) -> :mod:`stores` (LanceDB embedded default, Weaviate on a cluster) ->
:mod:`retrieval` (vector or hybrid top-k) -> :mod:`answer` (Portuguese prompt with numbered sources).
"""
