"""`bflsync serve`: the real Datasette over the store, read-only, finetunes first, guarded; run as a subprocess."""

from __future__ import annotations

import html
import http.client
import json
import socket
import stat
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from demostore import finetune_id
from serving import Served, build_store, fetch, get_json, start
from sqlalchemy.engine import Engine
from storebuild import file_digest

from bflsync.cli import cli
from bflsync.store import access
from bflsync.web.metadata import datasette_metadata

COUNT = 72
# Updated in the last week, its project label changed from acme to initech, and it has a note.
TIMELINE_ID = finetune_id(70)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_store(tmp_path_factory.mktemp("serve") / "store.db", count=COUNT)


@pytest.fixture(scope="module")
def served(store: Path) -> Iterator[Served]:
    """One server for the module's read-only checks."""
    server = start(store, "--port", "0")
    yield server
    server.stop()


@pytest.fixture
def own_store(tmp_path: Path) -> Path:
    return build_store(tmp_path / "store.db", count=COUNT)


def cli_ids(store: Path, words: str) -> set[str]:
    result = CliRunner().invoke(
        cli,
        ["--db", str(store), "query", "--text", words, "--format", "ids", "--limit", "0"],
        catch_exceptions=False,
    )
    return set(result.stdout.split())


def web_ids(served: Served, words: str) -> set[str]:
    query = urllib.parse.urlencode({"_text": words, "_shape": "array", "_col": "finetune_id", "_size": "max"})
    return {row["finetune_id"] for row in get_json(f"{served.url}/store/finetunes.json?{query}")}


def test_port_0_announces_the_real_port_after_binding(served: Served) -> None:
    port = urllib.parse.urlsplit(served.url).port
    assert port not in (None, 0)
    assert served.url == f"http://127.0.0.1:{port}"
    assert "warning" not in served.first_line


def test_the_index_leads_with_the_live_finetunes_newest_change_first(served: Served, store: Path) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", urllib.parse.urlsplit(served.url).port, timeout=30)
    connection.request("GET", "/")
    response = connection.getresponse()
    assert (response.status, response.getheader("Location")) == (302, "/store/finetunes")
    connection.close()
    page = get_json(f"{served.url}/store/finetunes.json?_size=max&_shape=objects&_extra=facet_results")
    ids = [row["finetune_id"] for row in page["rows"]]
    assert sorted(ids) == sorted(cli_ids(store, "TOK"))  # every live finetune has the trigger word
    assert finetune_id(22) not in ids  # deleted
    changed = [row["last_changed_at"] for row in page["rows"]]
    assert changed == sorted(changed, reverse=True)
    assert set(page["facet_results"]) == {"status", "mode", "finetune_type", "account", "label_list"}
    assert list(page["rows"][0])[:8] == [
        "finetune_id",
        "finetune_comment",
        "mode",
        "finetune_type",
        "learning_rate",
        "iterations",
        "lora_rank",
        "status",
    ]


def test_bookkeeping_and_fts_tables_are_hidden_from_the_index(served: Served) -> None:
    database = get_json(f"{served.url}/store.json")
    hidden = {table["name"] for table in database["tables"] if table["hidden"]}
    visible = {table["name"] for table in database["tables"] if not table["hidden"]}
    assert {"alembic_version", "bflsync_lock", "finetune_fts", "finetune_fts_trigram"} <= hidden
    assert "store_meta" not in visible
    assert {view["name"] for view in database["views"]} >= {
        "finetunes",
        "changes",
        "status_changes",
        "labels",
    }


@pytest.mark.parametrize(
    "words", ["fox", "FOX snow", "por*", "日", "日本", "日本の", "東京", "山田 portrait", "nothing"]
)
def test_web_search_gives_the_ids_of_query_text(served: Served, store: Path, words: str) -> None:
    assert web_ids(served, words) == cli_ids(store, words)


def test_web_search_finds_cjk_substrings_of_one_two_and_three_characters(served: Served) -> None:
    expected = {finetune_id(n) for n in range(1, COUNT, 5) if n != 66}  # 日本の風景, less the deleted 66
    assert web_ids(served, "日") >= expected
    assert web_ids(served, "日本") == web_ids(served, "日本の") == web_ids(served, "本の風") == expected


