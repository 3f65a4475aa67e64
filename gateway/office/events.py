"""Committed journal entries as cardgate.v1.Event (version 1), for other systems:
accounting, ERP, cardholder apps. An event's id is its journal position, so a consumer
that resumes from the last position it stored, and dedups by id, sees each once."""
import uuid

from cardgate.fastcore import records
from cardgate.gateway.ops.admin_log import enum_name
from cardgate.gateway.security.pan import mask_parts
from cardgate.v1 import office_pb2

EVENT_VERSION = 1
PAGE_ROWS = 1000            # journal entries read in one read transaction



def _account(owner: int, slot: int, cards: dict) -> "office_pb2.EventAccount":
    if owner >= records.SYSTEM_OWNER_BASE:
        kind, shown = "range", str(owner - records.SYSTEM_OWNER_BASE)
    elif owner >= records.CONTRACT_OWNER_BASE:
        kind, shown = "contract", str(owner - records.CONTRACT_OWNER_BASE)
    else:
        card = cards.get(owner)
        kind = "card"
        shown = mask_parts(card.pan_first6, card.pan_last4, card.pan_length) if card else ""
    return office_pb2.EventAccount(owner_kind=kind, owner=shown, slot=enum_name(records.Slot, slot))


def event_of(seq: int, entry, cards: dict) -> "office_pb2.Event":
    """The Event of journal entry `seq`; cards: {card id: records.Card} of its sides."""
    return office_pb2.Event(
        event_id=f"journal-{seq}", version=EVENT_VERSION, seq=seq, time_s=entry.time_s,
        request_id=str(uuid.UUID(bytes=entry.request_id)), operation=enum_name(records.Op, entry.op),
        currency=entry.currency, amount_minor=entry.amount_minor,
        debit=_account(entry.debit_owner, entry.debit_slot, cards),
        credit=_account(entry.credit_owner, entry.credit_slot, cards), reason=entry.reason,
        actor=entry.actor, partner_id=entry.partner_id, origin_partner=entry.origin_partner)


def page(store, after_seq: int) -> list:
    """The Events after after_seq that are committed now, at most PAGE_ROWS."""
    rows, cards = store.read_journal(after_seq, PAGE_ROWS)
    return [event_of(seq, entry, cards) for seq, entry in rows]
