"""Shared pytest setup: every test runs offline (no Hugging Face Hub access) and writes its default data
folder (``UME_MMA_HOME``: annotation database, media, jobs) into a temporary folder of this run, never into
the checkout or the user's home; subprocesses inherit it."""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ["UME_MMA_HOME"] = tempfile.mkdtemp(prefix="ume-mma-home-")  # set, not setdefault: never the user's
atexit.register(shutil.rmtree, os.environ["UME_MMA_HOME"], ignore_errors=True)

from tests.builds import av_builds, emoji_build, spoken_icons_build  # noqa: E402, F401  (small benchmark builds)
from tests.pg import pg_server, pg_url, store_url  # noqa: E402, F401  (PostgreSQL and store fixtures)
