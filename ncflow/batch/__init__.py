"""Batch scoring: every user's top-k from a registered model, spread over Dask workers."""
