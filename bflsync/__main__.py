"""Allow ``python -m bflsync``."""

from bflsync.cli import main

main()
