"""Building test stores for the read-side tests through the real write API, as a sync would."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from bflsync.config import DEFAULT_ACCOUNT
from bflsync.store import access, writes

SOURCE = "api.us1.bfl.ai"


def day(number: int, hour: int = 0) -> datetime:
    return datetime(2026, 1, number, hour, tzinfo=UTC)


def write_sync(
    engine: Engine,
    payloads: Mapping[str, Mapping[str, Any]],
    *,
    now: datetime,
    source: str = SOURCE,
    account: str = DEFAULT_ACCOUNT,
    tombstone: bool = True,
) -> int:
    """One "sync": a run, the observations, tombstones for stored ids not listed; returns the run id."""
    observations = [writes.Observation(finetune_id, details) for finetune_id, details in payloads.items()]
    with Session(engine) as session, session.begin():
        run_id = writes.start_run(session, source=source, account=account, pid=4242, now=now)
        outcomes = writes.record_observations(
            session, observations, source=source, account=account, run_id=run_id, now=now
        )
        counts = {"listed": len(payloads), "fetched": len(payloads)}
        for outcome in outcomes.values():
            counts[outcome.value] = counts.get(outcome.value, 0) + 1
        if tombstone:
            gone = writes.tombstone_missing(
                session, source=source, account=account, listed_ids=payloads, run_id=run_id, now=now
            )
            counts["deleted"] = len(gone)
        writes.finish_run(session, run_id=run_id, status="ok", counts=counts, now=now + timedelta(seconds=3))
    return run_id


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def with_alpha(db: str) -> str:
    """Create the store at ``db`` (at head) holding finetune ``alpha`` from one sync on day 1; returns ``db``."""
    opened = access.open_store_for_write(access.locate_store(db))
    try:
        write_sync(opened.engine, {"alpha": {"mode": "character"}}, now=day(1))
    finally:
        opened.engine.dispose()
    return db
