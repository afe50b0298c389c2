"""Uploads a file over SFTP: connect (the host key checked against the pinned one before any
credential is sent), write under a temporary name, rename onto the final name, close.

One connection per file: shipment files are few (one per window), and a fresh connection
reads the trigger's current options — a fixed password or a new host key applies at the next
attempt. Every failure is retried on the trigger's schedule, with a reason an operator can act
on (a host key mismatch names the key the server showed, an unknown directory names it).
"""

from __future__ import annotations

import functools
import posixpath
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from postbackd.config import Trigger
from postbackd.deliveries.filenames import target_name, temporary_name
from postbackd.deliveries.sftp.options import MISSING_ASYNCSSH, SftpOptions, parse_options
from postbackd.plugin import ConnectionCheck, Delivery, Outcome


class SftpDelivery:
    """The ``sftp`` delivery plugin."""

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.settings = settings

    def validate_options(self, options: Mapping[str, Any]) -> list[str]:
        return parse_options(options)[1]

    def destination(self, options: Mapping[str, Any]) -> str:
        return f"sftp://{options.get('host', '')}:{options.get('port', 22)}"

    async def deliver(self, delivery: Delivery, options: Mapping[str, Any]) -> Outcome:
        parsed, problems = parse_options(options)
        if parsed is None:
            if problems == [MISSING_ASYNCSSH]:
                return Outcome.retry(MISSING_ASYNCSSH)
            return Outcome.fail("; ".join(problems))
        name = target_name(delivery)
        remote = posixpath.join(parsed.directory, name)
        request = {
            "method": "PUT",
            "url": f"sftp://{parsed.username}@{parsed.host}:{parsed.port}/{remote.lstrip('/')}",
            "bytes": len(delivery.body),
        }
        try:
            await upload(
                parsed,
                remote,
                posixpath.join(parsed.directory, temporary_name(name, delivery)),
                delivery.body,
            )
        except UploadError as exc:
            return Outcome.retry(str(exc), request=request)
        return Outcome.ok(detail=remote, request=request, response={"uploaded": remote})

    async def check_connections(self, triggers: Sequence[Trigger]) -> list[ConnectionCheck]:
        """`check --connect`: each trigger's server reached, its host key matched against the
        pinned one, the login accepted and the upload directory listed — nothing written."""
        checks = []
        for trigger in sorted(triggers, key=lambda t: t.name):
            parsed, problems = parse_options(trigger.options)
            if parsed is None:
                checks.append(ConnectionCheck(False, f"{trigger.name}: {'; '.join(problems)}"))
                continue
            where = f"sftp://{parsed.username}@{parsed.host}:{parsed.port}/{parsed.directory}"
            try:
                await session(parsed, functools.partial(_list_directory, parsed.directory))
            except UploadError as exc:
                checks.append(ConnectionCheck(False, f"{trigger.name}: {exc}"))
            else:
                checks.append(
                    ConnectionCheck(True, f"{trigger.name}: {where} (host key pinned, logged in)")
                )
        return checks

    async def close(self) -> None:
        return None


async def _list_directory(directory: str, sftp: Any) -> None:
    await sftp.listdir(directory)


class UploadError(Exception):
    """An upload that did not complete, with a reason fit for the request log."""


async def upload(options: SftpOptions, remote: str, temporary: str, body: bytes) -> None:
    async def put(sftp: Any) -> None:
        async with sftp.open(temporary, "wb") as file:
            await file.write(body)
        await _rename(sftp, temporary, remote)

    await session(options, put, remote)


async def session(
    options: SftpOptions, work: Callable[[Any], Awaitable[Any]], remote: str | None = None
) -> None:
    """Connect (the host key checked before any credential is sent), log in, run `work` with
    the SFTP client, close; every failure an `UploadError` with a reason."""
    import asyncssh

    where = f"{options.host}:{options.port}"
    seen: list[str] = []

    class PinnedHost(asyncssh.SSHClient):
        def validate_host_public_key(self, host: str, addr: str, port: int, key: Any) -> bool:
            fingerprint = key.get_fingerprint("sha256")
            seen.append(fingerprint)
            return fingerprint in options.pinned

    client_keys = None
    if options.private_key is not None:
        client_keys = [asyncssh.import_private_key(options.private_key, options.passphrase)]
    try:
        async with (
            asyncssh.connect(
                options.host,
                options.port,
                username=options.username,
                password=options.password,
                client_keys=client_keys,
                passphrase=None,
                known_hosts=([], [], []),
                client_factory=PinnedHost,
                agent_path=None,
                config=[],
                connect_timeout=options.connect_timeout,
                preferred_auth=("publickey", "password")
                if client_keys
                else ("password", "keyboard-interactive"),
            ) as connection,
            connection.start_sftp_client() as sftp,
        ):
            await work(sftp)
    except asyncssh.HostKeyNotVerifiable:
        shown = seen[-1] if seen else "an unknown key"
        raise UploadError(
            f"the host key of {where} is {shown}, not the pinned one "
            f"({', '.join(sorted(options.pinned))}); nothing was sent. If the server's key "
            "really changed, update options.host_key or options.host_key_fingerprint"
        ) from None
    except asyncssh.PermissionDenied:
        raise UploadError(
            f"{where} refused the login of {options.username!r}: check options.password or "
            "options.private_key"
        ) from None
    except asyncssh.SFTPError as exc:
        what = f"writing {remote}" if remote else f"in {options.directory}"
        raise UploadError(f"{where}: SFTP error {what}: {exc.reason}") from None
    except asyncssh.Error as exc:
        raise UploadError(f"{where}: SSH error: {exc.reason}") from None
    except TimeoutError:
        raise UploadError(f"{where} did not answer within {options.connect_timeout:g}s") from None
    except OSError as exc:
        raise UploadError(f"cannot connect to {where}: {exc.strerror or exc}") from None


async def _rename(sftp: Any, temporary: str, remote: str) -> None:
    """Atomic replace where the server offers it (OpenSSH's posix-rename), else remove+rename:
    a file sent again after a crash replaces the first copy."""
    import asyncssh

    try:
        await sftp.posix_rename(temporary, remote)
        return
    except asyncssh.SFTPOpUnsupported:
        pass
    if await sftp.exists(remote):
        await sftp.remove(remote)
    await sftp.rename(temporary, remote)
