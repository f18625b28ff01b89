"""vlur-harness: evaluation harness for all-in-one adverse-weather image restoration on CDD-11.

The Python API: `harness.evaluate(...)` (see `harness.evaluation`), returning a `Results` with the per-image
records and the per-type table as pandas DataFrames.
"""

__version__ = "0.1.0"

__all__ = ["EvalConfig", "Results", "evaluate"]


def __getattr__(name: str):
    # lazy: `import harness` stays cheap (no torch) until the API is used
    if name in __all__:
        from harness import evaluation

        return getattr(evaluation, name)
    raise AttributeError(f"module 'harness' has no attribute {name!r}")
