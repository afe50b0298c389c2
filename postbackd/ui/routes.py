"""The UI's routes on the admin listener, and the guard every page passes through.

The guard reads the configuration in force at each request: ``[ui] enabled = false`` turns
every UI route into 404 (a reload switches it either way); with an admin token, a visitor
without a logged-in session sees only the login page; with none (a loopback listener), every
visitor gets an anonymous session at once — it still carries the CSRF token every POST needs.

Logins are throttled per client address (`auth.LoginThrottle`: a few free failures, then a
doubling wait answered with 429 and Retry-After) and every failure is logged with the address,
never with what was typed. Logging out ends the session on the server as well.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import quote

from aiohttp import web

from postbackd.logs import get_logger
from postbackd.ui import auth, views
from postbackd.ui.overview import Overview
from postbackd.ui.replay import Replay
from postbackd.ui.requests_pages import RequestsPages
from postbackd.ui.visit import UiBackend, Visit
from postbackd.ui.workbench import Workbench

Page = Callable[[Visit], Awaitable[web.Response]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_FORM_FIELD = 512 * 1024

log = get_logger(__name__)


class UiRoutes:
    def __init__(
        self,
        backend: UiBackend,
        signer: auth.SessionSigner | None = None,
        throttle: auth.LoginThrottle | None = None,
    ) -> None:
        self.backend = backend
        self.signer = signer or auth.SessionSigner()
        self.throttle = throttle or auth.LoginThrottle()
        self.requests = RequestsPages(backend)
        self.replay = Replay(backend)
        self.workbench = Workbench(backend)
        self.overview = Overview(backend)

    def routes(self) -> list[web.RouteDef]:
        get, post = self._get, self._post
        return [
            web.get("/ui", self._enabled(self._to_index)),
            web.get("/ui/static/{name}", self._enabled(views.static)),
            web.get("/ui/login", self._enabled(self.login_page)),
            web.post("/ui/login", self._enabled(self.login)),
            web.post("/ui/logout", post(self.logout)),
            web.get("/ui/", get(self.overview.page)),
            web.get("/ui/requests", get(self.requests.list)),
            web.post("/ui/requests/retry-dead", post(self.requests.retry_dead)),
            web.get("/ui/requests/replay", get(self.replay.confirm)),
            web.post("/ui/requests/replay", post(self.replay.run)),
            web.get("/ui/requests/{id}", get(self.requests.detail)),
            web.post("/ui/requests/{id}/{action}", post(self.requests.action)),
            web.get("/ui/workbench", get(self.workbench.page)),
            web.post("/ui/workbench", post(self.workbench.render)),
            web.post("/ui/workbench/send", post(self.workbench.send)),
        ]

    # ------------------------------------------------------------------ the guard

    def _enabled(self, handler: Handler) -> Handler:
        async def enabled(request: web.Request) -> web.StreamResponse:
            if not self.backend.current().config.ui.enabled:
                return web.Response(status=404, text="404: the web UI is disabled ([ui] enabled)")
            return await handler(request)

        return enabled

    def _get(self, page: Page) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            generation = self.backend.current()
            token = generation.config.daemon.admin_token
            session = self.signer.read(token, request.cookies.get(auth.COOKIE))
            cookie = None
            if token and (session is None or not session.logged_in):
                return views.redirect(f"/ui/login?next={quote(request.path_qs, safe='')}")
            if session is None:
                session, cookie = self.signer.issue(None, "a")
            visit = Visit(request, generation, self.signer.csrf(token, session), bool(token))
            response = await page(visit)
            if cookie is not None:
                auth.set_cookie(response, request, cookie)
            return response

        return self._enabled(guarded)

    def _post(self, page: Page) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            generation = self.backend.current()
            token = generation.config.daemon.admin_token
            session = self.signer.read(token, request.cookies.get(auth.COOKIE))
            if session is None or (token and not session.logged_in):
                return _forbidden("your session has ended or was never opened: log in again")
            form = await _read_form(request)
            if not self.signer.csrf_ok(token, session, form.get("csrf")):
                return _forbidden(
                    "this form was not sent by a page of this UI (its CSRF token is missing "
                    "or stale): go back, reload the page and try again"
                )
            csrf = self.signer.csrf(token, session)
            return await page(Visit(request, generation, csrf, bool(token), form))

        return self._enabled(guarded)

    # ------------------------------------------------------------------ login

    async def _to_index(self, request: web.Request) -> web.StreamResponse:
        return views.redirect("/ui/")

    async def login_page(self, request: web.Request) -> web.StreamResponse:
        token = self.backend.current().config.daemon.admin_token
        target = auth.safe_next(request.query.get("next"))
        session = self.signer.read(token, request.cookies.get(auth.COOKIE))
        if not token or (session is not None and session.logged_in):
            return views.redirect(target)
        return self._login_form(request, token, session, target)

    async def login(self, request: web.Request) -> web.StreamResponse:
        token = self.backend.current().config.daemon.admin_token
        if not token:
            return views.redirect("/ui/")
        session = self.signer.read(token, request.cookies.get(auth.COOKIE))
        form = await _read_form(request)
        if session is None or not self.signer.csrf_ok(token, session, form.get("csrf")):
            return _forbidden("the login form was stale: open the login page again")
        target = auth.safe_next(form.get("next"))
        client = request.remote
        wait = self.throttle.wait(client)
        if wait > 0:
            # Refused before the token is compared: guessing faster cannot skip the wait.
            if self.throttle.first_refusal(client):
                log.warning(
                    "ui login throttled",
                    client=auth.client_key(client),
                    retry_after=auth.retry_after_header(wait),
                )
            return self._login_form(request, token, session, target, status=429, wait=wait)
        if not auth.token_matches(token, form.get("token", "")):
            failure = self.throttle.failed(client)
            log.warning(
                "ui login failed",
                client=failure.client,
                failures=failure.failures,
                retry_after=auth.retry_after_header(failure.retry_after)
                if failure.retry_after > 0
                else None,
            )
            if failure.retry_after > 0:
                return self._login_form(
                    request, token, session, target, status=429, wait=failure.retry_after
                )
            return self._login_form(request, token, session, target, status=401)
        self.throttle.succeeded(client)
        _, cookie = self.signer.issue(token, "u")
        log.info("ui login", client=auth.client_key(client))
        response = views.redirect(target)
        auth.set_cookie(response, request, cookie)
        return response

    def _login_form(
        self,
        request: web.Request,
        token: str,
        session: auth.Session | None,
        target: str,
        status: int = 200,
        wait: float = 0.0,
    ) -> web.Response:
        """The login page; 401 after a wrong token, 429 (with Retry-After) while throttled."""
        cookie = None
        if session is None:
            session, cookie = self.signer.issue(token, "a")
        text = views.render(
            "login.html",
            visit=None,
            csrf=self.signer.csrf(token, session),
            next=target,
            failed=status == 401,
            wait=auth.retry_after_header(wait) if status == 429 else None,
        )
        response = views.html(text, status)
        if status == 429:
            response.headers["Retry-After"] = auth.retry_after_header(wait)
        if cookie is not None:
            auth.set_cookie(response, request, cookie)
        return response

    async def logout(self, visit: Visit) -> web.Response:
        """Ends the session here too, so a copy of the cookie no longer opens the UI."""
        token = visit.generation.config.daemon.admin_token
        session = self.signer.read(token, visit.request.cookies.get(auth.COOKIE))
        if session is not None:
            self.signer.end(session)
        response = views.redirect("/ui/login" if visit.login else "/ui/")
        auth.clear_cookie(response)
        return response


async def _read_form(request: web.Request) -> dict[str, str]:
    data = await request.post()
    return {k: v for k, v in data.items() if isinstance(v, str) and len(v) <= MAX_FORM_FIELD}


def _forbidden(message: str) -> web.Response:
    return views.html(
        views.render("message.html", visit=None, title="Refused", message=message), 403
    )
