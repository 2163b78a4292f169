"""Debian's Chromium as the browser tests, the README screenshots and the toggle benchmark launch it
(headless, as root, on a machine with no network beyond loopback)."""

from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
