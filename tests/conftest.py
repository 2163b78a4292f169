"""Shared pytest setup: every test runs offline (no Hugging Face Hub access)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tests.builds import av_builds, emoji_build  # noqa: E402, F401  (small benchmark builds)
from tests.pg import pg_server, pg_url, store_url  # noqa: E402, F401  (PostgreSQL and store fixtures)
