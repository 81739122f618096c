"""``bflsync export`` and ``bflsync import``: real stores on both engines, real syncs against the mock."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result
from sqlalchemy.engine import Engine
from sync_support import ALPHA, BETA, GAMMA, KEY

from bflsync.audit.archive import pretty_document
from bflsync.bfl.client import BflClient
from bflsync.cli import cli
from bflsync.config import Secret
from bflsync.mock.server import MockBFL
from bflsync.store import access
from bflsync.store.check import HEAD_REVISION
from bflsync.sync.run import SyncOptions, SyncResult, run_sync

T1 = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
T2 = datetime(2026, 1, 2, 9, 0, 0, 123456, tzinfo=UTC)
T3 = datetime(2026, 1, 3, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def mock() -> Iterator[MockBFL]:
    """One mock for the module: it serves the store's history, and no test changes it afterwards."""
    statuses = {"alpha": ["Ready"], "beta": [("Pending", 0.25), ("Generating", 0.5)], "gamma": ["Failed"]}
    with MockBFL.serve(
        {"alpha": ALPHA, "beta": BETA, "gamma": GAMMA}, api_key=KEY, statuses=statuses
    ) as server:
        server.add_account("team-key", {"delta": {"mode": "style", "iterations": 100}})
        yield server


def sync_at(
    engine: Engine, mock: MockBFL, at: datetime, *, key: str = KEY, account: str = "default"
) -> SyncResult:
    async def go() -> SyncResult:
        async with BflClient(api_key=Secret(key), base_url=mock.base_url) as client:
            return await run_sync(
                engine=engine,
                client=client,
                options=SyncOptions(account=account),
                now=lambda: at,
                pid=4242,
            )

    return asyncio.run(go())


