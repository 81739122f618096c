"""Errors a user can act on, each mapped to one documented exit code.

    BflsyncError                 base class; ``exit_code`` tells the CLI how to leave (70 unless set)
    ├── InputError               bad option, filter, id or file given by the user (exit 2)
    │   ├── FilterError          a filter, field name or --text the language does not accept (exit 2)
    │   ├── MissingApiKeyError   no key in BFL_API_KEY nor --api-key-file (exit 2)
    │   ├── AmbiguousIdError     an id stored for several (source, account), or a prefix of several ids (exit 2)
    │   ├── ProxyConfigError     a proxy environment variable the client cannot use (exit 2)
    │   └── ArchiveError         an export that cannot be written, or an archive refused by import (exit 2)
    ├── StoreError               the database cannot be used as a bflsync store (exit 2 or 3, below)
    │   ├── StoreMissingError    no store where one should be (exit 2)
    │   ├── StoreBehindError     schema older than this bflsync; `bflsync db upgrade` fixes it (exit 2)
    │   ├── StoreTooNewError     schema written by a newer bflsync (unknown revision) (exit 2)
    │   ├── NotAStoreError       not SQLite, or a database without bflsync tables (exit 2)
    │   ├── StoreWriteError      the database refused a write (read-only file, full disk, locked, not yours) (exit 3)
    │   ├── StoreUnreachableError  the database server cannot be reached or refused us (exit 3)
    │   ├── StoreRefusedError    the server refused or cancelled a statement: a timeout, a limit (exit 3)
    │   ├── StoreUnsafeError     other roles can plant code in the store's schema (exit 3)
    │   ├── StoredValueError     a stored value bflsync cannot process (nested too deeply) (exit 3)
    │   └── StoreBusyError       another session held a lock past lock_timeout (exit 4)
    ├── ApiError                 the BFL API answered badly or not at all (exit 3); per finetune,
    │   │                        ``kind`` is the sync_error row's kind
    │   ├── AuthError            401/403: the key was refused
    │   ├── CreditsError         402: the account is out of credits
    │   ├── NotFoundError        404, 422 with a string detail, 200 without finetune_details
    │   ├── InvalidRequestError  400, or 422 with a validation list: the API rejected the request's shape
    │   ├── RateLimitedError     429 after every retry
    │   ├── ServerError          5xx after every retry
    │   ├── BadResponseError     a body that is not the JSON shape the API documents
    │   │   └── ResponseTooLargeError  a body over the size cap once decompressed
    │   ├── UpstreamGoneError    410 from any endpoint, or a listing answered 404 or a body that is
    │   │                        not a listing: the endpoint looks retired (kind ``upstream_gone``)
    │   ├── ConnectionFailedError  connect errors and dropped connections after every retry
    │   │   └── ApiTimeoutError  no complete answer within the timeout after every retry
    │   └── RunLimitError        a limit of the whole run was reached: the run stops as failed
    │       ├── RunDeadlineError the run deadline (--max-duration) passed
    │       └── CircuitOpenError too many requests in a row failed after their retries
    ├── RunFailedError           a sync run that could not do its job; exits as the error that
    │                            failed it (3 when none says otherwise)
    ├── DriftError               `db check`: the models and the migrations differ (exit 1)
    ├── AddressInUseError        `serve`: the port (or Unix socket path) is taken (exit 3)
    ├── SyncLockedError          another sync holds the lock (exit 4)
    ├── StoppedBySignalError     SIGINT or SIGTERM stopped a sync outside its run, e.g. waiting for
    │                            the lock: exits 128 plus the signal, 130 or 143
    ├── StaleError               `status --max-age`: an account's last successful sync is older (exit 5)
    └── AuditError               `audit verify`: the record is not what was written (exit 6): a row
                                 edited, deleted, inserted or moved, a current row that disagrees with
                                 its history, a checkpoint the chain does not extend, a bad signature;
                                 any writer: the chain's head row was damaged, nothing can link to it

``DetailsNotJsonError`` is internal, no :class:`BflsyncError`: the read side answers it itself.
``NotMetricsFileError`` (an :class:`OSError`) is internal too: ``sync --metrics-file`` turns it
into a warning, since the metrics file never changes a run's exit code.

Exits that are no error class: 0 and 1 (a ``partial`` sync) come from a run's outcome, and
130, 141 and 143 (:attr:`ExitCode.INTERRUPTED`, :attr:`ExitCode.BROKEN_PIPE`,
:attr:`ExitCode.TERMINATED`) are 128 plus the signal that stopped the command.

No message ever contains the API key: errors are built from status, method, path and BFL's
``detail``, never from request headers.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes, a contract for cron jobs and monitoring."""

    OK = 0
    PARTIAL = 1
    INPUT = 2
    CANNOT_RUN = 3
    LOCKED = 4
    STALE = 5
    TAMPERED = 6
    INTERNAL = 70
    # 128 plus the POSIX signal numbers (SIGINT 2, SIGPIPE 13, SIGTERM 15), spelled out so that
    # every command need not import the signal module (a test keeps them equal to it).
    INTERRUPTED = 128 + 2  # 130: Ctrl-C
    BROKEN_PIPE = 128 + 13  # 141: the reader of stdout went away
    TERMINATED = 128 + 15  # 143: SIGTERM (systemctl stop, shutdown)


class BflsyncError(Exception):
    """Base of every error that the CLI turns into one line and an exit code."""

    exit_code: ExitCode = ExitCode.INTERNAL


class InputError(BflsyncError):
    exit_code = ExitCode.INPUT


