"""The web UI's login against a real daemon (issue 14, item 9): guessing the admin token is
throttled per client address and logged, and logging out ends the session on the server.

Clients connect from 127.0.0.1 and from 127.0.0.2 (both loopback on Linux) to be two
addresses to the daemon.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import aiohttp
import pytest

from postbackd.testing import PostbackdDaemon
from tests.faults.daemon_checks import assert_still_ready, log_lines

TOKEN = "ui-login-token-9d41c07b"
WRONG = "wrong-guess-5a3e"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class UiClient:
    """A browser stand-in from one source address: keeps the UI cookie, posts forms."""

    daemon: PostbackdDaemon
    http: aiohttp.ClientSession

    async def login_form(self) -> str:
        """Open the login page (which sets the anonymous cookie); its CSRF token."""
        async with self.http.get(f"{self.daemon.base_url}/ui/login") as answer:
            assert answer.status == 200, await answer.text()
            match = CSRF.search(await answer.text())
        assert match is not None
        return match.group(1)

    async def log_in(self, token: str, csrf: str) -> aiohttp.ClientResponse:
        form = {"csrf": csrf, "next": "/ui/", "token": token}
        async with self.http.post(
            f"{self.daemon.base_url}/ui/login", data=form, allow_redirects=False
        ) as answer:
            await answer.read()
            return answer

    def cookie(self) -> str:
        (morsel,) = [c for c in self.http.cookie_jar if c.key == "postbackd_ui"]
        return morsel.value


@pytest.fixture
async def ui_client() -> AsyncIterator[Callable[[PostbackdDaemon, str], UiClient]]:
    sessions: list[aiohttp.ClientSession] = []

    def make(daemon: PostbackdDaemon, source: str = "127.0.0.1") -> UiClient:
        http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(local_addr=(source, 0)),
            cookie_jar=aiohttp.CookieJar(unsafe=True),  # the daemon is on an IP address
        )
        sessions.append(http)
        return UiClient(daemon, http)

    yield make
    for http in sessions:
        await http.close()


async def test_guessing_is_throttled_and_logged_while_the_token_still_works_elsewhere(
    postbackd_daemon: Callable[..., PostbackdDaemon],
    ui_client: Callable[[PostbackdDaemon, str], UiClient],
) -> None:
    daemon = postbackd_daemon(daemon={"admin_token": TOKEN})
    daemon.token = TOKEN
    await daemon.start()
    guesser = ui_client(daemon, "127.0.0.1")
    csrf = await guesser.login_form()

    statuses, retry_after = [], []
    for _ in range(100):
        answer = await guesser.log_in(WRONG, csrf)
        statuses.append(answer.status)
        retry_after.append(answer.headers.get("Retry-After"))
    assert statuses[:4] == [401] * 4, statuses  # a few typos are free
    assert set(statuses[4:]) == {429}, statuses
    assert retry_after[4] == "1" and all(r is not None for r in retry_after[4:])
    # while it waits, even the right token is refused from there: it is not even compared
    assert (await guesser.log_in(TOKEN, csrf)).status == 429

    failed = log_lines(daemon, "ui login failed")
    # only compared guesses count (5, or a few more on a slow machine where a 1 s wait ran
    # out during the loop): the refusals while waiting are neither compared nor counted
    assert 5 <= len(failed) <= 8, failed
    assert all(line["client"] == "127.0.0.1" for line in failed)
    assert [line["failures"] for line in failed] == list(range(1, len(failed) + 1))
    throttled = log_lines(daemon, "ui login throttled")
    assert 1 <= len(throttled) <= len(failed) - 4, throttled  # one line per wait, not per refusal
    assert WRONG not in daemon.logs() and TOKEN not in daemon.logs()

    # another address is not slowed by the guesser and logs in at once
    admin = ui_client(daemon, "127.0.0.2")
    answer = await admin.log_in(TOKEN, await admin.login_form())
    assert answer.status == 303 and answer.headers["Location"] == "/ui/"
    async with admin.http.get(f"{daemon.base_url}/ui/", allow_redirects=False) as page:
        assert page.status == 200
    status, _ = await daemon.request("GET", "/readyz")
    assert status == 200

    # after the wait the right token works from the guesser's address too, and resets it
    await asyncio.sleep(float(retry_after[-1] or 1) + 0.1)
    answer = await guesser.log_in(TOKEN, csrf)
    assert answer.status == 303, answer.status
    assert [line["client"] for line in log_lines(daemon, "ui login")] == [
        "127.0.0.2",
        "127.0.0.1",
    ]
    await assert_still_ready(daemon)


async def test_a_logged_out_cookie_is_refused(
    postbackd_daemon: Callable[..., PostbackdDaemon],
    ui_client: Callable[[PostbackdDaemon, str], UiClient],
) -> None:
    daemon = postbackd_daemon(daemon={"admin_token": TOKEN})
    daemon.token = TOKEN
    await daemon.start()
    user = ui_client(daemon, "127.0.0.1")
    assert (await user.log_in(TOKEN, await user.login_form())).status == 303
    stolen = user.cookie()  # a copy of the logged-in cookie, as a leak would keep it
    async with user.http.get(f"{daemon.base_url}/ui/requests") as page:
        assert page.status == 200
        match = CSRF.search(await page.text())
    assert match is not None
    async with user.http.post(
        f"{daemon.base_url}/ui/logout", data={"csrf": match.group(1)}, allow_redirects=False
    ) as answer:
        assert answer.status == 303 and answer.headers["Location"] == "/ui/login"

    headers = {"Cookie": f"postbackd_ui={stolen}"}
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as replay:
        async with replay.get(
            f"{daemon.base_url}/ui/requests", headers=headers, allow_redirects=False
        ) as page:
            assert page.status in (302, 303), page.status
            assert page.headers["Location"].startswith("/ui/login")
        async with replay.post(
            f"{daemon.base_url}/ui/requests/retry-dead",
            headers=headers,
            data={"csrf": match.group(1)},
            allow_redirects=False,
        ) as post:
            assert post.status == 403
    # logging in again opens a new session; the old cookie stays refused
    again = ui_client(daemon, "127.0.0.1")
    assert (await again.log_in(TOKEN, await again.login_form())).status == 303
    async with again.http.get(f"{daemon.base_url}/ui/", allow_redirects=False) as page:
        assert page.status == 200
    async with (
        aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as replay,
        replay.get(f"{daemon.base_url}/ui/", headers=headers, allow_redirects=False) as page,
    ):
        assert page.status in (302, 303)
    await assert_still_ready(daemon)