def run(db: str, *args: str) -> Result:
    result = CliRunner().invoke(cli, ["--db", db, *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def refused(db: str, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--db", db, *args])


def fill(engine: Engine, db: str, mock: MockBFL) -> None:
    """Three syncs (created, updated, deleted, statuses), another account, labels and a note."""
    sync_at(engine, mock, T1)
    mock.put("alpha", {**ALPHA, "learning_rate": 2e-5})
    mock.remove("gamma")
    sync_at(engine, mock, T2)
    sync_at(engine, mock, T3, key="team-key", account="team")
    run(db, "label", "alpha", "project=atlas", "keep=true")
    run(db, "label", "alpha", "--remove", "keep")
    run(db, "note", "alpha", "the one we ship")


READS: list[tuple[str, ...]] = [
    ("query", "--format", "json"),
    ("query", "--include-deleted", "--format", "json"),
    ("query", "--account", "team", "--format", "json"),
    ("history", "alpha"),
    ("history", "alpha", "--format", "json"),
    ("show", "alpha", "--format", "json"),
    ("show", "gamma"),
    ("compare", "alpha@1", "alpha@2", "beta"),
    ("diff", "alpha@1", "alpha@2"),
    ("runs", "--format", "json"),
    ("runs", "2"),
    ("accounts",),
    ("credits",),
    ("facets", "mode"),
]


def answers(db: str) -> dict[str, str]:
    return {" ".join(args): run(db, *args).stdout for args in READS}


def archive_files(path: Path) -> dict[str, bytes]:
    """Every file of an archive, the manifest without its export time."""
    files = {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}
    manifest = json.loads(files.pop("manifest.json"))
    manifest.pop("exported_at")
    files["manifest.json"] = json.dumps(manifest, sort_keys=True).encode()
    return files


def table_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        names = [
            "finetune",
            "finetune_version",
            "finetune_status",
            "sync_run",
            "finetune_label",
            "finetune_note",
        ]
        return {
            name: connection.exec_driver_sql(f"SELECT count(*) FROM {name}").scalar_one() for name in names
        }


@pytest.fixture(scope="module")
def built_store(tmp_path_factory: pytest.TempPathFactory, mock: MockBFL) -> Path:
    """A SQLite store filled by real syncs and edits, built once; tests read copies of it."""
    path = tmp_path_factory.mktemp("built") / "source.db"
    opened = access.open_store_for_write(access.locate_store(str(path)))
    try:
        fill(opened.engine, str(path), mock)
    finally:
        opened.engine.dispose()
    return path


@pytest.fixture
def source_store(built_store: Path, tmp_path: Path) -> str:
    """This test's own copy of the built store (the online backup API: the file is in WAL mode)."""
    path = tmp_path / "source.db"
    source = sqlite3.connect(built_store)
    target = sqlite3.connect(path)
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()
    return str(path)


@pytest.fixture(scope="module")
def built_archive(built_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("archives") / "archive"
    run(str(built_store), "export", str(path))
    return path


def test_sqlite_to_postgresql_to_sqlite_answers_every_read_as_the_original(
    source_store: str, pg_url: str, tmp_path: Path
) -> None:
    back = str(tmp_path / "back.db")
    run(source_store, "export", "--include-key-fingerprints", str(tmp_path / "a1"))
    run(pg_url, "import", str(tmp_path / "a1"))
    run(pg_url, "export", "--include-key-fingerprints", str(tmp_path / "a2"))
    run(back, "import", str(tmp_path / "a2"))

    original = answers(source_store)
    assert answers(pg_url) == original
    assert answers(back) == original
    assert archive_files(tmp_path / "a2") == archive_files(tmp_path / "a1")


def test_every_imported_store_verifies_against_the_checkpoint_the_export_carries(
    source_store: str, pg_url: str, tmp_path: Path
) -> None:
    run(source_store, "export", str(tmp_path / "a1"))
    checkpoint = tmp_path / "exported.checkpoint"
    checkpoint.write_text(json.loads((tmp_path / "a1" / "manifest.json").read_text())["checkpoint"])
    run(pg_url, "import", str(tmp_path / "a1"))
    run(pg_url, "export", str(tmp_path / "a2"))
    back = str(tmp_path / "back.db")
    run(back, "import", str(tmp_path / "a2"))

    for store in (source_store, pg_url, back):
        verified = run(store, "audit", "verify", "--checkpoint", str(checkpoint))
        assert verified.stdout.startswith("ok: "), (store, verified.stdout)
        assert "extends the checkpoint" in verified.stdout


def test_split_layout_round_trips_through_postgresql(source_store: str, pg_url: str, tmp_path: Path) -> None:
    run(source_store, "export", "--split", "--include-key-fingerprints", str(tmp_path / "git"))
    run(pg_url, "import", str(tmp_path / "git"))
    run(pg_url, "export", "--split", "--include-key-fingerprints", str(tmp_path / "again"))

    assert answers(pg_url) == answers(source_store)
    assert archive_files(tmp_path / "again") == archive_files(tmp_path / "git")


def test_split_layout_is_one_sorted_pretty_file_per_finetune(source_store: str, tmp_path: Path) -> None:
    run(source_store, "export", "--split", str(tmp_path / "git"))

    # Keys follow the order in which the first sync's concurrent fetches finished: match by id.
    connection = sqlite3.connect(source_store)
    keys = dict(connection.execute("SELECT finetune_id, id FROM finetune").fetchall())
    connection.close()
    files = sorted(p.name for p in (tmp_path / "git" / "finetunes").iterdir())
    assert files == sorted(f"{pk}-{finetune_id}.json" for finetune_id, pk in keys.items())
    text = (tmp_path / "git" / "finetunes" / f"{keys['alpha']}-alpha.json").read_text(encoding="utf-8")
    document = json.loads(text)
    assert text == json.dumps(document, sort_keys=True, ensure_ascii=False, indent=2) + "\n"
    assert [v["version"] for v in document["finetune_version"]] == [1, 2]
    assert [n["text"] for n in document["finetune_note"]] == ["the one we ship"]
    assert not (tmp_path / "git" / "finetune_version.jsonl").exists()
    assert (tmp_path / "git" / "sync_run.jsonl").read_text(encoding="utf-8").count("\n") == 3


def test_export_keeps_every_column_and_the_raw_details_as_stored(source_store: str, tmp_path: Path) -> None:
    run(source_store, "export", str(tmp_path / "a"))
    connection = sqlite3.connect(source_store)
    connection.row_factory = sqlite3.Row
    stored = [dict(row) for row in connection.execute("SELECT * FROM finetune_version ORDER BY id")]
    connection.close()

    lines = (tmp_path / "a" / "finetune_version.jsonl").read_text(encoding="utf-8").splitlines()
    exported = [json.loads(line) for line in lines]
    assert [sorted(row) for row in exported] == [sorted(row) for row in stored]
    assert [row["details"] for row in exported] == [row["details"] for row in stored]
    assert [row["id"] for row in exported] == [row["id"] for row in stored]


def test_export_writes_times_in_the_one_form_the_store_holds_and_prints(
    source_store: str, tmp_path: Path
) -> None:
    run(source_store, "export", str(tmp_path / "a"))
    with closing(sqlite3.connect(source_store)) as connection:
        stored = [
            row[0] for row in connection.execute("SELECT observed_at FROM finetune_version ORDER BY id")
        ]
    lines = (tmp_path / "a" / "finetune_version.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["observed_at"] for line in lines] == stored
    assert stored[3] == "2026-01-02T09:00:00.123456Z"
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["exported_at"].endswith("Z")


def test_export_leaves_out_key_fingerprints_and_their_secret_unless_asked(
    source_store: str, tmp_path: Path
) -> None:
    run(source_store, "export", str(tmp_path / "plain"))
    run(source_store, "export", "--include-key-fingerprints", str(tmp_path / "keys"))

    plain = [json.loads(line) for line in (tmp_path / "plain" / "account.jsonl").read_text().splitlines()]
    keys = [json.loads(line) for line in (tmp_path / "keys" / "account.jsonl").read_text().splitlines()]
    assert [row["key_fingerprint"] for row in plain] == [None, None]
    assert all(len(row["key_fingerprint"]) == 16 for row in keys)
    plain_meta = [
        json.loads(line)["name"]
        for line in (tmp_path / "plain" / "store_meta.jsonl").read_text().splitlines()
    ]
    assert plain_meta == ["chain_origin"]
    assert "fingerprint_secret" in (tmp_path / "keys" / "store_meta.jsonl").read_text()
    assert json.loads((tmp_path / "plain" / "manifest.json").read_text())["key_fingerprints"] == "omitted"


def test_imported_fingerprints_and_secret_recognise_the_same_key(
    source_store: str, tmp_path: Path, mock: MockBFL
) -> None:
    target = str(tmp_path / "target.db")
    run(source_store, "export", "--include-key-fingerprints", str(tmp_path / "a"))
    run(target, "import", str(tmp_path / "a"))

    result = CliRunner().invoke(
        cli, ["--db", target, "sync", "--base-url", mock.base_url, "--json"], env={"BFL_API_KEY": KEY}
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["key_changed"] is False
    assert json.loads(result.stdout)["run_id"] == 4  # after the imported runs: the ids go on


def test_account_export_holds_only_that_accounts_rows(source_store: str, tmp_path: Path) -> None:
    run(source_store, "export", "--account", "team", str(tmp_path / "team"))
    target = str(tmp_path / "team.db")
    run(target, "import", str(tmp_path / "team"))

    manifest = json.loads((tmp_path / "team" / "manifest.json").read_text())
    assert manifest["accounts"] == ["team"]
    assert {name: spec["rows"] for name, spec in manifest["tables"].items() if spec["rows"]} == {
        "account": 1,
        "finetune": 1,
        "finetune_status": 1,
        "finetune_version": 1,
        "store_meta": 1,
        "sync_run": 1,
    }
    assert [row["finetune_id"] for row in json.loads(run(target, "query", "--format", "json").stdout)] == [
        "delta"
    ]


def test_an_imported_account_archive_starts_a_chain_of_its_own_that_verifies(
    source_store: str, any_store: tuple[str, Engine], tmp_path: Path
) -> None:
    db, _ = any_store
    run(source_store, "export", "--account", "team", str(tmp_path / "team"))
    exported = json.loads((tmp_path / "team" / "manifest.json").read_text())["checkpoint"]
    run(db, "import", str(tmp_path / "team"))

    verified = CliRunner().invoke(cli, ["--db", db, "audit", "verify"])
    checkpoint = run(db, "audit", "checkpoint").stdout

    assert (verified.exit_code, verified.stderr) == (0, "")
    assert verified.stdout.startswith("ok: 3 rows in the hash chain, ")
    assert checkpoint.split("\n")[1] == "3"
    assert checkpoint.split("\n")[0] != exported.split("\n")[0]


def test_export_refuses_a_destination_that_is_not_empty(source_store: str, tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")

    result = refused(source_store, "export", str(tmp_path / "full"))

    assert result.exit_code == 2
    assert (
        result.stderr
        == f"bflsync: error: {tmp_path / 'full'} is not empty: export into a new or empty directory\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir() if "partial" in p.name) == []


@pytest.fixture
def archive(built_archive: Path, tmp_path: Path) -> Path:
    """This test's own copy of an archive of the built store, free to damage."""
    return Path(shutil.copytree(built_archive, tmp_path / "archive"))


def damage_hash(archive: Path) -> None:
    path = archive / "finetune.jsonl"
    path.write_text(path.read_text(encoding="utf-8").replace("TOK", "XYZ"), encoding="utf-8")


def damage_missing(archive: Path) -> None:
    (archive / "finetune_version.jsonl").unlink()


def rewrite_manifest(archive: Path, change: Any) -> None:
    manifest = json.loads((archive / "manifest.json").read_text())
    change(manifest)
    (archive / "manifest.json").write_text(json.dumps(manifest))


def damage_truncated(archive: Path) -> None:
    """A file cut mid-line whose manifest was made to match: only reading the line can tell."""
    import hashlib

    path = archive / "finetune_status.jsonl"
    data = path.read_bytes()[:-20]
    path.write_bytes(data)

    def match(manifest: dict[str, Any]) -> None:
        manifest["files"]["finetune_status.jsonl"]["sha256"] = hashlib.sha256(data).hexdigest()

    rewrite_manifest(archive, match)


def damage_revision(archive: Path) -> None:
    rewrite_manifest(archive, lambda manifest: manifest.update(schema_revision="0008_labels"))


def damage_count(archive: Path) -> None:
    rewrite_manifest(archive, lambda manifest: manifest["tables"]["finetune_version"].update(rows=99))


def damage_no_manifest(archive: Path) -> None:
    (archive / "manifest.json").unlink()


def rehash(archive: Path, name: str) -> None:
    """Make the manifest match a changed file, as whoever changed it could."""
    import hashlib

    data = (archive / name).read_bytes()

    def match(manifest: dict[str, Any]) -> None:
        manifest["files"][name].update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))

    rewrite_manifest(archive, match)


def damage_history(archive: Path) -> None:
    """A version's time moved, and the manifest's SHA-256 made to match: only the chain can tell."""
    path = archive / "finetune_version.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    first = json.loads(lines[0])
    first["observed_at"] = "2025-12-31T09:00:00.000000+00:00"
    lines[0] = json.dumps(first, sort_keys=True, ensure_ascii=False, separators=(",", ":")) + "\n"
    path.write_text("".join(lines), encoding="utf-8")
    rehash(archive, "finetune_version.jsonl")


def damage_checkpoint(archive: Path) -> None:
    def other_head(manifest: dict[str, Any]) -> None:
        origin, size, _ = manifest["checkpoint"].split("\n", 2)
        manifest["checkpoint"] = f"{origin}\n{size}\n{'A' * 43}=\n"

    rewrite_manifest(archive, other_head)


def damage_history_without_checkpoint(archive: Path) -> None:
    """The edited history of :func:`damage_history`, and the checkpoint that would catch it removed."""
    damage_history(archive)
    rewrite_manifest(archive, lambda manifest: manifest.update(checkpoint=None))


def damage_history_claiming_accounts(archive: Path) -> None:
    """The edited history, in a manifest claiming an --account archive (whose partial chain is not
    checked) while it holds the whole chain."""
    damage_history(archive)
    rewrite_manifest(archive, lambda manifest: manifest.update(accounts=["default", "team"]))


def damage_row_value(column: str, value: Any) -> Any:
    """A finetune row whose ``column`` holds ``value``, a JSON value no store column holds."""

    def damage(archive: Path) -> None:
        path = archive / "finetune.jsonl"
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        first = json.loads(lines[0])
        first[column] = value
        lines[0] = json.dumps(first, sort_keys=True, ensure_ascii=False, separators=(",", ":")) + "\n"
        path.write_text("".join(lines), encoding="utf-8")
        rehash(archive, "finetune.jsonl")

    return damage


def damage_manifest_columns(archive: Path) -> None:
    rewrite_manifest(archive, lambda manifest: manifest["tables"]["finetune"].update(columns=[1, "id"]))


def damage_manifest_accounts(archive: Path) -> None:
    rewrite_manifest(archive, lambda manifest: manifest.update(accounts=5))


DEEP = "[" * 200_000 + "]" * 200_000


def damage_deep_manifest(archive: Path) -> None:
    (archive / "manifest.json").write_text(DEEP)


def damage_deep_line(archive: Path) -> None:
    (archive / "finetune.jsonl").write_text(DEEP + "\n")
    rehash(archive, "finetune.jsonl")


def damage_symlink(archive: Path) -> None:
    """A table file that is a link: its target (any file the importer can read) would be loaded."""
    outside = archive.parent / "outside.jsonl"
    (archive / "finetune.jsonl").rename(outside)
    (archive / "finetune.jsonl").symlink_to(outside)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (damage_hash, "finetune.jsonl does not match the SHA-256 in the manifest: the archive was changed"),
        (damage_missing, "the archive is missing finetune_version.jsonl, which its manifest lists"),
        (damage_truncated, "finetune_status.jsonl: line 5 is truncated"),
        (
            damage_revision,
            f"the archive has schema revision 0008_labels, this bflsync imports {HEAD_REVISION} only: "
            "import it with the bflsync that exported it",
        ),
        (damage_count, "finetune_version: the archive holds 6 rows, its manifest says 99"),
        (damage_no_manifest, "has no manifest.json: not a bflsync archive"),
        (
            damage_history,
            "the archive's history does not verify against its manifest's checkpoint:"
            " finetune_version row 1 (place 1) was edited",
        ),
        (
            damage_checkpoint,
            "the archive's history does not verify against its manifest's checkpoint: the chain's first",
        ),
        (damage_symlink, "finetune.jsonl is a symbolic link: an archive holds none (it could name any file)"),
        (damage_history_without_checkpoint, "manifest.json: 'checkpoint' is not a checkpoint"),
        (
            damage_history_claiming_accounts,
            "the archive's history does not verify against its manifest's checkpoint:"
            " finetune_version row 1 (place 1) was edited",
        ),
        (damage_row_value("details", {"mode": "style"}), "finetune.jsonl: line 1: details is not text"),
        (damage_row_value("source", ["x"]), "finetune.jsonl: line 1: source is not text"),
        (damage_row_value("version", 10**30), "finetune.jsonl: line 1: version is not a 64-bit integer"),
        (damage_row_value("id", "one"), "finetune.jsonl: line 1: id is not a 64-bit integer"),
        (damage_manifest_columns, "manifest.json: 'tables' is not {name: {rows, columns}}"),
        (damage_manifest_accounts, "manifest.json: 'accounts' is not null or a list of account names"),
        (damage_deep_manifest, "manifest.json is not valid JSON (it nests too deeply)"),
        (damage_deep_line, "finetune.jsonl: line 1 is not JSON"),
    ],
    ids=[
        "bad-hash",
        "missing-file",
        "truncated-line",
        "wrong-revision",
        "wrong-count",
        "no-manifest",
        "edited-history",
        "other-checkpoint",
        "symlink",
        "edited-history-no-checkpoint",
        "edited-history-claiming-accounts",
        "details-not-text",
        "source-not-text",
        "integer-out-of-range",
        "id-not-integer",
        "manifest-columns-not-names",
        "manifest-accounts-not-names",
        "deep-manifest",
        "deep-line",
    ],
)
def test_a_damaged_archive_is_refused_in_one_line_and_nothing_is_written(
    archive: Path, any_store: tuple[str, Engine], damage: Any, message: str
) -> None:
    db, engine = any_store
    damage(archive)

    result = refused(db, "import", str(archive))

    assert result.exit_code == 2
    assert result.stderr.startswith("bflsync: error: ")
    assert result.stderr.count("\n") == 1
    assert message in result.stderr
    assert set(table_counts(engine).values()) == {0}


def test_import_refuses_a_store_that_is_not_empty(
    archive: Path, any_store: tuple[str, Engine], tmp_path: Path
) -> None:
    db, engine = any_store
    run(db, "import", str(archive))
    before = table_counts(engine)

    result = refused(db, "import", str(archive))

    assert result.exit_code == 2
    assert result.stderr == (
        "bflsync: error: the store is not empty (finetune has rows): import into a new store (a new --db)\n"
    )
    assert table_counts(engine) == before


def test_import_creates_a_missing_store_and_its_ids_go_on_after_the_imported_ones(
    archive: Path, store_db: str, mock: MockBFL
) -> None:
    run(store_db, "import", str(archive))

    result = CliRunner().invoke(
        cli, ["--db", store_db, "sync", "--base-url", mock.base_url, "--json"], env={"BFL_API_KEY": KEY}
    )

    assert result.exit_code == 0, result.output
    engine = sa.create_engine(access.locate_store(store_db).url)
    try:
        with engine.connect() as connection:
            runs = [row[0] for row in connection.exec_driver_sql("SELECT id FROM sync_run ORDER BY id")]
    finally:
        engine.dispose()
    assert runs == [1, 2, 3, 4]
    assert json.loads(result.stdout)["run_id"] == 4


def test_import_refuses_a_directory_without_an_archive(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()

    result = refused(str(tmp_path / "s.db"), "import", str(tmp_path / "empty"))

    assert result.exit_code == 2
    assert (
        result.stderr == f"bflsync: error: {tmp_path / 'empty'} has no manifest.json: not a bflsync archive\n"
    )
    assert not (tmp_path / "s.db").exists()


def test_export_of_a_missing_store_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    result = refused(str(tmp_path / "none.db"), "export", str(tmp_path / "out"))

    assert result.exit_code == 2
    assert result.stderr.startswith("bflsync: error: no bflsync store at ")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_split_file_names_keep_ids_readable_and_file_safe(tmp_path: Path) -> None:
    with MockBFL.serve(
        {"acme-labs/brand v2": {"mode": "style"}, "日本": {"mode": "style"}}, api_key=KEY
    ) as mock:
        db = str(tmp_path / "s.db")
        result = CliRunner().invoke(
            cli, ["--db", db, "sync", "--base-url", mock.base_url], env={"BFL_API_KEY": KEY}
        )
        assert result.exit_code == 0, result.output
    run(db, "export", "--split", str(tmp_path / "git"))

    names = sorted(p.name.split("-", 1)[1] for p in (tmp_path / "git" / "finetunes").iterdir())
    assert names == ["__.json", "acme-labs_brand_v2.json"]


@pytest.mark.parametrize(
    "document",
    [
        {
            "finetune": {
                "a": 1,
                "b": 'x\n"é\u2028',
                "c": None,
                "d": 1.5e-05,
                "e": True,
                "f": -0.0,
                "g": 10**20,
            },
            "finetune_version": [{"z": 1}, {"y": "日本"}],
            "finetune_note": [],
            "finetune_label": [{}],
        },
        {"finetune": {}, "x": []},
        {},
    ],
)
def test_a_finetune_file_is_written_exactly_as_json_indents_it(document: dict[str, Any]) -> None:
    assert (
        pretty_document(document) == json.dumps(document, sort_keys=True, ensure_ascii=False, indent=2) + "\n"
    )


def test_a_manifest_that_is_a_fifo_is_refused_without_waiting_for_a_writer(
    archive: Path, tmp_path: Path
) -> None:
    (archive / "manifest.json").unlink()
    os.mkfifo(archive / "manifest.json")

    result = subprocess.run(
        [sys.executable, "-m", "bflsync", "--db", str(tmp_path / "s.db"), "import", str(archive)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 2
    assert result.stderr == "bflsync: error: manifest.json is not a regular file: not a bflsync archive\n"
    assert not (tmp_path / "s.db").exists()


def test_a_split_finetune_file_with_an_id_that_is_not_an_integer_is_refused(
    source_store: str, any_store: tuple[str, Engine], tmp_path: Path
) -> None:
    db, engine = any_store
    run(source_store, "export", "--split", str(tmp_path / "git"))
    first = sorted((tmp_path / "git" / "finetunes").iterdir())[0]
    document = json.loads(first.read_text(encoding="utf-8"))
    document["finetune"]["id"] = "one"
    first.write_text(pretty_document(document), encoding="utf-8")
    rehash(tmp_path / "git", f"finetunes/{first.name}")

    result = refused(db, "import", str(tmp_path / "git"))

    assert result.exit_code == 2
    assert result.stderr == (
        f"bflsync: error: finetunes/{first.name}: finetune: id is not a 64-bit integer\n"
    )
    assert set(table_counts(engine).values()) == {0}
