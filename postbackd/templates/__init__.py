"""Templates (DESIGN §5): the names other packages may import.

Inside: `engine` (a configuration's templates, rendered for one event), `compile` (the sandbox,
``##{{`` and format-aware escaping, compiled once and cached), `escape` (JSON/XML escaping and
content types), `output` (a rendered body must be valid JSON/XML), `check` (the linter behind
`postbackd check` and `render`), `runtime` (undefined variables), `errors` (render errors and
warnings with their template line), `budget` (a render's time budget), `shipment` (a batch's
rows framed into one file) and `builtin` (the templates any trigger can name).
"""

from __future__ import annotations

from postbackd.templates.budget import within as render_budget
from postbackd.templates.builtin import BUILTIN_TEMPLATES
from postbackd.templates.check import TemplateFinding, check_template, render_samples
from postbackd.templates.compile import CompiledCache
from postbackd.templates.engine import Rendered, RenderError, TemplateEngine, TemplateWarning
from postbackd.templates.escape import content_type_for
from postbackd.templates.shipment import FileFrame, compose_file

__all__ = [
    "BUILTIN_TEMPLATES",
    "CompiledCache",
    "FileFrame",
    "RenderError",
    "Rendered",
    "TemplateEngine",
    "TemplateFinding",
    "TemplateWarning",
    "check_template",
    "compose_file",
    "content_type_for",
    "render_budget",
    "render_samples",
]
