"""The UI's Jinja2 environment and its HTML responses.

A separate environment from the postback templates' sandbox, with autoescaping on for every
template: event data, config values and error messages all reach the page escaped. Every page
goes out with a Content-Security-Policy that allows only this UI's own CSS and script, so even
a value that slipped through could not run.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from aiohttp import web
from jinja2 import Environment, PackageLoader, StrictUndefined

from postbackd import __version__
from postbackd.ui import pretty

CSP = (
    "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
STATIC_TYPES = {".css": "text/css", ".js": "text/javascript"}


def build_environment() -> Environment:
    env = Environment(
        loader=PackageLoader("postbackd.ui", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        timestamp=pretty.timestamp,
        iso=pretty.iso,
        relative=pretty.relative,
        duration=pretty.duration,
        pretty_body=pretty.pretty_body,
        pretty_json=pretty.pretty_json,
        masked_headers=pretty.masked_headers,
        scalar=pretty.scalar,
    )
    env.globals["version"] = __version__
    return env


ENVIRONMENT = build_environment()


def render(name: str, **context: Any) -> str:
    return ENVIRONMENT.get_template(name).render(**context)


def html(text: str, status: int = 200) -> web.Response:
    return web.Response(
        text=text,
        status=status,
        content_type="text/html",
        charset="utf-8",
        headers=SECURITY_HEADERS,
    )


def redirect(location: str) -> web.Response:
    """303 See Other: after a POST the browser GETs `location` (no resubmit on reload)."""
    return web.Response(status=303, headers={"Location": location, **SECURITY_HEADERS})


def _load_static() -> dict[str, tuple[bytes, str]]:
    folder = resources.files("postbackd.ui").joinpath("static")
    files = {}
    for entry in folder.iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if suffix in STATIC_TYPES:
            files[entry.name] = (entry.read_bytes(), STATIC_TYPES[suffix])
    return files


STATIC = _load_static()


async def static(request: web.Request) -> web.Response:
    """The UI's CSS and script: public (no secrets in them), cached for an hour."""
    found = STATIC.get(request.match_info["name"])
    if found is None:
        return web.Response(status=404, text="not found")
    body, content_type = found
    return web.Response(
        body=body,
        content_type=content_type,
        charset="utf-8",
        headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )
