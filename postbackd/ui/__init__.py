"""The web UI on the admin listener: overview, Requests page, template workbench.

Server-rendered HTML (Jinja2, autoescaped) that works without JavaScript; a little script
only makes it nicer (live state on a delivery page, Ctrl+Enter in the workbench, confirm
before bulk actions). `UiRoutes(backend).routes()` are added to the admin API's routes.
"""

from postbackd.ui.routes import UiRoutes

__all__ = ["UiRoutes"]
