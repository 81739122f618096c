"""`bflsync serve` under hostile requests: SQL that reaches outside the store, other methods, odd Host
headers, odd finetune ids, odd ``--uds`` paths; each refused in one line, never a 500 or a traceback."""

from __future__ import annotations

import html
import json
import os
import shlex
import socket
import sqlite3
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import SCRUBBED_ENV
from datasette.utils import tilde_encode
from serving import Served, build_store, fetch, start
from storebuild import day, write_sync

from bflsync.cli import cli
from bflsync.config import MAX_ANSWER_BYTES
from bflsync.store import access
from bflsync.web import guard, server

COUNT = 12
SCRIPT = "<script>alert(1)</script>"
HOSTILE_IDS = (
    "a/b",
    "a%2Fb",
    "..",
    ".",
    SCRIPT,
    "\"quoted\" 'single'",
    "日本-ñ-é",
    "a~2Fb",
    "plus+and space",
    "q?x=1#frag",
    "x" * 10_000,
    "x; touch pwned",
    "--db=/tmp/other.db",
)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The generated store plus one finetune for each hostile id."""
    path = build_store(tmp_path_factory.mktemp("guards") / "store.db", count=COUNT)
    opened = access.open_store_for_write(access.locate_store(str(path)))
    payloads = {finetune_id: {"finetune_comment": f"hostile {SCRIPT}"} for finetune_id in HOSTILE_IDS}
    write_sync(opened.engine, payloads, now=day(20), tombstone=False)
    opened.engine.dispose()
    return path


@pytest.fixture(scope="module")
def served(store: Path) -> Iterator[Served]:
    server = start(store, "--port", "0", "--allow-sql")
    yield server
    server.stop()


def port_of(served: Served) -> int:
    port = urllib.parse.urlsplit(served.url).port
    assert port is not None
    return port


def raw_request(port: int, request: bytes, *, address: str = "127.0.0.1") -> bytes:
    """Send ``request`` as is on a fresh connection and read the whole answer."""
    with socket.create_connection((address, port), timeout=30) as client:
        client.sendall(request)
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
    return answer


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def get(port: int, target: str, *, host: str | None = None, method: str = "GET") -> bytes:
    header = f"Host: {host if host is not None else f'127.0.0.1:{port}'}\r\n"
    return raw_request(port, f"{method} {target} HTTP/1.1\r\n{header}Connection: close\r\n\r\n".encode())


def request_lines(log: str, path: str) -> list[str]:
    return [line for line in log.splitlines() if path in line]


def secrets_of(store: Path) -> tuple[str, str]:
    connection = sqlite3.connect(store)
    try:
        [(secret,)] = connection.execute("SELECT value FROM store_meta WHERE name = 'fingerprint_secret'")
        [(fingerprint,)] = connection.execute("SELECT key_fingerprint FROM account")
    finally:
        connection.close()
    assert secret and fingerprint
    return str(secret), str(fingerprint)


OUTSIDE_CALLS = (
    "fts3_tokenizer('simple')",
    "FTS3_Tokenizer('simple', x'0000000000000000')",
    "load_extension('/tmp/bflsync-nothing.so')",
)
# Not in Python's SQLite; an extension may bring them, so they are refused by name.
FILE_FUNCTIONS = ("readfile", "writefile", "edit")


@pytest.mark.parametrize("call", OUTSIDE_CALLS)
def test_the_authorizer_refuses_functions_that_reach_outside_the_database(call: str) -> None:
    connection = sqlite3.connect(":memory:")
    connection.set_authorizer(guard.authorize)
    try:
        with pytest.raises(sqlite3.DatabaseError, match="not authorized"):
            connection.execute(f"SELECT {call}")
    finally:
        connection.close()


@pytest.mark.parametrize("name", FILE_FUNCTIONS)
def test_the_authorizer_refuses_file_functions_an_extension_could_bring(name: str) -> None:
    connection = sqlite3.connect(":memory:")
    connection.create_function(name, -1, lambda *arguments: "read")
    connection.set_authorizer(guard.authorize)
    try:
        with pytest.raises(sqlite3.DatabaseError, match="not authorized"):
            connection.execute(f"SELECT {name}('/etc/passwd')")
    finally:
        connection.close()


def test_the_authorizer_refuses_attaching_another_file(tmp_path: Path) -> None:
    connection = sqlite3.connect(":memory:")
    connection.set_authorizer(guard.authorize)
    try:
        with pytest.raises(sqlite3.DatabaseError, match="not authorized"):
            connection.execute("ATTACH DATABASE ? AS other", (str(tmp_path / "other.db"),))
    finally:
        connection.close()
    assert not (tmp_path / "other.db").exists()


@pytest.mark.parametrize("parameter", ["sql", "_where"])
def test_allow_sql_still_refuses_fts3_tokenizer_from_the_url(served: Served, parameter: str) -> None:
    expression = "fts3_tokenizer('simple')"
    query = {"sql": f"select {expression}"} if parameter == "sql" else {"_where": f"{expression} is not null"}
    page = "/store.json" if parameter == "sql" else "/store/finetune.json"
    status, body = fetch(f"{served.url}{page}?{urllib.parse.urlencode(query)}")
    assert status == 400
    assert "not authorized" in body


@pytest.mark.parametrize(
    "expression", ["printf('%.*c', {size}, 'x')", "randomblob({size})", "zeroblob({size})"]
)
def test_allow_sql_cannot_build_a_value_larger_than_the_cap(served: Served, expression: str) -> None:
    """One such call is one step of SQLite's program: the time limit cannot stop it, the cap does
    (SQLite refuses the blobs and gives NULL for a printf() that outgrows it)."""
    sql = f"select length({expression.format(size=guard.MAX_VALUE_BYTES + 1)})"
    query = urllib.parse.urlencode({"sql": sql, "_shape": "arrayfirst"})
    status, body = fetch(f"{served.url}/store.json?{query}")
    refused = status == 400 and "string or blob too big" in body
    assert refused or (status, json.loads(body)) == (200, [None])


def test_allow_sql_reads_a_stored_value_of_the_largest_answer_a_sync_keeps(tmp_path: Path) -> None:
    store = build_store(tmp_path / "store.db", count=1)
    opened = access.open_store_for_write(access.locate_store(str(store)))
    comment = "x" * MAX_ANSWER_BYTES
    write_sync(opened.engine, {"huge": {"finetune_comment": comment}}, now=day(20), tombstone=False)
    opened.engine.dispose()
    server = start(store, "--port", "0", "--allow-sql")
    try:
        sql = f"select length(details) > {MAX_ANSWER_BYTES} from finetune where finetune_id = 'huge'"
        query = urllib.parse.urlencode({"sql": sql, "_shape": "arrayfirst"})
        status, body = fetch(f"{server.url}/store.json?{query}")
    finally:
        server.stop()
    assert (status, json.loads(body)) == (200, [1])


def test_the_secrets_are_unreachable_whatever_the_url(store: Path) -> None:
    secret, fingerprint = secrets_of(store)
    server = start(store, "--port", "0", "--allow-sql")
    sql = {
        "select * from store_meta",
        "select group_concat(value) from store_meta",
        "with s as (select * from store_meta) select * from s",
        "select (select value from store_meta limit 1) as v",
        "select key_fingerprint from account",
        "select name from store_meta where value like '_%'",
    }
    try:
        urls = [f"{server.url}/store.json?" + urllib.parse.urlencode({"sql": text}) for text in sql]
        urls += [f"{server.url}/store.csv?" + urllib.parse.urlencode({"sql": text}) for text in sql]
        urls += [
            f"{server.url}/store/account.json?_facet=key_fingerprint",
            f"{server.url}/store/account.json?_facet_array=key_fingerprint",
            f"{server.url}/store/account.csv?_facet=key_fingerprint&_size=max",
            f"{server.url}/store/account.json?_where=" + urllib.parse.quote("key_fingerprint is not null"),
            f"{server.url}/store/account.json?key_fingerprint__notblank=1",
            f"{server.url}/store/account/1.json",
            f"{server.url}/store/store_meta.csv",
            f"{server.url}/store/store_meta/fingerprint_secret.json",
            f"{server.url}/store/changes_since.csv?since=",
            f"{server.url}/store.db",
            f"{server.url}/-/metadata.json",
            f"{server.url}/-/databases.json",
            f"{server.url}/-/settings.json",
            f"{server.url}/-/config.json",
            f"{server.url}/-/threads.json",
            f"{server.url}/-/actor.json",
        ]
        answers = {url: fetch(url) for url in urls}
        rows = fetch(
            f"{server.url}/store.json?"
            + urllib.parse.urlencode({"sql": "select name, value from store_meta"})
        )
    finally:
        server.stop()
    for url, (_, body) in answers.items():
        for hidden in (secret, fingerprint):
            assert hidden not in body, url
    assert rows[0] == 200
    read = json.loads(rows[1])["rows"]
    assert read and all(value is None for row in read for value in row)  # the rows are there, as NULL


OTHER_METHODS = (
    ("POST", "/store/finetune"),
    ("POST", "/store/finetunes.json"),
    ("POST", "/-/permissions"),
    ("POST", "/store/changes_since"),
    ("PUT", "/store/finetune.json"),
    ("DELETE", "/store/finetune/1"),
    ("PATCH", "/-/finetunes/abc"),
    ("OPTIONS", "/store"),
)
BAD_QUERIES = (
    {"_facet": "no_such_column"},
    {"_facet_array": "no_such_column"},
    {"_facet_date": "no_such_column"},
    {"_where": "syntax error (("},
    {"_where": "no_such_column = 1"},
    {"_sort": "no_such_column"},
)


def bad_query_target(query: dict[str, str]) -> str:
    return "/store/finetune.json?" + urllib.parse.urlencode(query)


@pytest.fixture(scope="module")
def refused_log(store: Path) -> tuple[dict[str, bytes], str]:
    """The answers to every other method and every bad facet or filter, and the server's whole log."""
    server = start(store, "--port", "0", "--allow-sql")
    try:
        port = port_of(server)
        answers = {f"{method} {target}": get(port, target, method=method) for method, target in OTHER_METHODS}
        answers |= {
            f"GET {bad_query_target(query)}": get(port, bad_query_target(query)) for query in BAD_QUERIES
        }
    finally:
        log = server.stop()
    return answers, log


