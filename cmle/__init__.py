"""cmle: the CMLE propensity workflow on AEP as one MLflow Projects package."""

__version__ = "0.1.0"
