"""What every entry point shares: logging set-up, and turning bad-input errors into one clear message."""
from __future__ import annotations

import logging
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
