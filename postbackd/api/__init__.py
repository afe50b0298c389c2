"""The admin HTTP API: its routes (`routes`), the operator's verbs over HTTP (`verbs`) and the
OpenAPI 3.1 document that describes both (`openapi`, also committed as docs/openapi.json).

The face is `AdminApi`: the daemon builds it and hands its routes to the listener that serves
them.
"""

from postbackd.api.routes import AdminApi

__all__ = ["AdminApi"]