def test_a_finetune_page_shows_its_parameters_and_one_timeline_newest_first(served: Served) -> None:
    status, body = fetch(f"{served.url}/-/finetunes/{TIMELINE_ID}")
    assert status == 200
    assert f"<h1>finetune {TIMELINE_ID}</h1>" in body
    timeline = body.split('id="timeline"', 1)[1].split("</ol>", 1)[0]
    assert '<code>iterations</code>: <span class="old">300</span> → <span class="new">400</span>' in timeline
    assert (
        '<code>project</code>: <span class="old">acme</span> → <span class="new">initech</span>' in timeline
    )
    assert "checked samples of #70" in timeline
    order = [
        timeline.index(text) for text in ("label project set", "updated (version 2)", "created (version 1)")
    ]
    assert order == sorted(order)
    assert "--format request" in body


def test_an_unknown_finetune_page_is_a_404(served: Served) -> None:
    status, body = fetch(f"{served.url}/-/finetunes/no-such-id")
    assert status == 404
    assert "no finetune &#39;no-such-id&#39;" in body or "no finetune 'no-such-id'" in body


def test_sql_from_the_url_is_refused_without_allow_sql(served: Served) -> None:
    for query in ({"sql": "select 1"}, {"_where": "1 = 1"}):
        status, body = fetch(f"{served.url}/store/finetunes.json?{urllib.parse.urlencode(query)}")
        assert status == 403
        assert "--allow-sql" in body


def test_the_dashboard_charts_may_run_their_own_statements(served: Served) -> None:
    status, page = fetch(f"{served.url}/-/dashboards/bflsync")
    assert status == 200
    chart_sql = page.split('"query": "', 1)[1].split('", "', 1)[0]
    statement = json.loads(f'"{chart_sql}"')
    status, _ = fetch(f"{served.url}/store.json?{urllib.parse.urlencode({'sql': statement})}")
    assert status == 200
    status, _ = fetch(f"{served.url}/store.json?{urllib.parse.urlencode({'sql': statement + ' '})}")
    assert status == 200  # whitespace is not a different statement
    status, _ = fetch(f"{served.url}/store.json?{urllib.parse.urlencode({'sql': statement + ' LIMIT 1'})}")
    assert status == 403


def test_a_host_header_other_than_the_bound_address_is_refused(served: Served) -> None:
    port = urllib.parse.urlsplit(served.url).port
    assert fetch(f"{served.url}/store/finetunes.json", host=f"attacker.example:{port}")[0] == 403
    assert fetch(f"{served.url}/store/finetunes.json", host=f"localhost:{port}")[0] == 200


def test_only_bflsync_and_the_dashboard_plugins_are_loaded(served: Served) -> None:
    plugins = {plugin["name"] for plugin in get_json(f"{served.url}/-/plugins.json")}
    assert plugins == {
        "bflsync.web.plugin",
        "datasette-dashboards",
        "datasette-leaflet",
        "datasette-render-markdown",
    }


def secret_of(store: Path) -> str:
    import sqlite3

    with sqlite3.connect(store) as connection:
        [(secret,)] = connection.execute("SELECT value FROM store_meta WHERE name = 'fingerprint_secret'")
        [(fingerprint,)] = connection.execute("SELECT key_fingerprint FROM account")
    connection.close()
    assert fingerprint
    return str(secret)


def test_the_secret_and_the_fingerprints_are_never_served_even_with_allow_sql(own_store: Path) -> None:
    secret = secret_of(own_store)
    server = start(own_store, "--port", "0", "--allow-sql")
    try:
        base = f"{server.url}/store"
        answers = {
            url: fetch(url)
            for url in (
                f"{base}.json?sql=" + urllib.parse.quote("select * from store_meta"),
                f"{base}.json?sql=" + urllib.parse.quote("select hex(value), name from store_meta"),
                f"{base}.json?sql=" + urllib.parse.quote("select key_fingerprint, * from account"),
                f"{base}.json?sql=" + urllib.parse.quote("select data from sqlite_dbpage"),
                f"{base}/store_meta.json",
                f"{base}/account.json",
                f"{base}/account",
                f"{base}/store_meta",
            )
        }
    finally:
        server.stop()
    with __import__("sqlite3").connect(own_store) as connection:
        fingerprint = connection.execute("SELECT key_fingerprint FROM account").fetchone()[0]
    connection.close()
    for url, (_, body) in answers.items():
        for hidden in (secret, fingerprint, secret.encode().hex().upper()):
            assert hidden not in body, url
    rows = json.loads(
        answers[f"{base}.json?sql=" + urllib.parse.quote("select key_fingerprint, * from account")][1]
    )
    assert rows["rows"][0][0] is None
    assert answers[f"{base}/store_meta.json"][0] == 403


