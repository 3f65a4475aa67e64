"""Currencies (ISO 4217) and amounts: integers of minor units, never floats (and the
volumes people type, in litres, as integers of millilitres)."""
import decimal

# Alphabetic code -> number of minor-unit digits, for the currencies cardgate accepts.
CURRENCY_EXPONENTS = {
    "AED": 2, "ARS": 2, "AUD": 2, "BGN": 2, "BHD": 3, "BRL": 2, "CAD": 2, "CHF": 2,
    "CLP": 0, "CNY": 2, "COP": 2, "CZK": 2, "DKK": 2, "EGP": 2, "EUR": 2, "GBP": 2,
    "GEL": 2, "HKD": 2, "HUF": 2, "IDR": 2, "ILS": 2, "INR": 2, "ISK": 0, "JOD": 3,
    "JPY": 0, "KES": 2, "KRW": 0, "KWD": 3, "KZT": 2, "MAD": 2, "MXN": 2, "MYR": 2,
    "NGN": 2, "NOK": 2, "NZD": 2, "OMR": 3, "PHP": 2, "PKR": 2, "PLN": 2, "QAR": 2,
    "RON": 2, "RSD": 2, "SAR": 2, "SEK": 2, "SGD": 2, "THB": 2, "TND": 3, "TRY": 2,
    "TWD": 2, "UAH": 2, "USD": 2, "UZS": 2, "VND": 0, "ZAR": 2,
}
# The assets of accounts that are not money: whole loyalty points and subscription units
# (records.POINTS_ASSET, records.UNITS_ASSET).
WHOLE_ASSETS = {"PTS": 0, "UNT": 0}


class AmountError(ValueError):
    """An amount or currency a person typed or a client sent is not acceptable."""


def check_currency(code: str) -> str:
    if code not in CURRENCY_EXPONENTS:
        raise AmountError(f"currency {code!r} is not an ISO 4217 code cardgate accepts "
                          "(three capital letters, e.g. 'EUR')")
    return code


def _scaled(text: str, exponent: int, what: str, example: str, unit: str) -> int:
    try:
        value = decimal.Decimal(text)
    except decimal.InvalidOperation:
        raise AmountError(f"{what} {text!r} is not a number like {example}") from None
    scaled = value.scaleb(exponent)
    if not value.is_finite() or scaled != scaled.to_integral_value():
        raise AmountError(f"{what} {text!r} has more than {exponent} decimals for {unit}")
    return int(scaled)


def parse_amount_minor(text: str, currency: str) -> int:
    """'12.50' EUR -> 1250. Refuses more decimals than the currency has."""
    exponent = CURRENCY_EXPONENTS[check_currency(currency)]
    return _scaled(text, exponent, "amount", "12.50", currency)


def parse_litres_ml(text: str) -> int:
    """'64.21' -> 64210 millilitres."""
    return _scaled(text, 3, "volume", "64.210", "litres")


def decimal_text(amount_minor: int, currency: str) -> str:
    """1250, 'EUR' -> '12.50' (the currency's own number of decimals)."""
    exponent = CURRENCY_EXPONENTS.get(currency, WHOLE_ASSETS.get(currency, 2))
    sign = "-" if amount_minor < 0 else ""
    units, minor = divmod(abs(amount_minor), 10 ** exponent)
    return sign + (f"{units}.{minor:0{exponent}d}" if exponent else str(units))


def format_minor(amount_minor: int, currency: str) -> str:
    """1250, 'EUR' -> '12.50 EUR'."""
    return f"{decimal_text(amount_minor, currency)} {currency}"


def litres_text(volume_ml: int) -> str:
    """64210 -> '64.210'."""
    sign = "-" if volume_ml < 0 else ""
    litres, ml = divmod(abs(volume_ml), 1000)
    return f"{sign}{litres}.{ml:03d}"