class FilterError(InputError):
    """A filter, field name or --text that the language does not accept."""


class MissingApiKeyError(InputError):
    pass


class AmbiguousIdError(InputError):
    pass


class ProxyConfigError(InputError):
    pass


class ArchiveError(InputError):
    """An export directory that cannot be written, or an archive that import refuses (nothing loaded)."""


class StoreError(BflsyncError):
    exit_code = ExitCode.INPUT


class StoreMissingError(StoreError):
    pass


class StoreBehindError(StoreError):
    pass


class StoreTooNewError(StoreError):
    pass


class NotAStoreError(StoreError):
    pass


class StoreWriteError(StoreError):
    exit_code = ExitCode.CANNOT_RUN


class StoreUnreachableError(StoreError):
    exit_code = ExitCode.CANNOT_RUN


class AddressInUseError(BflsyncError):
    """``bflsync serve`` cannot listen where it was asked to: another server is there."""

    exit_code = ExitCode.CANNOT_RUN


class StoreRefusedError(StoreError):
    """A statement_timeout, a server limit, a lost connection: the server, not the data, said no."""

    exit_code = ExitCode.CANNOT_RUN


class DetailsNotJsonError(Exception):
    """The database refused to read some stored details as JSON (``NaN`` written by another tool).

    Internal: :mod:`bflsync.read.search` answers it by running the statement again with such rows
    set aside, and names them.
    """


class NotMetricsFileError(OSError):
    """``sync --metrics-file`` names something that is not a bflsync metrics file: left as it is.

    Internal: the sync warns with the message (``strerror``) and its exit code stands.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.strerror = reason


class StoreUnsafeError(StoreError):
    """A PostgreSQL schema where roles other than the store's owner can create functions or operators."""

    exit_code = ExitCode.CANNOT_RUN


class StoredValueError(StoreError):
    """A stored value (written by another tool) nested deeper than bflsync can walk."""

    exit_code = ExitCode.CANNOT_RUN


class StoreBusyError(StoreError):
    """Another session held a lock we needed for longer than ``lock_timeout``."""

    exit_code = ExitCode.LOCKED


class ApiError(BflsyncError):
    """An answer (or its absence) from the BFL API that the caller could not use.

    Carries what a user needs to act on it: the HTTP status, method and URL path, BFL's
    ``detail`` text and the request id header, so a support ticket can quote them.
    """

    exit_code = ExitCode.CANNOT_RUN
    kind = "http"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        method: str | None = None,
        path: str | None = None,
        detail: str | None = None,
        request_id: str | None = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.method = method
        self.path = path
        self.detail = detail
        self.request_id = request_id
        self.attempts = attempts

    def __str__(self) -> str:
        parts = [self.message]
        if self.method and self.path:
            where = f"{self.method} {self.path}"
            parts.append(f"{where} -> {self.status}" if self.status else where)
        if self.detail:
            parts.append(f"detail: {self.detail}")
        if self.request_id:
            parts.append(f"request id: {self.request_id}")
        return "; ".join(parts)


class AuthError(ApiError):
    kind = "auth"


class CreditsError(ApiError):
    kind = "credits"


class NotFoundError(ApiError):
    kind = "not_found"


class InvalidRequestError(ApiError):
    kind = "invalid_request"


class RateLimitedError(ApiError):
    kind = "rate_limited"


class ServerError(ApiError):
    kind = "http"


class BadResponseError(ApiError):
    kind = "bad_json"


class ResponseTooLargeError(BadResponseError):
    kind = "bad_response"


class UpstreamGoneError(ApiError):
    """The endpoint answers as if it were retired: 410 Gone, or a listing that is 404 or not a listing.

    BFL has retired finetuning with no published sunset date for these endpoints; this is how a
    shutdown is expected to look, so a run says so in one line and trusts nothing it answered.
    """

    kind = "upstream_gone"


class ConnectionFailedError(ApiError):
    """No answer came back: the connection failed or dropped (a run records kind ``transport``)."""

    kind = "transport"


class ApiTimeoutError(ConnectionFailedError):
    kind = "timeout"


class RunFailedError(BflsyncError):
    """The run could not do its job (the listing failed); the run row says why, too."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = ExitCode(exit_code)


class DriftError(BflsyncError):
    """The models and the migrations describe different schemas (a developer error)."""

    exit_code = ExitCode.PARTIAL


class SyncLockedError(BflsyncError):
    exit_code = ExitCode.LOCKED


class StoppedBySignalError(BflsyncError):
    """SIGINT or SIGTERM arrived outside a sync's run (the start ping, waiting for the lock, opening the
    store); the run itself stops cleanly on its own. The metrics file and the pings record it as
    interrupted, like a run stopped the same way."""

    exit_code = ExitCode.INTERRUPTED

    def __init__(self, signum: int) -> None:
        name = "SIGTERM" if 128 + signum == ExitCode.TERMINATED else "SIGINT"
        super().__init__(f"interrupted by {name} before the run started")
        self.exit_code = ExitCode(128 + signum)


class StaleError(BflsyncError):
    """No successful sync within ``status --max-age``: what a monitoring check alerts on."""

    exit_code = ExitCode.STALE


class AuditError(BflsyncError):
    """The store's record fails verification; the message names the first broken link and what differs."""

    exit_code = ExitCode.TAMPERED


class RunLimitError(ApiError):
    """Not about one request: every request after it would fail the same way, so the run stops."""

    kind = "run_limit"


class RunDeadlineError(RunLimitError):
    kind = "deadline"


class CircuitOpenError(RunLimitError):
    kind = "circuit_open"
