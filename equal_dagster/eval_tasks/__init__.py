"""lm-evaluation-harness task templates shipped with equal-dagster: rendered into a folder with the absolute path of
their local data file (`core/evaluation.py`), so that they run offline."""
