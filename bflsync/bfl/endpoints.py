"""BFL's finetune API as bflsync speaks it: each endpoint's path and the answers both sides agree on.

One definition for the client (:mod:`bflsync.bfl.client`), the status rules (:mod:`bflsync.bfl.status`)
and the mock (:mod:`bflsync.mock.server`), so the mock cannot drift from what the client asks.
"""

from __future__ import annotations

from typing import Final

LIST_PATH: Final = "/v1/my_finetunes"
DETAILS_PATH: Final = "/v1/finetune_details"
RESULT_PATH: Final = "/v1/get_result"
CREDITS_PATH: Final = "/v1/credits"
TASK_NOT_FOUND: Final = "Task not found"
"""The status ``get_result`` answers for a task BFL has forgotten (or never had)."""
