"""What every entry point shares: logging set-up, and turning bad-input errors into one clear message."""
from __future__ import annotations

import logging
import signal
import sys
from typing import Callable

from sv.data.audio import AudioError
from sv.data.table import DataError

LOG_FORMAT = "%(asctime)s %(levelname)s [%(name)s] %(message)s"


def setup_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format=LOG_FORMAT, datefmt="%Y-%m-%d %H:%M:%S", stream=sys.stderr)


def run_main(main: Callable[[list[str] | None], None], argv: list[str] | None = None) -> None:
    """Run an entry point; bad input (data, audio or config values) exits 1 with its message and no traceback."""
    setup_logging()
    try:
        main(argv)
    except (DataError, AudioError, ValueError) as e:
        logging.getLogger(main.__module__).error("%s", e)
        sys.exit(1)


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask Linux to send `sig` to this process when its parent dies (prctl PR_SET_PDEATHSIG), so that a training
    worker never outlives a killed torchrun agent and goes on writing into an exp dir. A no-op elsewhere."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(sig), 0, 0, 0)  # 1: PR_SET_PDEATHSIG