@pytest.mark.parametrize(("method", "target"), OTHER_METHODS)
def test_methods_other_than_get_and_head_are_405_in_one_log_line(
    refused_log: tuple[dict[str, bytes], str], method: str, target: str
) -> None:
    answers, log = refused_log
    answer = answers[f"{method} {target}"]
    assert status_of(answer) == 405
    assert b"\r\nallow: get, head\r\n" in answer.split(b"\r\n\r\n", 1)[0].lower()
    assert len(request_lines(log, f"{method} {target} ")) == 1, log


def test_head_is_still_answered(served: Served) -> None:
    assert status_of(get(port_of(served), "/store/finetunes", method="HEAD")) == 200


@pytest.mark.parametrize("query", BAD_QUERIES)
def test_a_bad_facet_or_filter_is_a_400_in_one_log_line(
    refused_log: tuple[dict[str, bytes], str], query: dict[str, str]
) -> None:
    answers, log = refused_log
    target = bad_query_target(query)
    assert status_of(answers[f"GET {target}"]) == 400
    assert len(request_lines(log, f"GET {target} ")) == 1, log


def test_bad_facets_and_filters_leave_only_access_lines_in_the_log(
    refused_log: tuple[dict[str, bytes], str],
) -> None:
    _, log = refused_log
    others = [line for line in log.splitlines() if not line.startswith("INFO:")]
    assert others == []
    assert len([line for line in log.splitlines() if "HTTP/1.1" in line]) == len(OTHER_METHODS) + len(
        BAD_QUERIES
    )


