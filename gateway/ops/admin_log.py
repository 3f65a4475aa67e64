"""`cardgate admin-log`: who did what to which card, from the data directory's append-only
admin log. Every request an operator or a card bureau makes is logged by the core in the
same transaction as its effect (approved or declined): time, actor (the low 32 bits of
its certificate serial), operation, result and card. Names come from the CA's record of
the certificates it issued."""
import datetime
import json
import uuid

from cardgate.fastcore import records
from cardgate.gateway.security.pan import mask_parts
from cardgate.gateway.security.pki import Pki


def actor_names(data_dir) -> dict:
    """actor code -> "role name" of every certificate the CA issued."""
    pki = Pki(data_dir)
    names = {}
    if pki.issued_path.exists():
        for line in pki.issued_path.read_text().splitlines():
            cert = json.loads(line)
            names[int(cert["serial"], 16) & 0xFFFF_FFFF] = f"{cert['role']} {cert['name']}"
    return names


def lines(store, data_dir, since_s=0, until_s=None, actor=None, lines_max=None):
    """Rows of the admin log: (time, actor code, who, operation, result, masked card,
    request id), oldest first."""
    names = actor_names(data_dir)
    rows = []
    for line in store.read_admin_log(since_s, until_s, actor, lines_max):
        card = store.read_card_by_id(line.card_id) if line.card_id else None
        rows.append((datetime.datetime.fromtimestamp(line.time_s, datetime.timezone.utc),
                     line.actor, names.get(line.actor, "(certificate not in this CA's record)"),
                     "EXPORT_PERSONALIZATION_JOB" if line.op == records.ADMIN_OP_EXPORT_JOB
                     else enum_name(records.Op, line.op), enum_name(records.Result, line.result),
                     mask_parts(card.pan_first6, card.pan_last4, card.pan_length) if card else "",
                     str(uuid.UUID(bytes=line.request_id))))
    return rows


def enum_name(enum, value) -> str:
    """A code's name in its enum, or the number of a code it does not know."""
    try:
        return enum(value).name
    except ValueError:
        return str(value)
