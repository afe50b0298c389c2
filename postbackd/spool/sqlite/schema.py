"""The spool's SQLite schema, its version, and how a connection is opened and migrated.

The schema version lives in ``PRAGMA user_version``. Opening a spool migrates an older file
step by step in one transaction; a file newer than this code is refused (an older postbackd
must not write rows it does not understand).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from postbackd.spool.model import DeliveryState, SpoolError

SCHEMA_VERSION = 3
BUSY_TIMEOUT_MS = 10_000  # the CLI writes to the spool while the daemon runs, and vice versa
WAL_SIZE_LIMIT = 64 * 1024 * 1024

_STATES = ", ".join(f"'{state}'" for state in DeliveryState)

_V1 = (
    """
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        type TEXT NOT NULL,
        customer TEXT NOT NULL,
        order_id TEXT,
        event_time TEXT NOT NULL,
        received_at REAL NOT NULL,
        source TEXT NOT NULL,
        matched INTEGER NOT NULL,
        body BLOB NOT NULL
    )
    """,
    "CREATE INDEX events_order ON events(order_id) WHERE order_id IS NOT NULL",
    "CREATE INDEX events_received ON events(received_at)",
    "CREATE INDEX events_unmatched ON events(seq) WHERE matched = 0",
    f"""
    CREATE TABLE deliveries (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        event_id TEXT NOT NULL,
        trigger_name TEXT NOT NULL,
        plugin TEXT NOT NULL,
        customer TEXT NOT NULL,
        event_type TEXT NOT NULL,
        order_id TEXT,
        format TEXT NOT NULL,
        content_type TEXT NOT NULL,
        subject TEXT,
        body BLOB,
        render_error TEXT,
        state TEXT NOT NULL CHECK (state IN ({_STATES})),
        held_reason TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        ordered INTEGER NOT NULL,
        created_at REAL NOT NULL,
        next_attempt_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        finished_at REAL,
        last_status INTEGER,
        last_error TEXT,
        destination TEXT
    )
    """,
    # claim_due: pending rows by schedule, and by destination (see postbackd.spool.sqlite.claim)
    "CREATE INDEX deliveries_due ON deliveries(next_attempt_at, destination) "
    "WHERE state = 'pending'",
    "CREATE INDEX deliveries_destination ON deliveries(destination, next_attempt_at) "
    "WHERE state = 'pending'",
    "CREATE INDEX deliveries_state ON deliveries(state, seq)",
    "CREATE INDEX deliveries_customer ON deliveries(customer, seq)",
    "CREATE INDEX deliveries_trigger ON deliveries(trigger_name, seq)",
    "CREATE INDEX deliveries_event_type ON deliveries(event_type, seq)",
    # the ordered check (trigger, order, seq), the order filter and erase by order
    """
    CREATE INDEX deliveries_order ON deliveries(order_id, trigger_name, seq)
    WHERE order_id IS NOT NULL
    """,
    "CREATE INDEX deliveries_event ON deliveries(event_id)",
    "CREATE INDEX deliveries_finished ON deliveries(finished_at) WHERE finished_at IS NOT NULL",
    """
    CREATE TABLE attempts (
        id INTEGER PRIMARY KEY,
        delivery_id TEXT NOT NULL,
        number INTEGER NOT NULL,
        started_at REAL NOT NULL,
        duration REAL NOT NULL,
        outcome TEXT NOT NULL CHECK (outcome IN ('ok', 'retry', 'fail')),
        status INTEGER,
        error TEXT,
        request TEXT,
        response TEXT
    )
    """,
    "CREATE INDEX attempts_delivery ON attempts(delivery_id, id)",
)

# step 2: the timers of [[sla]] rules (postbackd.spool.sqlite.timers)
_V2 = (
    """
    CREATE TABLE sla_timers (
        id TEXT PRIMARY KEY,
        rule TEXT NOT NULL,
        customer TEXT NOT NULL,
        order_id TEXT NOT NULL,
        emit TEXT NOT NULL,
        started_by TEXT NOT NULL,
        started_at REAL NOT NULL,
        due_at REAL NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('pending', 'fired', 'cancelled')),
        finished_at REAL,
        note TEXT,
        claimed_until REAL
    )
    """,
    "CREATE INDEX sla_timers_due ON sla_timers(due_at) WHERE state = 'pending'",
    "CREATE INDEX sla_timers_order ON sla_timers(order_id, customer) WHERE state = 'pending'",
    "CREATE INDEX sla_timers_finished ON sla_timers(finished_at) WHERE finished_at IS NOT NULL",
)

# step 3: shipment files (postbackd.batching). A delivery of a batching trigger carries the window
# it falls in (`batch_window`) and, once the window is closed, the file it went into
# (`batch_id`); the claim indexes leave such rows out, as they are never attempted alone.
_V3 = (
    "ALTER TABLE deliveries ADD COLUMN batch_window TEXT",
    "ALTER TABLE deliveries ADD COLUMN batch_id TEXT",
    "DROP INDEX deliveries_due",
    "DROP INDEX deliveries_destination",
    "CREATE INDEX deliveries_due ON deliveries(next_attempt_at, destination) "
    "WHERE state = 'pending' AND batch_window IS NULL",
    "CREATE INDEX deliveries_destination ON deliveries(destination, next_attempt_at) "
    "WHERE state = 'pending' AND batch_window IS NULL",
    "CREATE INDEX deliveries_open_windows ON deliveries(next_attempt_at) "
    "WHERE state = 'pending' AND batch_window IS NOT NULL AND batch_id IS NULL",
    # a closed window's rows, in order (`closed_windows`)
    "CREATE INDEX deliveries_window_rows ON deliveries(batch_window, seq) "
    "WHERE state = 'pending' AND batch_window IS NOT NULL AND batch_id IS NULL",
    "CREATE INDEX deliveries_batch ON deliveries(batch_id) WHERE batch_id IS NOT NULL",
    """
    CREATE TABLE batches (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        window_key TEXT NOT NULL,
        part INTEGER NOT NULL,
        trigger_name TEXT NOT NULL,
        plugin TEXT NOT NULL,
        customer TEXT NOT NULL,
        file_name TEXT NOT NULL,
        format TEXT NOT NULL,
        content_type TEXT NOT NULL,
        body BLOB NOT NULL,
        rows INTEGER NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('pending', 'done', 'dead', 'cancelled')),
        attempts INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        next_attempt_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        finished_at REAL,
        last_error TEXT,
        node TEXT,
        lease_until REAL
    )
    """,
    "CREATE INDEX batches_due ON batches(next_attempt_at) WHERE state = 'pending'",
    "CREATE INDEX batches_window ON batches(window_key, part)",
)

MIGRATIONS: dict[int, tuple[str, ...]] = {1: _V1, 2: _V2, 3: _V3}
"""Statements that bring a spool from version N-1 to N (version 0 is a new, empty file)."""


def open_writer(path: Path, synchronous: str) -> sqlite3.Connection:
    """The writer's connection: parent directories created, WAL on, schema migrated."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SpoolError(
            f"cannot create the directory of spool {path}: {exc.strerror}; "
            "create it or set [daemon] spool to a writable path"
        ) from None
    conn = _connect(path)
    try:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise SpoolError(f"spool {path}: SQLite refused WAL mode (got {mode!r})")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
        # An UPDATE rewrites a row and leaves its old version in the page's free space; FAST
        # zeroes it at no extra I/O, so `erase --order` has no stale copies to miss.
        conn.execute("PRAGMA secure_delete = FAST")
        migrate(conn, path)
    except sqlite3.Error as exc:
        conn.close()
        raise _unusable(path, exc) from None
    except BaseException:
        conn.close()
        raise
    return conn


