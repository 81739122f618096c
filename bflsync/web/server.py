"""Running Datasette for ``bflsync serve``: bind first, then announce, then serve.

The socket is bound before anything is printed, so a busy port is one error and the announced URL
carries the real port (``--port 0``). Only Datasette's own plugins, datasette-dashboards (and the
two plugins it renders with) and bflsync's hooks are loaded: a plugin that writes, or one that
runs arbitrary SQL, never comes along from the environment.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import os
import socket
import stat
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bflsync.errors import AddressInUseError, InputError
from bflsync.web import dashboards, metadata

TEMPLATES = Path(__file__).with_name("templates")
# Entry-point plugins that may load; everything else installed in the environment is unloaded.
ALLOWED_PLUGINS = frozenset({"datasette_dashboards", "datasette_leaflet", "datasette_render_markdown"})
# Long cells (details JSON, comments) are cut in HTML tables; JSON and CSV keep them whole.
TRUNCATE_CELLS = 80
# The longest path a Unix socket takes: sun_path is 108 bytes on Linux (104 on the BSDs and macOS),
# one of them the terminating NUL.
UNIX_PATH_MAX = 103 if sys.platform == "darwin" or "bsd" in sys.platform else 107
UNAWAITED_FACETS = (
    r"coroutine '(\w+Facet\.facet_results|TableView\._data_traced\.<locals>\.\w+)' was never awaited"
)


@dataclass(frozen=True)
class Bound:
    """A listening socket and the URL it answers at."""

    sock: socket.socket
    url: str
    host: str
    port: int


def bind(*, host: str, port: int, uds: Path | None) -> Bound:
    """Listen on ``host:port`` or on the Unix socket ``uds`` (created 0600); busy means AddressInUseError."""
    if uds is not None:
        return _bind_unix(uds)
    if not host.strip():
        # The socket API reads "" as every address: a --host that says nothing must not mean 0.0.0.0.
        raise InputError("cannot serve on an empty --host: give an address, such as 127.0.0.1 or 0.0.0.0")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise AddressInUseError(
                f"cannot serve on {host}:{port}: the port is in use (try --port 0)"
            ) from None
        raise InputError(f"cannot serve on {host}:{port}: {exc.strerror}") from None
    sock.listen(128)
    actual = int(sock.getsockname()[1])
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    return Bound(sock=sock, url=f"http://{shown}:{actual}/", host=host, port=actual)


def _bind_unix(path: Path) -> Bound:
    size = len(os.fsencode(path))
    if size > UNIX_PATH_MAX:
        raise InputError(
            f"cannot serve on {path}: the path is {size} bytes, longer than a Unix socket allows ({UNIX_PATH_MAX})"
        )
    _refuse_existing(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # The umask makes the socket 0600 from its first moment: no window where others may connect.
    previous = os.umask(0o177)
    try:
        sock.bind(str(path))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:  # created since the check: whatever it is, it is not ours
            raise AddressInUseError(
                f"cannot serve on {path}: something was created there meanwhile"
            ) from None
        raise InputError(f"cannot serve on {path}: {exc.strerror or exc}") from None
    finally:
        os.umask(previous)
    sock.listen(128)
    return Bound(sock=sock, url=f"unix:{path}", host="", port=0)


def _refuse_existing(path: Path) -> None:
    """Refuse whatever is at ``path`` already, looking at it, never through it: bind() would not
    follow a symlink either, and removing a socket another server listens on would orphan it."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode):
        raise InputError(f"cannot serve on {path}: it is a symbolic link; give the socket's own path")
    if stat.S_ISDIR(info.st_mode):
        raise InputError(f"cannot serve on {path}: it is a directory")
    if not stat.S_ISSOCK(info.st_mode):
        raise InputError(f"cannot serve on {path}: it exists and is not a socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except ConnectionRefusedError:
            raise AddressInUseError(
                f"cannot serve on {path}: a socket is left there with no server; remove it"
            ) from None
        except OSError as exc:
            raise AddressInUseError(f"cannot serve on {path}: a socket is there ({exc.strerror})") from None
    raise AddressInUseError(f"cannot serve on {path}: a server is listening on it")


def build_metadata(
    path: Path, bound: Bound, *, allow_sql: bool, allow_hosts: tuple[str, ...]
) -> dict[str, Any]:
    """The metadata of the served store, with the dashboards and bflsync's own settings."""
    database = path.stem
    config = metadata.datasette_metadata(
        database, metadata.table_columns(path), views=list(metadata.table_columns(path, kind="view"))
    )
    wildcard = (
        bool(bound.host) and ipaddress.ip_address(bound.host).is_unspecified if _is_ip(bound.host) else False
    )
    config["plugins"] = {
        "datasette-dashboards": dashboards.dashboards(database),
        "bflsync": {
            "database": database,
            "allow_sql": allow_sql,
            # A Unix socket cannot be reached from a web page: no Host to check.
            "check_host": bound.port != 0,
            "hosts": sorted(set(_hosts(bound, allow_hosts))),
            "port": bound.port,
            "wildcard": wildcard,
        },
    }
    return config


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _hosts(bound: Bound, extra: tuple[str, ...]) -> list[str]:
    from bflsync.web import guard

    return guard.allowed_hosts(bound.host, bound.port, extra=extra)


def load_plugins() -> None:
    """Unload every plugin but Datasette's own and the allowed ones, then register bflsync's hooks."""
    from datasette.plugins import pm

    from bflsync.web import plugin

    for name, module in list(pm.list_name_plugin()):
        keep = name.startswith("datasette.") and name != "datasette.handle_exception"
        if not keep and module.__name__.split(".")[0] not in ALLOWED_PLUGINS:
            pm.unregister(module)
    if pm.get_plugin("bflsync") is None:
        pm.register(plugin, name="bflsync")


def _log_config() -> dict[str, Any]:
    """uvicorn's logging with the access lines on stderr too: stdout is for data, never for a log."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["handlers"]["access"]["stream"] = "ext://sys.stderr"
    return config


def serve(
    path: Path,
    bound: Bound,
    config: dict[str, Any],
    *,
    log_level: str,
    announce: Callable[[str], None],
    cleanup: Callable[[], None],
) -> None:
    """Serve the store read-only on the bound socket until interrupted; ``cleanup`` runs once it stopped.

    uvicorn raises the signal that stopped it again once it has shut down, so code after this call
    (or in a ``finally``) never runs on SIGTERM: ``cleanup`` runs at the end of the shutdown instead.
    """
    import uvicorn
    from datasette.app import Datasette

    # Datasette awaits a table page's facet queries one after another; when one fails (a bad
    # `_facet=`) the rest are never awaited and each prints a RuntimeWarning: noise for a 400.
    warnings.filterwarnings("ignore", message=UNAWAITED_FACETS, category=RuntimeWarning)
    load_plugins()
    datasette = Datasette(
        [str(path)],
        metadata=config,
        template_dir=str(TEMPLATES),
        settings={"truncate_cells_html": TRUNCATE_CELLS, "default_page_size": 50, "suggest_facets": False},
    )
    asyncio.run(datasette.invoke_startup())
    announce(bound.url)

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            await super().shutdown(sockets)
            cleanup()

    server = Server(uvicorn_config(datasette.app(), log_level=log_level))
    server.run(sockets=[bound.sock])


def uvicorn_config(app: Any, *, log_level: str) -> Any:
    """uvicorn's settings: no WebSocket surface (Datasette serves none, and installing `websockets`
    would otherwise switch one on) and no ``Server`` header naming the software to a scanner."""
    import uvicorn

    return uvicorn.Config(
        app, log_level=log_level, lifespan="on", log_config=_log_config(), ws="none", server_header=False
    )
