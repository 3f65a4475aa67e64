"""Loyalty in words a customer understands: how a sale's points came about, what each
line of a statement means, why a discount applies. Built from what the core recorded
(the statement line of the sale, the journal entry) and the program's names."""
import decimal

from cardgate.fastcore.records import Op, RuleKind
from cardgate.gateway.money import format_minor

ADJUSTMENT_REASONS = {1: "a correction", 2: "goodwill", 3: "fraud", 4: "breakage",
                      5: "card retired"}


def _decimal_text(value: int, scale: int) -> str:
    """value / 10**scale without trailing zeros: 1500, 3 -> '1.5'."""
    text = format(decimal.Decimal(value).scaleb(-scale).normalize(), "f")
    return text


def times(permille: int) -> str:
    return "×" + _decimal_text(permille, 3)


def percent(bp: int) -> str:
    return _decimal_text(bp, 2) + " %"


def points_text(n: int) -> str:
    return f"{n:,} point" + ("" if abs(n) == 1 else "s")


def litres(ml: int) -> str:
    return "litre" if ml == 1000 else f"{_decimal_text(ml, 3)} L"


def place_name(outlet) -> str:
    """An outlet as customers know it: its display name ("Station 12"), else its own id
    (not the merchant's)."""
    if outlet is None:
        return ""
    return outlet.display_name or outlet.name.split("/", 1)[-1]


def rule_terms(kind: int, points: int, per: int, currency: str) -> str:
    if kind == RuleKind.PER_AMOUNT:
        return f"{points_text(points)} per {format_minor(per, currency).split(' ')[0]}"
    if kind == RuleKind.PER_VOLUME:
        return f"{points_text(points)} per {litres(per)}"
    if kind == RuleKind.MULTIPLIER:
        return f"{times(points)} promotion"
    return f"+{points:,} bonus"


def tier_name(program, tier: int) -> str:
    if program is None or not 1 <= tier <= len(program.tiers):
        return ""
    return program.tiers[tier - 1].name


def explain_earn(line, program, outlet, currency: str) -> str:
    """'+150 points: 2 points per litre at Station 12, ×1.5 Gold tier, birthday +100'."""
    place = place_name(outlet)
    parts = []
    for part in line.parts:
        text = rule_terms(part.kind, part.points, part.per, currency)
        if part.kind in (RuleKind.PER_AMOUNT, RuleKind.PER_VOLUME) and place:
            text += f" at {place}"
        parts.append(text)
    if line.tier_multiplier_permille != 1000:
        name = tier_name(program, line.tier)
        parts.append(f"{times(line.tier_multiplier_permille)} {name} tier".replace("  ", " "))
    if line.welcome:
        parts.append(f"welcome +{line.welcome_points:,}")
    if line.birthday:
        parts.append(f"birthday +{line.birthday_points:,}")
    if not parts:
        parts.append("no earn rule applied" + (f" at {place}" if place else ""))
    return f"+{points_text(line.points)}: " + ", ".join(parts)


def describe_line(line, entry, program, outlet, currency: str) -> str:
    """One statement line: an earn explained, or what else moved the points."""
    n = line.points
    signed = f"{'+' if n > 0 else '-'}{points_text(abs(n))}"
    place = place_name(outlet)
    at = f" at {place}" if place else ""
    if line.op in (Op.PURCHASE, Op.COMPLETE, Op.LOYALTY_SALE):
        return explain_earn(line, program, outlet, currency)
    if line.op == Op.EARN_POINTS:
        return f"{signed}: earned{at}"
    if line.op == Op.REDEEM_POINTS:
        return f"{signed}: redeemed{at}"
    if line.op == Op.POINTS_EXPIRY:
        return f"{signed}: expired (not used in time)"
    if line.op == Op.ADJUST_POINTS:
        reason = ADJUSTMENT_REASONS.get(entry.reason, "an operator's decision")
        return f"{signed}: adjusted by the program ({reason})"
    if line.op == Op.TRANSFER_POINTS:
        return f"{signed}: " + ("received from another member" if n > 0 else "given to another member")
    if line.op == Op.RESERVE_POINTS:
        return f"{signed}: held for a redemption{at}"
    if line.op in (Op.RELEASE_POINTS, Op.POINTS_HOLD_EXPIRY):
        return f"{signed}: " + ("a held redemption was released" if line.op == Op.RELEASE_POINTS
                                else "a held redemption was not confirmed in time; released")
    if line.op == Op.REFUND:
        return f"{signed}: goods returned, the points they earned taken back"
    if line.op == Op.REVERSAL:
        return f"{signed}: " + ("a return was cancelled" if n > 0 else "a sale was cancelled")
    return signed


def discount_reason(program, bp: int, lifetime_spend_minor: int, currency: str) -> str:
    """Why the POS gives this discount, e.g. '5 % discount: lifetime spend 50,120.00 EUR
    has reached 50,000.00 EUR'."""
    if not bp or program is None:
        return ""
    step = max((s for s in program.discounts if s.discount_bp == bp), default=None,
               key=lambda s: s.minimum_spend_minor)
    if step is None or step.minimum_spend_minor == 0:
        return f"{percent(bp)} member discount"
    return (f"{percent(bp)} discount: lifetime spend {format_minor(lifetime_spend_minor, currency)} "
            f"has reached {format_minor(step.minimum_spend_minor, currency)}")
