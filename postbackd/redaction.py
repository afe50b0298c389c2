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

MASK = "***"
MIN_SUBSTRING = 4
SECRET_KEY = re.compile(r"key|token|secret|auth|pass|sig|cookie|credential", re.IGNORECASE)
"""A setting or header name whose value is a secret even when written in clear."""

_CACHED_TEXTS = 4096  # per redactor: log lines and request fields repeat
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
        pattern = self._pattern()
        masked = text if pattern is None else pattern.sub(MASK, text)
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
            return {
                self.tree(k) if isinstance(k, str) else k: self.tree(v) for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self.tree(item) for item in value]
        return value

    def finds_secret(self, value: Any) -> bool:
        """Whether any string in `value` (nested as `tree` walks it, keys too) holds a secret.

        One walk and one search over all its strings at once: an attempt's record holds a
        score of strings, nearly always without a secret, and masking each (a cache look-up
        or a search apiece, and a copy of every dict) cost more than the rest of recording
        the attempt. The strings are searched joined by NUL: a form spans two strings only if
        the secret holds a NUL, and then the answer is a harmless yes.
        """
        if not self.values:
            return False
        strings: list[str] = []
        _collect_strings(value, strings)
        if not strings:
            return False
        if not self.values.isdisjoint(strings):
            return True
        pattern = self._pattern()
        return pattern is not None and pattern.search("\x00".join(strings)) is not None

    def _pattern(self) -> re.Pattern[str] | None:
        if "pattern" not in self._state:
            forms: set[str] = set()
            for value in self.values:
                if len(value) >= MIN_SUBSTRING:
                    forms |= _forms(value)
            # longest first, so a secret that contains another is masked whole
            ordered = sorted(forms, key=lambda form: (-len(form), form))
            self._state["pattern"] = (
                re.compile("|".join(map(re.escape, ordered))) if ordered else None
            )
        pattern: re.Pattern[str] | None = self._state["pattern"]
        return pattern


NO_SECRETS = Redactor()


def _collect_strings(value: Any, strings: list[str]) -> None:
    """The strings of `value` as `Redactor.tree` walks it (plain dicts, lists and scalars are
    told apart without the slower `Mapping` check)."""
    if isinstance(value, str):
        strings.append(value)
    elif value is None or isinstance(value, (int, float, bytes)):  # a tuple: faster than a union
        return
    elif isinstance(value, (dict, Mapping)):
        for key, item in value.items():
            if isinstance(key, str):
                strings.append(key)
            _collect_strings(item, strings)
    elif isinstance(value, list | tuple):
        for item in value:
            _collect_strings(item, strings)


_OutcomeT = TypeVar("_OutcomeT")


def masked_outcome(outcome: _OutcomeT, *redactors: Redactor) -> _OutcomeT:
    """An attempt's `Outcome` with its error, detail, request and response masked by value.

    Plugins mask what they know by name; this runs on every outcome before it is stored,
    shown or logged, whatever the plugin did, so a secret under any name stays hidden.
    """
    redactor = NO_SECRETS
    for each in redactors:
        redactor = redactor | each
    if not redactor:
        return outcome
    fields = [getattr(outcome, name, None) for name in ("error", "detail", "request", "response")]
    if not redactor.finds_secret(fields):
        return outcome  # nothing to mask: no copy
    changes = {
        name: redactor.tree(value)
        for name in ("error", "detail", "request", "response")
        if (value := getattr(outcome, name, None)) is not None
    }
    return dataclasses.replace(outcome, **changes)  # type: ignore[type-var]
