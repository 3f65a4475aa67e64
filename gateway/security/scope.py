"""Scoped operators (tenancy): an operator certificate may be bound to an issuer's card
ranges (urn:cardgate:operator:ranges:1,7) or to a coalition partner
(urn:cardgate:operator:partner:12); it then sees and changes only those. A global
operator (urn:cardgate:operator) remains for the host.

What a scoped operator may call, and what in the request must be in its scope; every
other RPC is the global operator's alone:
  cards named by PAN (pan, to_pan, new_pan)   their range among the operator's ranges
  a range named by range_id                   among its ranges
  cards named by id (card_ids)                their ranges among its ranges
  a partner named by partner_id               its partner
  a program's settlement                      read by its partner (the answer keeps
                                              only that partner's line)
  a listing of transactions                   filtered by one of its ranges (range_id),
                                              or by its partner (partner_id)
"""
CARD_RPCS = frozenset((
    "AdjustBalance", "ClearBalance", "DeactivateCard", "ReplaceCard", "SetCardStatus",
    "SetCardPin", "SetCardStage", "GetBalance", "AdjustPoints", "TransferPoints", "GetPoints",
    "GetMember", "SetMember", "GetStatement", "AssignCard", "GetFleetUsage"))
RANGE_RPCS = frozenset(("CreateCardRange", "IssueCards", "IssueGiftCards",
                        "SetCardRangeAcceptance", "ListTransactions"))
PARTNER_RPCS = frozenset(("DefinePartner", "GetSettlement", "ListTransactions"))
PARTNER_NAMED = frozenset(("DefinePartner", "ListTransactions"))    # partner_id must be its own
CARD_FIELDS = ("pan", "to_pan", "new_pan")


def refusal(identity, method: str, request, range_of_pan, range_of_card_id):
    """Why a scoped operator's call is outside its scope (naming the field, never a card
    number), or None. range_of_pan / range_of_card_id: the range of a card, or None when
    it is not known (answered as outside: nothing is revealed about it)."""
    name = method.rsplit("/", 1)[-1]
    if identity.ranges:
        if name in RANGE_RPCS:
            return _outside(identity, "range_id", request.range_id in identity.ranges)
        if name in CARD_RPCS:
            return next((_outside(identity, field, False) for field in CARD_FIELDS
                         if getattr(request, field, "") and
                         range_of_pan(getattr(request, field)) not in identity.ranges), None)
        if name == "ExportPersonalizationJob" and request.card_ids and not request.issue_request_id:
            return next((_outside(identity, f"card_ids[{i}]", False)
                         for i, card_id in enumerate(request.card_ids)
                         if range_of_card_id(card_id) not in identity.ranges), None)
    if identity.partner_id and name in PARTNER_RPCS:
        return _outside(identity, "partner_id", name not in PARTNER_NAMED or
                        request.partner_id == identity.partner_id)
    return f"{identity.describe()} is scoped to {identity.scope()}; {name} is the global operator's"


def _outside(identity, field: str, inside: bool):
    """None when inside the scope, else why the field is outside it."""
    if inside:
        return None
    return f"{field}: outside the scope of {identity.describe()} ({identity.scope()})"
