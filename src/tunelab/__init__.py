"""tunelab: instruction-data generation and tuning workbench."""

__version__ = "0.1.0"
