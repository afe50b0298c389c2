"""Money and country names in templates: a one-file plugin for ``[daemon] plugin_dirs``.

Copy this file into a directory named in ``plugin_dirs`` and restart (or reload) postbackd:

    {{ totalPrice | money(currency) }}          → "€1,234.50"    (en, the default)
    {{ totalPrice | money("EUR", "de") }}       → "1.234,50 €"
    {{ country_name(shipTo.countryIsoCode) }}   → "Germany"

A value that is not a number is a render error naming it, so a wrong field shows in the
request log instead of a wrong amount going out.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from postbackd.plugin import RegisterFunction, hookimpl

__version__ = "1.0.0"
POSTBACKD_API_VERSION = 1

SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£", "JPY": "¥", "CHF": "CHF", "SEK": "kr", "PLN": "zł"}
MINOR_UNITS = {"JPY": 0, "KRW": 0, "HUF": 0}
COUNTRIES = {
    "AT": "Austria",
    "AU": "Australia",
    "BE": "Belgium",
    "BR": "Brazil",
    "CA": "Canada",
    "CH": "Switzerland",
    "CZ": "Czechia",
    "DE": "Germany",
    "DK": "Denmark",
    "ES": "Spain",
    "FI": "Finland",
    "FR": "France",
    "GB": "United Kingdom",
    "IE": "Ireland",
    "IT": "Italy",
    "JP": "Japan",
    "LU": "Luxembourg",
    "MX": "Mexico",
    "NL": "Netherlands",
    "NO": "Norway",
    "NZ": "New Zealand",
    "PL": "Poland",
    "PT": "Portugal",
    "SE": "Sweden",
    "US": "United States",
}


def money(value: Any, currency: str = "EUR", locale: str = "en") -> str:
    """``1234.5 | money("EUR")`` → ``€1,234.50``; ``locale="de"`` → ``1.234,50 €``."""
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"money: {value!r} is not a number") from None
    if not amount.is_finite():
        raise ValueError(f"money: {value!r} is not a finite number")
    code = str(currency).upper()
    places = MINOR_UNITS.get(code, 2)
    rounded = amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    digits = f"{abs(rounded):,.{places}f}"
    if locale == "de":
        digits = digits.translate(str.maketrans(",.", ".,"))
    sign = "-" if rounded < 0 else ""
    symbol = SYMBOLS.get(code, code)
    if locale == "de" or len(symbol) > 1:
        return f"{sign}{digits} {symbol}"
    return f"{sign}{symbol}{digits}"


def country_name(code: Any, default: str | None = None) -> str:
    """``country_name("DE")`` → ``Germany``; an unknown code gives `default`, else the code."""
    text = "" if code is None else str(code).strip()
    name = COUNTRIES.get(text.upper())
    if name is not None:
        return name
    return text if default is None else default


@hookimpl
def postbackd_register_template_filters(register: RegisterFunction) -> None:
    register("money", money)


@hookimpl
def postbackd_register_template_globals(register: RegisterFunction) -> None:
    register("country_name", country_name)
