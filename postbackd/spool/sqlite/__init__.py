"""The embedded spool: one SQLite file in WAL mode, group-committed on a writer thread of its own.

`SqliteSpool` implements `postbackd.spool.Spool`. Inside: `schema` (tables, migrations, the
connections' settings), `threads` (the writer and reader threads; group commit), `writes` and
`claim` (the event path), `reads` and `browse` (the request log), `verbs` (the operator's verbs
as transactions), `checkpoint` (WAL checkpoints off the writer), `lock` (which process owns the
file), `errors` (SQLite's failures said so an operator can act) and `rows` (row ↔ value).
"""

from postbackd.spool.sqlite.store import SqliteSpool

__all__ = ["SqliteSpool"]