def test_hosts_allowed_on_a_wildcard_address_are_this_machines_own(store: Path) -> None:
    server = start(store, "--host", "0.0.0.0", "--port", "0")  # noqa: S104 (the behaviour under test)
    port = port_of(server)
    own = {
        str(info[4][0])
        for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
        if not str(info[4][0]).startswith("127.")
    } or {"127.0.0.2"}
    accepted = ["localhost", "LOCALHOST", "127.0.0.1", "127.0.0.2", *sorted(own)]
    refused = [
        "attacker.example",
        "localhost.attacker.example",
        "127.0.0.1.nip.io",
        "8.8.8.8",
        "192.0.2.1",
        "0x7f000001",
        "2130706433",
        "127.1",
    ]
    try:
        answers = {name: status_of(get(port, "/-/versions.json", host=f"{name}:{port}")) for name in accepted}
        answers |= {name: status_of(get(port, "/-/versions.json", host=f"{name}:{port}")) for name in refused}
        wrong_port = status_of(get(port, "/-/versions.json", host=f"127.0.0.1:{port + 1}"))
        no_port = status_of(get(port, "/-/versions.json", host="127.0.0.1"))
    finally:
        server.stop()
    assert {name: answers[name] for name in accepted} == dict.fromkeys(accepted, 200)
    assert {name: answers[name] for name in refused} == dict.fromkeys(refused, 403)
    assert (wrong_port, no_port) == (403, 403)


