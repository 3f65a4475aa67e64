"""What cardgate tells about a loyalty member: for an authorization, the points a sale
earned (or a return took back) and why, the card's tier, and the discount to apply with
its reason; on request, the member's standing (tier, progress, discount)."""
import collections

from cardgate.fastcore import records
from cardgate.fastcore.records import Op
from cardgate.gateway.loyalty import words
from cardgate.v1 import common_pb2

_LOYALTY_OPS = (Op.PURCHASE, Op.COMPLETE, Op.LOYALTY_SALE, Op.REFUND, Op.REVERSAL)


def loyalty_outcome(store, reply):
    """(LoyaltyOutcome, the card's money currency) for a reply of a card in a loyalty
    program, or (None, None)."""
    if reply.op not in _LOYALTY_OPS or not reply.card_id or not (
            reply.op == Op.LOYALTY_SALE or reply.points_earned or reply.points_seq or
            reply.points_redeemed or
            reply.tier or reply.discount_bp):
        return None, None
    card = store.read_card_by_id(reply.card_id)
    found = store.read_program_of_range(card.range_id)
    program = found[0] if found else None
    currency = store.read_range(card.range_id).currency
    explanation = ""
    if reply.points_seq:
        for line, entry in store.read_points_lines(card.card_id, 1, seq=reply.points_seq):
            outlet = store.read_outlet(line.outlet_code) if line.outlet_code else None
            explanation = words.describe_line(line, entry, program, outlet, currency)
    return common_pb2.LoyaltyOutcome(
        points_earned=reply.points_earned, points_balance=reply.points_balance,
        tier=words.tier_name(program, reply.tier),
        tier_up=bool(reply.earn_flags & records.EARNED_FLAG_TIER_UP),
        welcome_bonus=bool(reply.earn_flags & records.EARNED_FLAG_WELCOME),
        birthday_bonus=bool(reply.earn_flags & records.EARNED_FLAG_BIRTHDAY),
        discount_bp=reply.discount_bp,
        discount=common_pb2.Money(amount_minor=reply.discount_minor, currency=currency)
        if reply.discount_minor else None,
        discount_reason=words.discount_reason(program, reply.discount_bp,
                                              reply.lifetime_spend_minor, currency),
        explanation=explanation, points_redeemed=reply.points_redeemed,
        points_value=common_pb2.Money(amount_minor=reply.points_value_minor, currency=currency)
        if reply.points_redeemed else None), currency


Standing = collections.namedtuple("Standing", "tier rolling_total next_tier to_next_tier "
                                  "tier_review_s discount_bp next_discount_bp to_next_discount")


def standing(program, member, tier: int, rolling_total: int, discount_bp: int) -> Standing:
    """Where the member stands now (tier, 12-month total and discount from
    Store.read_membership), with the next tier and discount level and what they take."""
    spend = member.lifetime_spend_minor if member else 0
    upper = program.tiers[tier] if tier < len(program.tiers) else None
    step = next((s for s in program.discounts if s.minimum_spend_minor > spend), None)
    return Standing(tier, rolling_total, upper.name if upper else "",
                    max(upper.minimum - rolling_total, 0) if upper else 0,
                    member.tier_review_s if member else 0, discount_bp,
                    step.discount_bp if step else 0,
                    step.minimum_spend_minor - spend if step else 0)
