"""ncflow: a Prefect pipeline for training GPU recommender models."""

__version__ = "0.1.0"