@pytest.mark.parametrize(
    "host",
    [
        "",
        "attacker.example:{port}",
        "127.0.0.1.attacker.example:{port}",
        "localhost.:{port}",
        "127.0.0.1:{port}@attacker.example",
        "[::1]:{port}",
        "127.0.0.1",
    ],
)
def test_dns_rebinding_host_values_are_refused_on_loopback(served: Served, host: str) -> None:
    port = port_of(served)
    assert status_of(get(port, "/store/finetunes.json", host=host.format(port=port))) in (400, 403)


def test_a_request_without_host_is_refused(served: Served) -> None:
    answer = raw_request(port_of(served), b"GET /store/finetunes.json HTTP/1.0\r\n\r\n")
    assert status_of(answer) in (400, 403)


@pytest.mark.parametrize(
    ("bound", "port", "header", "allowed"),
    [
        ("127.0.0.1", 80, "127.0.0.1", True),
        ("127.0.0.1", 80, "localhost", True),
        ("127.0.0.1", 80, "127.0.0.1:80", True),
        ("127.0.0.1", 8001, "127.0.0.1", False),
        ("127.0.0.1", 80, "attacker.example", False),
        ("0.0.0.0", 80, "localhost", True),  # noqa: S104 (the behaviour under test)
        ("0.0.0.0", 80, "127.0.0.1", True),  # noqa: S104
        ("0.0.0.0", 80, "192.0.2.1", False),  # noqa: S104
        ("0.0.0.0", 8001, "attacker.example:8001", False),  # noqa: S104
    ],
)
def test_host_guard_on_port_80_takes_a_host_without_port(
    bound: str, port: int, header: str, allowed: bool
) -> None:
    hosts = guard.allowed_hosts(bound, port)
    wildcard = bound == "0.0.0.0"  # noqa: S104
    assert guard.host_allowed(header, hosts, port=port, wildcard=wildcard) is allowed


def finetune_target(finetune_id: str) -> str:
    """A finetune page's path as the pages link it: tilde-encoded, as Datasette encodes names."""
    return "/-/finetunes/" + tilde_encode(finetune_id)


