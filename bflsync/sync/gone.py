"""Telling a retired endpoint from a few missing finetunes: 404/410 answers counted per endpoint.

One finetune answering 404 is a finetune BFL lost, worth a warning of its own. Every finetune
answering 404 or 410 is the endpoint going away (BFL retired finetuning, with no sunset date for
these endpoints): a thousand identical warnings would bury that. So the warnings of 404/410
answers wait for the end of the run, which says either each of them or, when every request to the
endpoint was answered so, one line for all. The stored records are never touched by them.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Final

from bflsync.errors import ApiError

GONE_STATUSES: Final = frozenset({404, 410})
# One finetune answering 404 says nothing about the endpoint: it keeps its own warning.
MIN_ASKED: Final = 2


class GoneTally:
    """Requests per endpoint, and the warnings of those answered 404 or 410, held until :meth:`report`."""

    def __init__(self, *, source: str, logger: logging.Logger) -> None:
        self.source = source
        self.logger = logger
        self.asked: Counter[str] = Counter()
        self.held: dict[str, list[str]] = {}
        self.reported = False

    def ask(self, endpoint: str) -> None:
        self.asked[endpoint] += 1

    def hold(self, endpoint: str, error: ApiError, warning: str) -> bool:
        """Keep the warning of a 404/410 answer for the report; False (log it now) for any other error."""
        if error.status not in GONE_STATUSES:
            return False
        self.held.setdefault(endpoint, []).append(warning)
        return True

    def report(self) -> str | None:
        """Log the held warnings, or one line per endpoint that answered every request 404/410.

        Return that line (for the run's record), the first one if several endpoints went.
        """
        if self.reported:
            return None
        self.reported = True
        summary = None
        for endpoint, warnings in sorted(self.held.items()):
            if len(warnings) == self.asked[endpoint] >= MIN_ASKED:
                line = (
                    f"GET {endpoint} answered 404/410 for all {len(warnings)} finetunes asked at "
                    f"{self.source}: the endpoint looks retired; their stored records are kept"
                )
                self.logger.warning("%s", line)
                summary = summary or line
            else:
                for warning in warnings:
                    self.logger.warning("%s", warning)
        return summary
