"""What every command line of the package shares: a quiet exit when its reader goes away.

``python -m ume_mma.annotate stats | head -1`` closes the pipe after one line; the next write raises
``BrokenPipeError``. :func:`main_quietly` ends the command there without a traceback, with exit status 141 (128 +
SIGPIPE, what a Unix tool killed by SIGPIPE reports), and keeps Python's exit-time flush quiet too.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import NoReturn

EXIT_CLOSED_PIPE = 141


def main_quietly(main: Callable[[], int | None]) -> NoReturn:
    """``sys.exit(main())``, quietly on a closed stdout."""
    try:
        code = main()
        sys.stdout.flush()  # inside the try: a block-buffered pipe may only fail here
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the interpreter's own flush at exit must not fail again
        code = EXIT_CLOSED_PIPE
    sys.exit(code)
