"""UME-MMA: multi-modal models that stay robust when modalities are missing."""

__version__ = "0.1.0"
