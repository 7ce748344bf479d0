"""Money as integer cents inside, dollars (JSON numbers) at the edges.

Floats never carry an amount through the system: $0.10 + $0.20 must balance to the cent.
JSON bodies are parsed with ``parse_float=Decimal`` so "0.1" arrives here exactly.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

__all__ = [
    "MAX_AMOUNT_CENTS",
    "cents",
    "check_cents",
    "dollars",
    "format_dollars",
    "parse_cents",
]

#: The largest single transfer accepted: one billion dollars. Anything above is a typo or
#: an attack, and it keeps every sum comfortably inside a float's exact integer range.
MAX_AMOUNT_CENTS = 1_000_000_000_00


def parse_cents(value: object, *, allow_zero: bool = False) -> int:
    """Turn a dollar amount (int, Decimal or numeric string) into cents, or raise ValueError.

    Rejects booleans, floats (their decimal value is already lost), NaN and infinities,
    more than two decimals, negatives, zero (unless ``allow_zero``) and absurd sizes.
    """
    if isinstance(value, bool):
        raise ValueError("amount must be a number, not a boolean")
    if isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, Decimal):
        amount = value
    elif isinstance(value, str):
        try:
            amount = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError("amount must be a number") from None
    else:
        raise ValueError("amount must be a number")
    if not amount.is_finite():
        raise ValueError("amount must be a finite number")
    cents = amount * 100
    if cents != cents.to_integral_value():
        raise ValueError("amount must have at most 2 decimal places")
    return _in_range(int(cents), allow_zero)


def check_cents(value: object) -> int:
    """An amount as it travels on Kafka (``amount_cents``): a whole number of cents, more
    than 0 and at most ``MAX_AMOUNT_CENTS``, the same range ``parse_cents`` allows at the
    HTTP door. Raise ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("amount_cents must be a whole number of cents")
    return _in_range(value, allow_zero=False)


def _in_range(cents: int, allow_zero: bool) -> int:
    if cents < 0 or (cents == 0 and not allow_zero):
        raise ValueError("amount must be greater than 0")
    if cents > MAX_AMOUNT_CENTS:
        raise ValueError(f"amount must be at most {format_dollars(MAX_AMOUNT_CENTS)}")
    return cents


def dollars(cents: int) -> int | float:
    """Cents as a JSON-friendly dollar number: 100000 -> 1000, 99970 -> 999.7."""
    whole, rest = divmod(cents, 100)
    # cents / 100 is the float nearest to the decimal value, and its repr is that decimal.
    return whole if rest == 0 else cents / 100


def cents(amount: float) -> int:
    """The inverse of ``dollars``, for amounts this system wrote: 999.7 -> 99970."""
    return round(amount * 100)


def format_dollars(cents: int) -> str:
    """Cents for a log line, in the seed's style: $1000, $999.70, -$5."""
    sign = "-" if cents < 0 else ""
    whole, rest = divmod(abs(cents), 100)
    return f"{sign}${whole}" if rest == 0 else f"{sign}${whole}.{rest:02d}"