def followed(port: int, page: str, href: str) -> str:
    """The page a browser opens for ``href`` on ``page``: dot segments resolved, as browsers do."""
    target = urllib.parse.urljoin(f"http://127.0.0.1:{port}{page}", html.unescape(href))
    answer = get(port, target.split(str(port), 1)[1])
    assert status_of(answer) == 200, href
    return answer.decode()


def heading(page: str) -> str:
    return html.unescape(page.split("<h1>finetune ", 1)[1].split("</h1>", 1)[0])


def test_the_finetunes_table_links_every_hostile_id_to_its_page(served: Served) -> None:
    port = port_of(served)
    page = "/store/finetunes?_size=max&finetune_comment__startswith=hostile"
    hrefs = get(port, page).decode().split('<a href="/-/finetunes/')[1:]
    opened = {heading(followed(port, page, "/-/finetunes/" + href.split('"', 1)[0])) for href in hrefs}
    assert opened == set(HOSTILE_IDS)


def test_the_compare_page_links_every_hostile_id_to_its_page(served: Served) -> None:
    port = port_of(served)
    page = "/-/compare?" + urllib.parse.urlencode([("id", finetune_id) for finetune_id in HOSTILE_IDS])
    hrefs = get(port, page).decode().split('<th><a href="/-/finetunes/')[1:]
    opened = {heading(followed(port, page, "/-/finetunes/" + href.split('"', 1)[0])) for href in hrefs}
    assert opened == set(HOSTILE_IDS)


@pytest.mark.parametrize("finetune_id", HOSTILE_IDS, ids=lambda value: value[:20])
def test_a_hostile_finetune_id_has_an_escaped_page(served: Served, finetune_id: str) -> None:
    answer = get(port_of(served), finetune_target(finetune_id))
    assert status_of(answer) == 200
    body = answer.decode()
    assert SCRIPT not in body
    assert f"<h1>finetune {escape(finetune_id)}</h1>" in body


@pytest.mark.parametrize("finetune_id", ["a/b", "..", SCRIPT, "日本-ñ-é", "plus+and space"])
def test_a_finetune_page_takes_a_percent_encoded_id_as_typed(served: Served, finetune_id: str) -> None:
    answer = get(port_of(served), "/-/finetunes/" + urllib.parse.quote(finetune_id, safe=""))
    assert status_of(answer) == 200
    assert f"<h1>finetune {escape(finetune_id)}</h1>" in answer.decode()


def escape(text: str) -> str:
    from markupsafe import escape as markup_escape

    return str(markup_escape(text))


def shown_commands(body: str) -> list[list[str]]:
    """Each ``bflsync …`` command a page shows in ``<code>``, split as a POSIX shell would."""
    texts = [part.split("</code>", 1)[0] for part in body.split("<code>bflsync ")[1:]]
    return [["bflsync", *shlex.split(html.unescape(text))] for text in texts]


@pytest.mark.parametrize("finetune_id", HOSTILE_IDS, ids=lambda value: value[:20])
def test_a_finetune_page_shows_commands_a_shell_runs_on_that_id(
    served: Served, store: Path, finetune_id: str
) -> None:
    body = get(port_of(served), finetune_target(finetune_id)).decode()
    commands = {words[1]: words for words in shown_commands(body)}
    request = CliRunner().invoke(cli, ["--db", str(store), *commands["show"][1:]], catch_exceptions=False)
    assert request.exit_code == 0, request.output
    assert json.loads(request.output) == {"finetune_comment": f"hostile {SCRIPT}"}
    assert finetune_id in commands["compare"][2:] and commands["compare"][-1] == "OTHER_ID"


