"""``python app.py`` in its own process for the benchmarks (clients in the bench process then do not share
the server's interpreter)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def serve_app(
    port: int, *args: str, env: dict[str, str] | None = None, wait_s: float = 120.0, folder: Path = ROOT
) -> subprocess.Popen:
    """Start ``folder``'s ``app.py --port PORT ARGS...`` (default: this checkout's) and return once it answers
    HTTP; ``env`` adds variables."""
    import httpx

    cmd = [sys.executable, str(folder / "app.py"), "--port", str(port), *args]
    full_env = os.environ | {"HF_HUB_OFFLINE": "1"} | (env or {})
    proc = subprocess.Popen(cmd, cwd=folder, env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
            return proc
        except httpx.HTTPError:
            time.sleep(0.25)
    proc.kill()
    raise SystemExit(f"{'' if folder == ROOT else f'{folder}/'}app.py did not start on port {port}")
