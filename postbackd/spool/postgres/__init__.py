"""The PostgreSQL spool: one database shared by a fleet of postbackd nodes (DESIGN §10).

Imported only when ``[daemon] spool`` is a ``postgresql://`` URL: asyncpg is the optional extra
``postbackd[postgres]``.
"""
