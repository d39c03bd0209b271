"""Prefect tasks: thin verb_noun wrappers over plain functions in `ncflow/` and `models/`.

Each is importable and callable without a server through `.fn(...)`; they return paths and small
dicts, never arrays.
"""
