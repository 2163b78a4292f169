"""Shared pytest setup: every test runs offline (no Hugging Face Hub access)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
