"""A real SFTP server for the tests: asyncssh's server on 127.0.0.1 with a host key generated
for the test, password and public-key logins, and a temporary directory as its root.

`failures` makes the next N uploads fail (the server answers the open with an SFTP failure),
so a test can watch a file being retried; `uploads` lists the names of completed renames.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh
import pytest

USERNAME = "psp"
PASSWORD = "s3cret-pass"


@dataclass
class SftpServer:
    root: Path
    port: int
    host_key: asyncssh.SSHKey
    client_key: asyncssh.SSHKey
    failures: int = 0
    uploads: list[str] = field(default_factory=list)
    acceptor: Any = None

    @property
    def known_hosts_line(self) -> str:
        """The server's key as `ssh-keyscan` prints it."""
        public = self.host_key.export_public_key("openssh").decode().strip()
        return f"[127.0.0.1]:{self.port} {public}"

    @property
    def fingerprint(self) -> str:
        return str(self.host_key.get_fingerprint("sha256"))

    def files(self) -> dict[str, bytes]:
        """What the server holds, temporary files (a leading dot) left out."""
        return {
            p.name: p.read_bytes()
            for p in sorted(self.root.rglob("*"))
            if p.is_file() and not p.name.startswith(".")
        }

    def options(self, **extra: Any) -> dict[str, Any]:
        """Trigger options of an sftp delivery to this server (password login)."""
        return {
            "host": "127.0.0.1",
            "port": self.port,
            "username": USERNAME,
            "password": PASSWORD,
            "host_key": self.known_hosts_line,
            "timeout": "10s",
            **extra,
        }


class _Server(asyncssh.SSHServer):
    def __init__(self, server: SftpServer) -> None:
        self.server = server

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        return username == USERNAME and password == PASSWORD

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        wanted = self.server.client_key.export_public_key()
        return username == USERNAME and key.export_public_key() == wanted


def _sftp_factory(server: SftpServer) -> Any:
    class Sftp(asyncssh.SFTPServer):
        def __init__(self, chan: Any) -> None:
            super().__init__(chan, chroot=str(server.root).encode())

        def open(self, path: bytes, pflags: int, attrs: Any) -> Any:
            if server.failures > 0:
                server.failures -= 1
                raise asyncssh.SFTPFailure("disk quota exceeded (scripted by the test)")
            return super().open(path, pflags, attrs)

        def posix_rename(self, oldpath: bytes, newpath: bytes) -> None:
            super().posix_rename(oldpath, newpath)
            server.uploads.append(Path(newpath.decode()).name)

    return Sftp


@pytest.fixture
async def sftp_server(tmp_path: Path) -> AsyncIterator[SftpServer]:
    """A running SFTP server on 127.0.0.1 (a free port), its root under tmp_path."""
    root = tmp_path / "sftp-root"
    root.mkdir()
    server = SftpServer(
        root=root,
        port=0,
        host_key=asyncssh.generate_private_key("ssh-ed25519"),
        client_key=asyncssh.generate_private_key("ssh-ed25519"),
    )
    acceptor = await asyncssh.listen(
        "127.0.0.1",
        0,
        server_host_keys=[server.host_key],
        server_factory=lambda: _Server(server),
        sftp_factory=_sftp_factory(server),
    )
    server.port = acceptor.sockets[0].getsockname()[1]
    server.acceptor = acceptor
    try:
        yield server
    finally:
        acceptor.close()
        await acceptor.wait_closed()
