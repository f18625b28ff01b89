"""vlur-harness: evaluation harness for all-in-one adverse-weather image restoration on CDD-11."""

__version__ = "0.1.0"
