"""Delivery workers: more processes for one daemon, to use more than one core.

`processes` starts, restarts and stops them (`[daemon] workers`); with the SQLite spool they
make attempts for the main process — `remote` is the main process's side, `serve` the worker's,
`wire` the socket between them.
"""

from postbackd.workers.processes import DeliveryWorkers, worker_node
from postbackd.workers.remote import WorkerAttempts

__all__ = ["DeliveryWorkers", "WorkerAttempts", "worker_node"]
