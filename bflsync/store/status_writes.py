"""Persistence of training statuses and credit balances on a caller's Session. Never commits.

A batch of status answers updates the ``finetune`` rows it is about (``status``, ``progress``,
``status_checked_at``, ``ready_at``) and appends a ``finetune_status`` row per change of status
or progress, so polling a finetune that is still at the same progress writes no history.
Answers for finetunes that have no row (their details failed in the same run) are dropped:
there is nothing to attach them to, and the next run asks again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from bflsync.bfl.status import SETTLED_STATUSES, StatusAnswer, StoredStatus, apply
from bflsync.store import chain
from bflsync.store.schema import Finetune, FinetuneStatus, SyncRun
from bflsync.store.writes import account_scope, chunked

finetune_table: sa.Table = Finetune.__table__  # type: ignore[attr-defined]
status_table: sa.Table = FinetuneStatus.__table__  # type: ignore[attr-defined]
run_table: sa.Table = SyncRun.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class StatusObservation:
    """The ``get_result`` answer for one finetune as fetched in a sync."""

    finetune_id: str
    answer: StatusAnswer


def settled_ids(session: Session, *, source: str, account: str) -> set[str]:
    """Stored finetune ids of ``(source, account)`` whose status is settled: a sync does not ask them again."""
    query = sa.select(finetune_table.c.finetune_id).where(
        account_scope(source, account), finetune_table.c.status.in_(sorted(SETTLED_STATUSES))
    )
    return set(session.execute(query).scalars())


def record_statuses(
    session: Session,
    observations: Sequence[StatusObservation],
    *,
    source: str,
    account: str,
    run_id: int | None,
    now: datetime,
) -> int:
    """Store a batch of answers (after the batch's details, so new finetunes have rows); return how
    many changed a status or progress. An id appearing twice keeps its last answer.
    """
    latest = {observation.finetune_id: observation.answer for observation in observations}
    stored = _load(session, source=source, account=account, finetune_ids=list(latest))
    updates: list[dict[str, Any]] = []
    timeline: list[dict[str, Any]] = []
    for finetune_id, answer in latest.items():
        if finetune_id not in stored:
            continue
        pk, before = stored[finetune_id]
        change = apply(before, answer, now=now)
        updates.append(
            {
                "pk": pk,
                "new_status": change.status,
                "new_progress": change.progress,
                "new_ready_at": change.ready_at,
            }
        )
        if change.timeline:
            timeline.append(
                {
                    "finetune_pk": pk,
                    "status": change.status,
                    "progress": change.progress,
                    "answer": answer.answer,
                    "observed_at": now,
                    "sync_run_id": run_id,
                }
            )
    if updates:
        session.execute(
            sa.update(finetune_table)
            .where(finetune_table.c.id == sa.bindparam("pk"))
            .values(
                status=sa.bindparam("new_status"),
                progress=sa.bindparam("new_progress"),
                ready_at=sa.bindparam("new_ready_at"),
                status_checked_at=now,
            ),
            updates,
        )
    if timeline:
        unchained = chain.unchained(session.connection(), "finetune_status")
        session.execute(sa.insert(status_table), timeline)
        chain.append(session.connection(), "finetune_status", skip=unchained)
    return len(timeline)


def record_credits(session: Session, *, run_id: int, credits: float) -> None:
    """The account's balance as read at the start of the run."""
    session.execute(sa.update(run_table).where(run_table.c.id == run_id).values(credits=credits))


def _load(
    session: Session, *, source: str, account: str, finetune_ids: Sequence[str]
) -> dict[str, tuple[int, StoredStatus]]:
    """(pk, stored status) per id; a row never checked has status None, as a finetune seen for the first time."""
    columns = (
        finetune_table.c.finetune_id,
        finetune_table.c.id,
        finetune_table.c.status,
        finetune_table.c.progress,
        finetune_table.c.ready_at,
    )
    loaded: dict[str, tuple[int, StoredStatus]] = {}
    for ids in chunked(finetune_ids):
        query = sa.select(*columns).where(
            account_scope(source, account), finetune_table.c.finetune_id.in_(ids)
        )
        for finetune_id, pk, status, progress, ready_at in session.execute(query).all():
            loaded[finetune_id] = (pk, StoredStatus(status, progress, ready_at))
    return loaded
