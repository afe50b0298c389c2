"""Secrets masked by value: the one place that decides what of a text or a record is hidden.

Masking by name (a header called ``Authorization``) misses a secret put under any other name
(``X-Credentials = "${env:KEY}"``) and a secret inside a message (an invalid URL printed with
its password). So the configuration loader collects every *value* that came from a secret
reference (``${env:…}``, ``${file:…}``, ``${credential:…}``, a plugin's scheme) or that was
written under a secret-looking key (``token``, ``password``, ``secret``, ``*_key`` …), and a
`Redactor` built from them replaces each occurrence with ``***`` — in the request log before it
is stored, in error messages before they are reported, and in log lines before they are
written (DESIGN §9).

A value is also masked in the forms in which it commonly reappears: percent-encoded (in a URL)
and escaped as in ``repr``/JSON. Values shorter than `MIN_SUBSTRING` characters are masked only
where a whole string equals them: hiding every ``"ab"`` in every message would make messages
unreadable, and a two-character secret protects nothing anyway.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote, quote_plus

from postbackd import jsoncodec

MASK = "***"
MIN_SUBSTRING = 4
SECRET_KEY = re.compile(r"key|token|secret|auth|pass|sig|cookie|credential", re.IGNORECASE)
"""A setting or header name whose value is a secret even when written in clear."""

_CACHED_TEXTS = 4096  # per redactor: log lines and request fields repeat
SUBSTRING_TESTS = 16  # up to this many forms, `in` tests run before the regex
_CACHEABLE_LENGTH = 256


def is_secret_name(name: str) -> bool:
    """Whether a setting or header called `name` holds a secret whatever its value."""
    return bool(SECRET_KEY.search(name))


def _forms(value: str) -> set[str]:
    """`value` and the encodings under which it shows up in URLs, reprs and JSON."""
    forms = {value, quote(value, safe=""), quote(value, safe="@:"), quote_plus(value)}
    forms.add(json.dumps(value)[1:-1])
    forms.add(repr(value)[1:-1])
    return {form for form in forms if form}


@dataclass(frozen=True)
class Redactor:
    """Replaces known secret values by ``***`` in texts and nested records (dicts, lists)."""

    values: frozenset[str] = frozenset()
    _state: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, values: Iterable[str]) -> Redactor:
        return cls(frozenset(v for v in values if isinstance(v, str) and v.strip()))

    def __bool__(self) -> bool:
        return bool(self.values)

    def __or__(self, other: Redactor) -> Redactor:
        if not other.values or other.values <= self.values:
            return self
        if not self.values:
            return other
        return Redactor(self.values | other.values)

    def text(self, text: str) -> str:
        """`text` with every known secret value (in any of its forms) replaced by ``***``."""
        if not self.values or not text:
            return text
        if text in self.values:
            return MASK
        cache: dict[str, str] = self._state.setdefault("cache", {})
        known = cache.get(text)
        if known is not None:
            return known
        masked = self._masked(text)
        if len(text) <= _CACHEABLE_LENGTH:
            if len(cache) >= _CACHED_TEXTS:
                cache.clear()
            cache[text] = masked
        return masked

    def tree(self, value: Any) -> Any:
        """A copy of `value` (str, dict, list, tuple; anything else as is) with secrets masked.

        Mapping keys (header names, field names) are kept: they are not secrets, and a
        masked key would hide which header carried the secret.
        """
        if not self.values:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {k: self.tree(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.tree(item) for item in value]
        return value

    def _masked(self, text: str) -> str:
        """A trigger's redactor knows a secret or two: a substring test per form (C speed) rules
        out most texts before the regex runs; a whole configuration's redactor goes straight to
        the regex, one alternation of every form."""
        forms, pattern = self._compiled()
        if pattern is None:
            return text
        if forms is not None and not any(form in text for form in forms):
            return text
        return pattern.sub(MASK, text)

    def _compiled(self) -> tuple[tuple[str, ...] | None, re.Pattern[str] | None]:
        compiled: tuple[tuple[str, ...] | None, re.Pattern[str] | None] | None = self._state.get(
            "compiled"
        )
        if compiled is None:
            forms: set[str] = set()
            for value in self.values:
                if len(value) >= MIN_SUBSTRING:
                    forms |= _forms(value)
            # longest first, so a secret that contains another is masked whole
            ordered = sorted(forms, key=lambda form: (-len(form), form))
            pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None
            compiled = (tuple(ordered) if len(ordered) <= SUBSTRING_TESTS else None), pattern
            self._state["compiled"] = compiled
        return compiled

    def appears_in(self, text: str) -> bool:
        """Whether any known secret (in any of its forms) occurs in `text`."""
        forms, pattern = self._compiled()
        if pattern is None:
            return False
        if forms is not None:
            return any(form in text for form in forms)
        return pattern.search(text) is not None

    def union(self, other: Redactor) -> Redactor:
        """`self | other`, the same object each time for the same `other` (its pattern is
        compiled once, not at every attempt)."""
        unions: dict[frozenset[str], Redactor] = self._state.setdefault("unions", {})
        known = unions.get(other.values)
        if known is None:
            if len(unions) >= _CACHED_TEXTS:
                unions.clear()
            known = unions[other.values] = self | other
        return known


NO_SECRETS = Redactor()

_OutcomeT = TypeVar("_OutcomeT")


def masked_outcome(outcome: _OutcomeT, *redactors: Redactor) -> _OutcomeT:
    """An attempt's `Outcome` with its error, detail, request and response masked by value.

    Plugins mask what they know by name; this runs on every outcome before it is stored,
    shown or logged, whatever the plugin did, so a secret under any name stays hidden.
    """
    redactor = NO_SECRETS
    for each in redactors:
        redactor = redactor.union(each)
    if not redactor:
        return outcome
    # One C-speed look at the whole record first: almost every outcome holds no secret, and
    # walking it field by field cost more than the attempt's own bookkeeping.
    parts = [getattr(outcome, name, None) for name in ("error", "detail", "request", "response")]
    if not redactor.appears_in(jsoncodec.dumps_any_keys(parts, default=str).decode()):
        return outcome
    changes = {
        name: redactor.tree(value)
        for name in ("error", "detail", "request", "response")
        if (value := getattr(outcome, name, None)) is not None
    }
    return dataclasses.replace(outcome, **changes)  # type: ignore[type-var]
