"""Writing a whole answer to stdout: every byte, or an error that says the reader went away."""

from __future__ import annotations

import io
import os
import sys


def write_stdout(text: str) -> None:
    """Write ``text`` to stdout in as few system calls as the pipe takes, every byte or an error.

    One ``write`` of a large text through ``sys.stdout`` can end short on a pipe (the reader went
    away, or a signal came) and CPython 3.11's buffered writer then drops the rest without a word:
    ``| head`` would exit 0 instead of 141. ``os.write`` in a loop either writes everything or raises
    (``BrokenPipeError`` when the reader is gone). Without a real file (tests), ``sys.stdout.write``.
    """
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, io.UnsupportedOperation):
        sys.stdout.write(text)
        return
    sys.stdout.flush()
    view = memoryview(text.encode(sys.stdout.encoding, sys.stdout.errors or "strict"))
    while view:
        view = view[os.write(fd, view) :]