def test_a_busy_port_is_one_line_and_exit_3_before_anything_else(store: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = CliRunner().invoke(cli, ["--db", str(store), "serve", "--port", str(port)])
    assert (result.exit_code, result.stdout) == (3, "")
    assert (
        result.stderr
        == f"bflsync: error: cannot serve on 127.0.0.1:{port}: the port is in use (try --port 0)\n"
    )


def test_another_host_needs_saying_so_and_prints_a_warning(store: Path) -> None:
    server = start(store, "--host", "127.0.0.2", "--port", "0")
    try:
        assert (
            "bflsync: warning: serving on 127.0.0.2: anyone who can reach this address can read the store"
            in (server.first_line)
        )
        assert fetch(f"{server.url}/-/versions.json")[0] == 200
    finally:
        server.stop()


def test_a_404_is_one_log_line(store: Path) -> None:
    server = start(store, "--port", "0")
    assert fetch(f"{server.url}/no/such/page")[0] == 404
    log = server.stop()
    mentions = [line for line in log.splitlines() if "no/such/page" in line or "Traceback" in line]
    assert len(mentions) == 1, log
    assert "404" in mentions[0]


def test_uds_serves_on_a_socket_only_its_owner_can_open(store: Path, tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    server = start(store, "--uds", str(path))
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(path))
            client.sendall(
                b"GET /store/finetunes.json?_size=1 HTTP/1.1\r\nHost: bflsync\r\nConnection: close\r\n\r\n"
            )
            answer = b""
            while chunk := client.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200")
    finally:
        server.stop()
    assert not path.exists()


def test_print_metadata_describes_the_store(store: Path) -> None:
    digest = file_digest(store)
    result = CliRunner().invoke(
        cli, ["--db", str(store), "serve", "--print-metadata"], catch_exceptions=False
    )
    assert result.exit_code == 0
    metadata = json.loads(result.stdout)
    tables = metadata["databases"]["store"]["tables"]
    assert tables["alembic_version"] == tables["bflsync_lock"] == {"hidden": True}
    finetune = tables["finetune"]
    assert (finetune["fts_table"], finetune["fts_pk"], finetune["label_column"]) == (
        "finetune_fts",
        "id",
        "finetune_id",
    )
    assert finetune["facets"] == ["mode", "finetune_type", "account", "status"]
    assert tables["finetunes"]["sort_desc"] == "last_changed_at"
    assert "<details>" in tables["finetunes"]["description_html"]
    assert set(metadata["databases"]["store"]["queries"]) == {"changes_since", "finetunes_by_learning_rate"}
    assert file_digest(store) == digest


def test_facets_follow_the_columns_the_store_has() -> None:
    columns = {
        "finetune": ["id", "finetune_id", "mode", "finetune_type", "account", "status"],
        "alembic_version": [],
    }
    metadata = datasette_metadata("x", columns)
    assert metadata["databases"]["x"]["tables"]["finetune"]["facets"] == [
        "mode",
        "finetune_type",
        "account",
        "status",
    ]


def test_serve_refuses_a_server_database_and_a_missing_store(tmp_path: Path) -> None:
    postgres = CliRunner().invoke(
        cli, ["--db", "postgresql+psycopg://u@localhost/x", "serve", "--print-metadata"]
    )
    assert (postgres.exit_code, postgres.stdout) == (2, "")
    assert "needs a SQLite store" in postgres.stderr
    missing = CliRunner().invoke(cli, ["--db", str(tmp_path / "none.db"), "serve"])
    assert missing.exit_code == 2
    assert "no bflsync store" in missing.stderr
    assert not (tmp_path / "none.db").exists()


def test_serve_without_datasette_says_how_to_install_it(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasette", None)
    result = CliRunner().invoke(cli, ["--db", str(store), "serve"])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert "pipx install '.[serve]'" in result.stderr


def test_datasette_own_search_on_the_finetune_table_still_finds_words(served: Served, store: Path) -> None:
    query = urllib.parse.urlencode(
        {
            "_search": "fox",
            "deleted_at__isnull": "1",
            "_shape": "array",
            "_col": "finetune_id",
            "_size": "max",
        }
    )
    found = {row["finetune_id"] for row in get_json(f"{served.url}/store/finetune.json?{query}")}
    assert found == cli_ids(store, "fox")


def test_a_sync_committed_while_serving_is_served_at_once(own_store: Path) -> None:
    server = start(own_store, "--port", "0")
    try:
        before = web_ids(server, "arctic")
        opened = access.open_store_for_write(access.locate_store(str(own_store)))
        write_one(opened.engine)
        opened.engine.dispose()
        assert (before, web_ids(server, "arctic")) == (set(), {"arctic-fox"})
    finally:
        server.stop()


def write_one(engine: Engine) -> None:
    from storebuild import day, write_sync

    write_sync(engine, {"arctic-fox": {"finetune_comment": "arctic fox"}}, now=day(20), tombstone=False)


def test_the_compare_page_lines_up_two_finetunes_as_compare_does(served: Served, store: Path) -> None:
    first, second = finetune_id(7), TIMELINE_ID
    status, body = fetch(f"{served.url}/-/compare?id={first}&id={second}&only_changed=1")
    assert status == 200
    cli_rows = CliRunner().invoke(
        cli,
        ["--db", str(store), "compare", first, second, "--only-changed", "--format", "json"],
        catch_exceptions=False,
    )
    fields = [row["field"] for row in json.loads(cli_rows.stdout)["rows"]]
    shown = [part.split("</code>", 1)[0] for part in body.split('<tr class="changed"><td><code>')[1:]]
    assert shown == fields


def test_the_compare_page_of_an_unknown_id_is_a_404(served: Served) -> None:
    assert fetch(f"{served.url}/-/compare?id=no-such-id")[0] == 404


def test_the_canned_queries_are_served(served: Served) -> None:
    changes = get_json(f"{served.url}/store/changes_since.json?since=2026-11-09&_shape=array&_size=max")
    assert {row["change"] for row in changes} == {"created", "updated", "deleted"}
    rates = get_json(f"{served.url}/store/finetunes_by_learning_rate.json?mode=&_shape=array")
    assert sum(row["finetunes"] for row in rates) == len(
        get_json(f"{served.url}/store/finetunes.json?_shape=array&_size=max")
    )


@pytest.mark.parametrize("name", ["team.2026.db", "my store.db", "100%~.db"])
def test_the_first_screen_links_open_whatever_the_store_file_is_named(tmp_path: Path, name: str) -> None:
    """Datasette names the database after the file's stem and tilde-encodes it in URLs (`.` is `~2E`)."""
    server = start(build_store(tmp_path / name, count=12), "--port", "0")
    try:
        with urllib.request.urlopen(server.url + "/", timeout=30) as response:  # noqa: S310 (loopback)
            first_screen, page = response.geturl(), response.read().decode()
        description = page.split('class="bflsync-search"', 1)[1].split("</details>", 1)[0]
        hrefs = [part.split('"', 1)[0] for part in description.split('<a href="')[1:]]
        answers = {href: fetch(urllib.parse.urljoin(first_screen, html.unescape(href)))[0] for href in hrefs}
    finally:
        server.stop()
    assert len(answers) == 3
    assert set(answers.values()) == {200}, answers
