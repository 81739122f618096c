"""Reading what a child process showed on a pseudo-terminal, for the tests of terminal output."""

from __future__ import annotations

import os


def read_until_closed(controller: int) -> bytes:
    """Everything written to the terminal until the child closes it, then the controller is closed."""
    shown = bytearray()
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(controller)
    return bytes(shown)
