"""The ``bflsync`` command line: parse, call one service function, render, map errors to exit codes."""

from bflsync.cli.app import cli, main

__all__ = ["cli", "main"]