def open_checkpointer(path: Path) -> sqlite3.Connection:
    """The connection that checkpoints the log (see `postbackd.spool.sqlite.checkpoint`)."""
    return _connect(path)


def open_reader(path: Path) -> sqlite3.Connection:
    """The reader's connection: it can only read, so a bug cannot write behind group commit."""
    conn = _connect(path)
    try:
        conn.execute("PRAGMA query_only = ON")
    except sqlite3.Error as exc:
        conn.close()
        raise _unusable(path, exc) from None
    return conn


def _connect(path: Path) -> sqlite3.Connection:
    try:
        conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
    except sqlite3.Error as exc:
        raise _unusable(path, exc) from None
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return conn


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Bring the schema to SCHEMA_VERSION, or refuse a file this code cannot handle."""
    version = _check_version(conn, path)
    if version == SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = _check_version(conn, path)  # another process may have migrated meanwhile
        for target in range(version + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[target]:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _check_version(conn: sqlite3.Connection, path: Path) -> int:
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise SpoolError(
            f"spool {path} has schema version {version} but this postbackd understands up to "
            f"{SCHEMA_VERSION}; upgrade postbackd or use another spool file"
        )
    if version == 0:
        tables = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[
            0
        ]
        if tables:
            raise SpoolError(
                f"{path} is an SQLite database but not a postbackd spool (it has tables and no "
                "schema version); point [daemon] spool at another file"
            )
    return version


def _unusable(path: Path, exc: sqlite3.Error) -> SpoolError:
    return SpoolError(
        f"cannot open spool {path}: {exc}; check that it is a postbackd spool and that the "
        "file and its directory are readable and writable by this user"
    )
