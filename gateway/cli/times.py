"""Times as people type them on the command line."""
import datetime


def utc_time(text: str) -> datetime.datetime:
    """A time given as ISO 8601 (naive: UTC)."""
    try:
        at = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise SystemExit(f"cardgate: {text!r} is not a time like 2026-12-01 or 2026-12-01T08:00") from None
    return at if at.tzinfo else at.replace(tzinfo=datetime.timezone.utc)
