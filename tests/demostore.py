"""A generated store of any size, written through the real write API over several weekly syncs.

The views, ``bflsync serve`` and its browser tests, and ``benchmarks/bench_serve.py`` read it: finetunes
of every mode and type, comments in Latin and CJK scripts, updates, deletions, statuses, credits,
labels and notes, spread over six weeks so that per-week charts have something to show.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session

from bflsync import annotate
from bflsync.bfl.status import parse_answer
from bflsync.config import DEFAULT_ACCOUNT, Secret
from bflsync.store import labels, status_writes, writes
from bflsync.store.fingerprint import key_fingerprint
from bflsync.store.labels import Author
from bflsync.store.schema import Finetune, FinetuneNote

SOURCE = "api.us1.bfl.ai"
API_KEY = "demo-store-key"
START = datetime(2026, 10, 5, 9, tzinfo=UTC)
WEEKS = 6
MODES = ("character", "product", "style", "general")
RATES = (1e-5, 2e-5, 4e-5, 1e-4)
ITERATIONS = (300, 500, 1000, 1500)
COMMENTS = ("red fox in snow", "日本の風景 写真", "portrait of 山田 太郎", "studio product shot", "夜の東京")


def finetune_id(number: int) -> str:
    return f"ft-{number:05d}"


def details(number: int, *, week: int) -> dict[str, Any]:
    """The details BFL would send for finetune ``number`` as of ``week`` (updated once, in the last week)."""
    updated = week == WEEKS - 1 and number % 7 == 0
    return {
        "finetune_comment": f"{COMMENTS[number % len(COMMENTS)]} #{number}",
        "trigger_word": "TOK",
        "mode": MODES[number % len(MODES)],
        "finetune_type": "full" if number % 3 == 0 else "lora",
        "learning_rate": RATES[(number // 4) % len(RATES)] * (2 if updated else 1),
        "iterations": ITERATIONS[(number // 16) % len(ITERATIONS)] + (100 if updated else 0),
        "lora_rank": 32 if number % 2 else 16,
        "priority": "quality",
        "captioning": True,
        "timestamp": (START + timedelta(weeks=number % WEEKS)).isoformat(),
    }


def listed(number: int, week: int) -> bool:
    """Finetune ``number`` is trained in week ``number % WEEKS``; one in eleven of the older ones is deleted
    in the last week."""
    trained = number % WEEKS
    return trained <= week and not (week == WEEKS - 1 and trained < week and number % 11 == 0)


def fill(engine: Engine, *, count: int, account: str = DEFAULT_ACCOUNT) -> None:
    """Six weekly syncs of ``count`` finetunes, then labels on every fifth and a note on every seventh."""
    for week in range(WEEKS):
        now = START + timedelta(weeks=week)
        payloads = {finetune_id(n): details(n, week=week) for n in range(count) if listed(n, week)}
        observations = [writes.Observation(key, value) for key, value in payloads.items()]
        statuses = [
            status_writes.StatusObservation(finetune_id(n), parse_answer(_status(n, week)))
            for n in range(count)
            if finetune_id(n) in payloads
        ]
        with Session(engine) as session, session.begin():
            run_id = writes.start_run(session, source=SOURCE, account=account, pid=4242, now=now)
            fingerprint = key_fingerprint(Secret(API_KEY), secret=writes.fingerprint_secret(session))
            writes.record_account(
                session,
                source=SOURCE,
                account=account,
                fingerprint=fingerprint,
                replace_fingerprint=True,
                run_id=run_id,
                now=now,
            )
            status_writes.record_credits(session, run_id=run_id, credits=1000.0 - 37.5 * week)
            outcomes = writes.record_observations(
                session, observations, source=SOURCE, account=account, run_id=run_id, now=now
            )
            status_writes.record_statuses(
                session, statuses, source=SOURCE, account=account, run_id=run_id, now=now
            )
            gone = writes.tombstone_missing(
                session, source=SOURCE, account=account, listed_ids=payloads, run_id=run_id, now=now
            )
            counts = {"listed": len(payloads), "fetched": len(payloads), "deleted": len(gone)}
            for outcome in outcomes.values():
                counts[outcome.value] = counts.get(outcome.value, 0) + 1
            writes.finish_run(
                session, run_id=run_id, status="ok", counts=counts, now=now + timedelta(seconds=30)
            )
    _annotate(engine, count=count, account=account)


def _status(number: int, week: int) -> dict[str, Any]:
    if week > number % WEEKS and number % 4 != 3:
        return {"status": "Ready", "progress": 1.0}
    return {"status": "Pending", "progress": None}


def _annotate(engine: Engine, *, count: int, account: str) -> None:
    when = START + timedelta(weeks=WEEKS - 1, hours=2)
    table: sa.Table = Finetune.__table__  # type: ignore[attr-defined]
    with engine.begin() as connection:
        pks = dict(
            connection.execute(
                sa.select(table.c.finetune_id, table.c.id).where(
                    table.c.source == SOURCE, table.c.account == account
                )
            ).all()
        )
        for number in range(0, count, 5):
            project = "acme" if number % 10 == 0 else "globex"
            edit = annotate.build_edit(
                [f"project={project}", f"reviewed={'yes' if number % 3 else 'no'}"], []
            )
            labels.apply_edit(
                connection, finetune_pk=pks[finetune_id(number)], edit=edit, actor=Author("ana"), now=when
            )
        for number in range(0, count, 10):
            # A label changed once: the page's timeline shows it old -> new.
            edit = annotate.build_edit(["project=initech"], [])
            later = when + timedelta(hours=1)
            labels.apply_edit(
                connection, finetune_pk=pks[finetune_id(number)], edit=edit, actor=Author("bo"), now=later
            )
        notes = [
            {
                "finetune_pk": pks[finetune_id(n)],
                "text": f"checked samples of #{n}",
                "written_by": "ana",
                "written_at": when,
            }
            for n in range(0, count, 7)
        ]
        if notes:
            connection.execute(sa.insert(FinetuneNote.__table__), notes)  # type: ignore[attr-defined]