@pytest.mark.parametrize("finetune_id", HOSTILE_IDS, ids=lambda value: value[:20])
def test_the_compare_page_shows_a_command_a_shell_runs_on_those_ids(
    served: Served, store: Path, finetune_id: str
) -> None:
    query = urllib.parse.urlencode([("id", finetune_id), ("id", "ft-00001")])
    [command] = shown_commands(get(port_of(served), f"/-/compare?{query}").decode())
    compared = CliRunner().invoke(
        cli, ["--db", str(store), "compare", "--format", "json", *command[2:]], catch_exceptions=False
    )
    assert compared.exit_code == 0, compared.output
    assert [entry["finetune_id"] for entry in json.loads(compared.output)["finetunes"]] == [
        finetune_id,
        "ft-00001",
    ]


@pytest.mark.parametrize("finetune_id", HOSTILE_IDS, ids=lambda value: value[:20])
def test_a_hostile_id_compared_is_escaped(served: Served, finetune_id: str) -> None:
    query = urllib.parse.urlencode([("id", finetune_id), ("id", HOSTILE_IDS[0])])
    answer = get(port_of(served), f"/-/compare?{query}")
    assert status_of(answer) == 200
    assert SCRIPT.encode() not in answer


@pytest.mark.parametrize(
    "target",
    [
        "/-/finetunes/..",
        "/-/finetunes/../../etc/passwd",
        "/-/finetunes/%2e%2e%2f%2e%2e",
        "/-/finetunes/" + urllib.parse.quote(SCRIPT + "-unknown", safe=""),
        "/-/finetunes/" + SCRIPT.replace(" ", "%20"),
        "/-/finetunes/%00",
        "/-/finetunes/%FF%FE",
        "/-/finetunes/~",
        "/-/finetunes/~ZZ",
        "/-/finetunes/" + "y" * 10_000,
        "/-/compare?id=" + urllib.parse.quote(SCRIPT + "-unknown"),
        "/-/compare?id=%FF",
        "/-/compare?id=%00",
        "/-/compare",
        "/store/finetunes?_text=" + urllib.parse.quote(SCRIPT),
        "/store/finetunes?_text=" + urllib.parse.quote('"unbalanced'),
        "/store/finetunes?_text=%00",
        "/store/finetunes?_text=%FF",
        "/store/finetunes?_text=" + "z" * 10_000,
    ],
)
def test_hostile_page_urls_are_never_a_500_nor_unescaped(served: Served, target: str) -> None:
    answer = get(port_of(served), target)
    assert status_of(answer) < 500
    assert SCRIPT.encode() not in answer
    assert b"<script>alert" not in answer


def test_a_utf8_path_sent_raw_is_not_a_500(served: Served) -> None:
    port = port_of(served)
    answer = raw_request(
        port,
        b"GET /-/finetunes/\xe6\x97\xa5 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n" % port,
    )
    assert status_of(answer) < 500


def test_responses_carry_no_server_header(served: Served) -> None:
    head = get(port_of(served), "/-/versions.json").split(b"\r\n\r\n", 1)[0].lower()
    assert b"\r\nserver:" not in head


def test_uvicorn_runs_without_websockets_or_server_header() -> None:
    config = server.uvicorn_config(lambda scope, receive, send: None, log_level="info")
    assert (config.ws, config.server_header) == ("none", False)


def test_a_websocket_upgrade_is_not_switched(served: Served) -> None:
    port = port_of(served)
    answer = raw_request(
        port,
        (
            f"GET /-/versions.json HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: Upgrade\r\n"
            "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        ).encode(),
    )
    assert status_of(answer) != 101


def serve_uds(store: Path, path: Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--db", str(store), "serve", "--uds", str(path)])
    return result.exit_code, result.stdout, result.stderr


def test_uds_on_a_dangling_symlink_is_refused_without_following_it(store: Path, tmp_path: Path) -> None:
    target = tmp_path / "target.sock"
    link = tmp_path / "link.sock"
    link.symlink_to(target)
    assert serve_uds(store, link) == (
        2,
        "",
        f"bflsync: error: cannot serve on {link}: it is a symbolic link; give the socket's own path\n",
    )
    assert link.is_symlink()
    assert not target.exists()


def test_uds_on_a_path_too_long_for_a_socket_is_refused(store: Path, tmp_path: Path) -> None:
    path = tmp_path / ("s" * (120 - len(str(tmp_path))))
    assert len(os.fsencode(path)) > 107
    code, stdout, stderr = serve_uds(store, path)
    assert (code, stdout) == (2, "")
    assert stderr == (
        f"bflsync: error: cannot serve on {path}: the path is {len(os.fsencode(path))} bytes, "
        "longer than a Unix socket allows (107)\n"
    )
    assert not path.exists()


def test_uds_on_a_directory_is_refused(store: Path, tmp_path: Path) -> None:
    code, stdout, stderr = serve_uds(store, tmp_path)
    assert (code, stdout) == (2, "")
    assert stderr.startswith("bflsync: error: ") and stderr.count("\n") == 1
    assert "is a directory" in stderr
    assert tmp_path.is_dir()


def test_uds_on_a_regular_file_is_refused_and_the_file_kept(store: Path, tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("keep me")
    assert serve_uds(store, path) == (
        2,
        "",
        f"bflsync: error: cannot serve on {path}: it exists and is not a socket\n",
    )
    assert path.read_text() == "keep me"


def test_uds_on_a_live_socket_is_exit_3(store: Path, tmp_path: Path) -> None:
    path = tmp_path / "live.sock"
    with socket.socket(socket.AF_UNIX) as live:
        live.bind(str(path))
        live.listen(1)
        result = serve_uds(store, path)
        assert path.exists()
    assert result == (3, "", f"bflsync: error: cannot serve on {path}: a server is listening on it\n")


def test_uds_on_a_stale_socket_is_exit_3(store: Path, tmp_path: Path) -> None:
    path = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX) as stale:
        stale.bind(str(path))
    assert serve_uds(store, path) == (
        3,
        "",
        f"bflsync: error: cannot serve on {path}: a socket is left there with no server; remove it\n",
    )


def test_uds_errors_show_no_traceback_as_a_subprocess(store: Path, tmp_path: Path) -> None:
    path = tmp_path / ("s" * (120 - len(str(tmp_path))))
    result = serve_process(store, "--uds", str(path))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def serve_process(store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``bflsync serve`` as a user runs it, for the refusals that end it before it serves."""
    return subprocess.run(
        [sys.executable, "-m", "bflsync", "--db", str(store), "serve", *args],
        capture_output=True,
        text=True,
        env=scrubbed_env(),
        timeout=60,
        check=False,
    )


def scrubbed_env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key not in SCRUBBED_ENV}


BUSY_PORT_PROBE = """
import socket, sys
from bflsync.cli import cli
taken = socket.socket()
taken.bind(("127.0.0.1", 0))
taken.listen(1)
try:
    cli.main(["--db", sys.argv[1], "serve", "--port", str(taken.getsockname()[1])])
except SystemExit as exit:
    print(exit.code)
print(sorted({name.split(".")[0] for name in sys.modules} & {"datasette", "uvicorn", "jinja2", "pluggy", "sqlalchemy"}))
"""


def test_a_busy_port_is_found_before_datasette_is_imported(store: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", BUSY_PORT_PROBE, str(store)],
        capture_output=True,
        text=True,
        env=scrubbed_env(),
        timeout=60,
        check=False,
    )
    assert result.stdout.splitlines() == ["3", "[]"], result.stderr
    assert "the port is in use" in result.stderr


@pytest.mark.parametrize("host", ["", "  "])
def test_an_empty_host_is_refused_instead_of_binding_every_address(store: Path, host: str) -> None:
    """bind() takes "" for every address; the URL announced would be http://:PORT/ and refuse every Host."""
    result = serve_process(store, "--host", host, "--port", "0")
    assert result.returncode == 2
    assert result.stderr.startswith("bflsync: error: ") and result.stderr.count("\n") == 1
