"""Downstream evaluation: one module per task, all scoring the same set of models (tasks.models)."""
