"""What the gateway can do, independent of gRPC: validate, pack for the core, submit.

The gRPC services and the demo set-up call these; each returns the core's Reply (or a
list of them) and raises validation.InvalidArgument, RequestIdReused, VelocityExceeded
or writer.WriterError.
"""
import asyncio
import datetime
import hashlib
import json
import time

from cardgate.devices import tracks
from cardgate.fastcore import records
from cardgate.fastcore.records import Op
from cardgate.gateway import limits, validation, zones
from cardgate.gateway.api.loop_handoff import LoopHandoff
from cardgate.gateway.fleet import sales as fleet
from cardgate.gateway.office.details import details_of
from cardgate.gateway.security import acting
from cardgate.gateway.security.datakeys import HOLDER
from cardgate.gateway.security.pan import luhn_check_digit, mask, split_for_record
from cardgate.gateway.security.pki import PkiError, check_id
from cardgate.gateway.security.velocity import CardVelocity
from cardgate.gateway.store.store import acceptance_key, issued_part_key
from cardgate.gateway.store.writer import ReplyTimeout, StoreFailed, yyyymm_of

Result = records.Result
ISSUE_DRAWS_MAX = 8     # random draws for a card whose number another card already has
ADJUSTMENT_REASONS = range(1, 6)    # cardgate.v1.AdjustmentReason, UNSPECIFIED excluded
OFFLINE_AGE_HOURS_MAX = 90 * 24   # an offline sale advised later than 90 days is never posted


class VelocityExceeded(Exception):
    pass


class RequestIdReused(Exception):
    def __init__(self, request_id_text: str):
        super().__init__(f"request_id {request_id_text} was already used for a different "
                         "request; use a new UUID for a new request")


def raise_rejections(reply, request_id_text: str):
    """The core's two rejections (not business outcomes) as the gateway's exceptions."""
    if reply.result == Result.REJECTED_REQUEST_ID_REUSED:
        raise RequestIdReused(request_id_text)
    if reply.result == Result.REJECTED_INVALID_REQUEST:
        raise validation.InvalidArgument("request", "refused by the core as invalid")
    if reply.result == Result.REJECTED_UNKNOWN_PRODUCT:
        raise validation.InvalidArgument("product_code", "is not in the product catalog "
                                         "(FleetService.DefineProduct)")


def _reason(reason: int) -> int:
    if reason not in ADJUSTMENT_REASONS:
        raise validation.InvalidArgument("reason", "must name why (ADJUSTMENT_REASON_...)")
    return reason


class Operations:
    def __init__(self, store, writer, clock=lambda: int(time.time()),
                 card_per_minute_max=limits.CARD_AUTHORIZATIONS_PER_MINUTE_MAX):
        self.store = store
        self.writer = writer
        self.clock = clock
        self.velocity = CardVelocity(card_per_minute_max)
        self._handoff = None

    def card_key(self, pan_text: str, field: str = "pan") -> bytes:
        return self.store.pan_key.card_key(validation.pan(pan_text, field))

    def _pin_verifier(self, card_key: bytes, pin_text: str) -> bytes:
        return self.store.pin_key.pin_verifier(card_key, validation.pin(pin_text))

    # ---- packing: validate a request and turn it into a core request -------------

    @staticmethod
    def pack(op: int, request_id: bytes, **fields) -> bytes:
        """records.pack_request, made by the actor of the call being served (acting.actor):
        an operator's or bureau's requests say who made them."""
        return records.pack_request(op, request_id, actor=acting.actor(), **fields)

    def pack_money(self, op: int, request_id_text: str, pan_text: str, amount_minor: int,
                   currency: str, *, ref_text: str = None, ref_field: str = "original_request_id",
                   pin_text: str = "", partial_ok: bool = False, allow_zero: bool = False,
                   extra: dict = None, counted: bool = True, pin_of=None) -> bytes:
        """counted: the card's velocity limit counts it (not an offline sale's advice:
        the sale is made; a terminal back online advises its sales in a burst);
        pin_of: card key -> the entered PIN's verifier, from a PIN block (pin_blocks),
        instead of pin_text."""
        rid = validation.request_id(request_id_text)
        ref = None
        if ref_text is not None:
            if not ref_text:
                raise validation.InvalidArgument(ref_field, "is missing")
            ref = validation.request_id(ref_text, ref_field)
        card_key = self.card_key(pan_text)
        verifier = pin_of(card_key) if pin_of else \
            self._pin_verifier(card_key, pin_text) if pin_text else None
        packed = self.pack(
            op, rid, ref_request_id=ref, card_key=card_key,
            amount_minor=validation.amount_minor(amount_minor, allow_zero=allow_zero),
            currency=validation.currency(currency, "amount.currency"), pin_verifier=verifier,
            partial_ok=partial_ok, **(extra or {}))
        if counted and not self.velocity.admit(card_key, self.clock()):
            raise VelocityExceeded(
                f"card {mask(pan_text)} is over its limit of {self.velocity.per_minute_max} "
                "authorizations a minute; retry later with the same request_id")
        return packed

    def pack_reference(self, op: int, request_id_text: str, ref_text: str, ref_field: str,
                       who: dict) -> bytes:
        """A request that only names an earlier one: a reversal or a void; who: where it
        is made (fleet.acceptor_codes)."""
        rid = validation.request_id(request_id_text)
        ref = validation.request_id(ref_text, ref_field)
        if ref == rid:
            raise validation.InvalidArgument(ref_field, "must differ from request_id")
        return self.pack(op, rid, ref_request_id=ref, **who)

    def submit_one(self, packed: bytes, request_id_text: str):
        reply = self.writer.submit([packed])[0]
        raise_rejections(reply, request_id_text)
        return reply

    def handoff(self) -> LoopHandoff:
        """The running event loop's way back from the writer thread (one per loop)."""
        loop = asyncio.get_running_loop()
        if self._handoff is None or self._handoff.loop is not loop:
            self._handoff = LoopHandoff(loop)
        return self._handoff

    async def submit_each_async(self, packed: list) -> list:
        """Independent core requests (a forecourt's operations, or one), each its own
        submission, in one group commit: [reply or the error of that one]. The core failing
        on one answers that one alone; rejections (reused ids, invalid) come back as
        replies for the caller to map. The event loop goes on serving while the writer
        commits."""
        if not packed:
            return []
        handoff = self.handoff()
        answers = [handoff.loop.create_future() for _ in packed]

        def settle(i, replies, error):
            if not answers[i].done():       # not timed out meanwhile
                answers[i].set_result(error if error is not None else replies[0])

        self.writer.submit_each_async(
            packed, lambda i, replies, error: handoff.call(settle, i, replies, error))
        try:
            return await asyncio.wait_for(asyncio.gather(*answers), limits.REPLY_WAIT_S_MAX)
        except asyncio.TimeoutError:
            raise ReplyTimeout(f"no commit within {limits.REPLY_WAIT_S_MAX} s; the outcome is "
                               "unknown, retry with the same request_id") from None

    async def submit_one_async(self, packed: bytes, request_id_text: str):
        """One core request, awaited while the event loop goes on serving."""
        reply = (await self.submit_each_async([packed]))[0]
        if isinstance(reply, Exception):
            raise reply
        raise_rejections(reply, request_id_text)
        return reply

    # ---- authorizations --------------------------------------------------------

    def pack_operation(self, kind: str, m, pin_of=None) -> bytes:
        """The core request of a cardgate.v1 authorization message; `kind` names its type
        as ForecourtOperation's fields do. Made where the message's acceptor says (access
        control binds it to the calling terminal: the core lets a request that names an
        earlier one act only on its own merchant's). pin_of: card key -> the verifier of a
        PIN block, for a purchase or pre-authorization (instead of m.pin). Raises on bad
        input."""
        if m is None:
            raise validation.InvalidArgument("operation", "is empty; set one of purchase, "
                                             "preauthorize, complete, void, refund, reverse, load")
        who = fleet.acceptor_codes(m.acceptor)
        if kind in ("purchase", "preauthorize"):
            amount, extra = fleet.sale_fields(kind, m)
            pan = self.presented_pan(m)
            offline = kind == "purchase" and m.HasField("offline")
            if offline:
                if m.pin or m.partial_approval_ok or pin_of:
                    raise validation.InvalidArgument("offline", "an offline sale was approved "
                                                     "already: no pin, no partial approval")
                extra.update(validation.offline_approval(m.offline))
            return self.pack_money(Op.PURCHASE if kind == "purchase" else Op.PREAUTH,
                                   m.request_id, pan, amount, self.sale_currency(m, pan),
                                   pin_text=m.pin, partial_ok=m.partial_approval_ok,
                                   extra={**extra, **who, "payload": details_of(m, pan)},
                                   counted=not offline, pin_of=pin_of)
        if kind == "complete":
            amount, extra = fleet.sale_fields(kind, m)
            return self.pack_money(Op.COMPLETE, m.request_id, m.pan, amount,
                                   self.sale_currency(m, m.pan), ref_text=m.hold_id,
                                   ref_field="hold_id", allow_zero=True,
                                   extra={**extra, **who, "payload": details_of(m, m.pan)})
        if kind in ("void", "reverse"):
            op, ref_text, ref_field = (Op.VOID, m.hold_id, "hold_id") if kind == "void" else \
                (Op.REVERSAL, m.original_request_id, "original_request_id")
            return self.pack_reference(op, m.request_id, ref_text, ref_field,
                                       {**who, "payload": details_of(m)})
        if kind in ("refund", "load"):
            op, ref_text = (Op.REFUND, m.original_request_id) if kind == "refund" else (Op.LOAD, None)
            return self.pack_money(op, m.request_id, m.pan, m.amount.amount_minor,
                                   m.amount.currency, ref_text=ref_text,
                                   extra={**who, "payload": details_of(m, m.pan)})
        raise ValueError(f"no operation {kind!r}")

    def sale_currency(self, m, pan_text: str) -> str:
        """The currency of a sale: its amount's, or, when the amount is left out (the
        lines or the volume price it), the card's own."""
        if m.amount.currency or m.amount.amount_minor:
            return m.amount.currency
        found = self.store.read_card(self.card_key(pan_text)) if pan_text else None
        if found is None:
            raise validation.InvalidArgument(
                "amount.currency", "is needed: the card is not known, so its currency cannot "
                "stand in for it")
        return found[1].currency

    def presented_pan(self, m) -> str:
        """The PAN a sale names: keyed in (`pan`), or from a swiped stripe (`track2`),
        whose expiry must be the card's."""
        if not m.track2:
            return m.pan
        if m.pan:
            raise validation.InvalidArgument("track2", "send the card as pan or as track2, not both")
        try:
            stripe = tracks.parse_track2(m.track2)
        except tracks.TrackError as exc:
            raise validation.InvalidArgument("track2", str(exc)) from None
        found = self.store.read_card(self.card_key(stripe.pan, "track2"))
        if found is not None and tracks.expiry_yymm(found[0].expiry_yyyymm) != stripe.yymm:
            raise validation.InvalidArgument("track2", f"the stripe expires {stripe.yymm[2:]}/{stripe.yymm[:2]}"
                                             ", not when the card does: not this card's stripe")
        return stripe.pan

    def balance(self, pan_text):
        """(Card, Reply describing it) or None; a read that never waits for the writer."""
        return self.store.read_card(self.card_key(pan_text))

    # ---- issuing -----------------------------------------------------------------

    def create_range(self, request_id_text, range_id, iin_prefix, pan_length, currency, name,
                     pin_tries_max=0, balance_max_minor=0, load_per_day_max_minor=0, numbering=0,
                     late_grace_s=records.LATE_GRACE_S_DEFAULT, time_zone="",
                     utc_offset_min=0, pin_policy=0, offline_floor_minor=0, offline_age_hours=0):
        """numbering: how its cards are numbered (cardgate.v1.CardNumbering: 0 or 1 in
        order, 2 at random); late_grace_s: how long after a hold expired its completion
        is still taken as a forced capture (0: never); pin_policy: cardgate.v1.PinPolicy
        (0: required); offline_floor_minor, offline_age_hours: store and forward, the most a
        terminal may approve offline (0: none is posted) and how old its advice may be (0:
        72 hours)."""
        rid = validation.request_id(request_id_text)
        validation.config_id(range_id, "range_id")
        if not (iin_prefix.isascii() and iin_prefix.isdigit() and 6 <= len(iin_prefix) <= 11):
            raise validation.InvalidArgument("iin_prefix", "must be 6 to 11 digits")
        if not 16 <= pan_length <= 19:
            raise validation.InvalidArgument("pan_length", f"must be 16 to 19, got {pan_length}")
        if not 0 <= offline_age_hours <= OFFLINE_AGE_HOURS_MAX:
            raise validation.InvalidArgument("offline_age_hours", f"must be 0 (72) to "
                                             f"{OFFLINE_AGE_HOURS_MAX}, got {offline_age_hours}")
        for field, value in (("balance_max_minor", balance_max_minor),
                             ("load_per_day_max_minor", load_per_day_max_minor),
                             ("offline_floor_minor", offline_floor_minor)):
            if not 0 <= value <= records.BALANCE_MINOR_MAX:
                raise validation.InvalidArgument(field, f"must be 0 (none) to "
                                                 f"{records.BALANCE_MINOR_MAX}, got {value}")
        if numbering not in (0, 1, 2):
            raise validation.InvalidArgument("numbering", "must be CARD_NUMBERING_SEQUENTIAL or _RANDOM")
        if not 0 <= pin_tries_max <= 255:
            raise validation.InvalidArgument("pin_tries_max", f"must be 1 to 255 (0: 3), got {pin_tries_max}")
        if len(name.encode("utf-8")) > limits.RANGE_NAME_BYTES_MAX:
            raise validation.InvalidArgument("name", f"is longer than {limits.RANGE_NAME_BYTES_MAX} bytes")
        zone_id, zone_requests = zones.zone_fields(time_zone, utc_offset_min)
        packed = self.pack(
            Op.CREATE_RANGE, rid, range_id=range_id, iin_prefix=int(iin_prefix),
            iin_digits=len(iin_prefix), pan_length=pan_length,
            currency=validation.currency(currency), range_name=name, pin_tries_max=pin_tries_max,
            balance_max_minor=balance_max_minor, load_per_day_max_minor=load_per_day_max_minor,
            numbering=numbering, late_grace_s=late_grace_s,
            utc_offset_min=validation.utc_offset_min(utc_offset_min), zone_id=zone_id,
            pin_policy=fleet.pin_policy(pin_policy), offline_floor_minor=offline_floor_minor,
            offline_age_s=offline_age_hours * 3600)
        return self.submit_configuration(zone_requests, packed, request_id_text)

    def set_acceptance(self, request_id_text, range_id, merchant_ids):
        """The merchants whose terminals accept the range's cards (read their balances,
        points and statements); none: every merchant. Kept in the gateway's acceptance
        database, written by the writer; a retry with the same id and list is answered
        alike, another list under the same id refused."""
        rid = validation.request_id(request_id_text)
        self._card_range(range_id)
        merchants = sorted(set(merchant_ids))
        for i, merchant in enumerate(merchants):
            try:
                check_id(merchant, "a merchant id")          # as certificates name merchants
            except PkiError as exc:
                raise validation.InvalidArgument(f"merchant_ids[{i}]", str(exc)) from None
        content = json.dumps({"range_id": range_id, "merchants": merchants}).encode()
        request_key = b"Q" + rid

        def guard(txn):
            found = txn.get(request_key, db=self.store.db_acceptance)
            return None if found in (None, content) else str(RequestIdReused(request_id_text))

        def record(txn, _replies):
            if txn.get(request_key, db=self.store.db_acceptance) is None:
                txn.put(request_key, content, db=self.store.db_acceptance)
                key = acceptance_key(range_id)
                if merchants:
                    txn.put(key, json.dumps(merchants).encode(), db=self.store.db_acceptance)
                else:
                    txn.delete(key, db=self.store.db_acceptance)

        self.writer.submit([], guard=guard, after=record)
        return merchants

    def range_of_pan(self, pan_text: str):
        """The card range of a card, or None (not a card number, or not known)."""
        try:
            found = self.balance(pan_text)
        except validation.InvalidArgument:
            return None
        return found[0].range_id if found is not None else None

    def range_of_card_id(self, card_id: int):
        try:
            return self.store.read_card_by_id(card_id).range_id
        except (TypeError, ValueError, OverflowError):   # no such card
            return None

    def accepts(self, range_id: int, merchant_id: str) -> bool:
        """Whether the merchant's terminals accept cards of the range."""
        merchants = self.store.read_acceptance(range_id)
        return merchants is None or merchant_id in merchants

    def _card_range(self, range_id):
        card_range = self.store.read_range(range_id)
        if card_range is None:
            raise validation.InvalidArgument("range_id", f"card range {range_id} does not exist")
        return card_range, f"{card_range.iin_prefix:0{card_range.iin_digits}d}"

    def issue_gift_cards(self, request_id_text, range_id, cards, rid=None, part_key=None):
        """cards: [(pan, expiry_yyyymm)] or [(pan, expiry_yyyymm, holder name)] (checked by
        validation.holder_name; "" for a bearer card). All are issued in one transaction,
        or none when the request id was already used for other content. rid: the 16-byte
        id of a part of a larger request (issue_cards), and part_key where the ids of the
        cards it issued are kept (store.issued_part_key)."""
        rid = rid or validation.request_id(request_id_text)
        if not 1 <= len(cards) <= limits.ISSUE_CARDS_PER_REQUEST_MAX:
            raise validation.InvalidArgument(
                "cards", f"must hold 1 to {limits.ISSUE_CARDS_PER_REQUEST_MAX} cards, got {len(cards)}")
        card_range, prefix = self._card_range(range_id)
        this_month = yyyymm_of(self.clock())
        seen, keyed = set(), []
        for i, (pan_text, expiry, *holder) in enumerate(cards):
            field = f"cards[{i}]"
            pan_text = validation.pan(pan_text, f"{field}.pan")
            if not pan_text.startswith(prefix) or len(pan_text) != card_range.pan_length:
                raise validation.InvalidArgument(
                    f"{field}.pan", f"is not in card range {range_id} "
                    f"({prefix}..., {card_range.pan_length} digits)")
            if validation.yyyymm(expiry, f"{field}.expiry_yyyymm") < this_month:
                raise validation.InvalidArgument(f"{field}.expiry_yyyymm", f"{expiry} is already past")
            if pan_text in seen:
                raise validation.InvalidArgument(f"{field}.pan", "appears twice in this request")
            seen.add(pan_text)
            keyed.append((pan_text, self.store.pan_key.card_key(pan_text), expiry,
                          holder[0] if holder else ""))
        # Every card is its own core request; the first carries the request's own id and
        # all carry a digest of the whole request, so a retry with other content is seen.
        digest = hashlib.blake2b(range_id.to_bytes(4, "little") + b"".join(
            key + expiry.to_bytes(4, "little") + holder.encode() for _, key, expiry, holder in keyed),
            digest_size=16).digest()
        packed = []
        for i, (pan_text, key, expiry, _) in enumerate(keyed):
            sub_id = rid if i == 0 else hashlib.blake2b(rid + i.to_bytes(4, "little"),
                                                        digest_size=16).digest()
            first6, last4, length = split_for_record(pan_text)
            packed.append(self.pack(
                Op.ISSUE_CARD, sub_id, ref_request_id=digest, card_key=key, range_id=range_id,
                expiry_yyyymm=expiry, pan_first6=first6, pan_last4=last4, pan_length=length))

        def same_or_new(txn):
            previous = txn.get(rid, db=self.store.db_requests)
            if previous is not None and previous[:records.REQUEST_SIZE] != packed[0]:
                return str(RequestIdReused(request_id_text))
            return None

        def store_encrypted_pans(txn, replies):
            for (pan_text, _, _, holder), reply in zip(keyed, replies):
                if reply.result == Result.APPROVED:
                    card_id = reply.card_id.to_bytes(8, "big")
                    txn.put(card_id, self.store.key_ring.encrypt(pan_text, reply.card_id),
                            db=self.store.db_pans)
                    if holder:
                        txn.put(card_id, self.store.key_ring.encrypt(holder, reply.card_id, HOLDER),
                                db=self.store.db_holders)
            if part_key is not None:
                txn.put(part_key, b"".join(r.card_id.to_bytes(8, "big") for r in replies
                                           if r.result == Result.APPROVED), db=self.store.db_jobs)

        replies = self.writer.submit(packed, guard=same_or_new, after=store_encrypted_pans)
        for reply in replies:
            raise_rejections(reply, request_id_text)
        return replies

    def issue_cards(self, request_id_text, range_id, count, expiry_yyyymm, sequential=None,
                    holder_names=()):
        """Issue `count` new cards of a range, numbered by its next serial numbers or drawn
        at random within it (from a keyed function of the request, so a retry draws the
        same), never a number used before; bearer cards, or one per holder name (count
        0: as many as names). Yields the replies of each committed part."""
        rid = validation.request_id(request_id_text)
        if holder_names:
            count = count or len(holder_names)
            if len(holder_names) != count:
                raise validation.InvalidArgument("holder_names", f"names {len(holder_names)} cards, "
                                                 f"count asks for {count}")
            holders = [validation.holder_name(name, f"holder_names[{i}]")
                       for i, name in enumerate(holder_names)]
        else:
            holders = [""] * count
        if not 1 <= count <= limits.ISSUE_CARDS_PER_BATCH_MAX:
            raise validation.InvalidArgument("count", f"must be 1 to {limits.ISSUE_CARDS_PER_BATCH_MAX}")
        card_range, prefix = self._card_range(range_id)
        if sequential is None:              # as the range says
            sequential = card_range.numbering != 2
        digits = card_range.pan_length - len(prefix) - 1

        def pan_of(serial):
            body = prefix + f"{serial:0{digits}d}"
            return body + str(luhn_check_digit(body))

        def part_id(*parts):
            return hashlib.blake2b(rid + repr(parts).encode(), digest_size=16).digest()

        def serials(n, *part):             # the range's next n serial numbers, or its decline
            reply = self.submit_one(self.pack(
                Op.ALLOCATE_SERIALS, part_id("serials", *part), range_id=range_id, serial_count=n),
                request_id_text)
            return reply, [pan_of(reply.approved_minor + i) for i in range(n)]

        if sequential:
            reply, numbers = serials(count)
            if reply.result != Result.APPROVED:
                yield [reply]
                return
        else:
            numbers, tries, used = [None] * count, [0] * count, set()

            def draw(i):                    # the card's next draw not yet in this request
                while True:
                    key = self.store.pan_key.card_key(f"issue\0{rid.hex()}\0{i}\0{tries[i]}")
                    tries[i] += 1
                    pan = pan_of(int.from_bytes(key, "big") % 10 ** digits)
                    if pan not in used:
                        used.add(pan)
                        return pan
        chunk = limits.ISSUE_CARDS_PER_REQUEST_MAX
        for start in range(0, count, chunk):
            todo = list(range(start, min(count, start + chunk)))
            for attempt in range(ISSUE_DRAWS_MAX):
                if not sequential:          # a draw per card; a number taken: draw again
                    for i in todo:
                        numbers[i] = draw(i)
                replies = self.issue_gift_cards(request_id_text, range_id,
                                                [(numbers[i], expiry_yyyymm, holders[i]) for i in todo],
                                                rid=part_id(start, attempt),
                                                part_key=issued_part_key(rid, start, attempt))
                taken = [i for i, r in zip(todo, replies)
                         if r.result == Result.DECLINED_CARD_ALREADY_ISSUED]
                yield [r for r in replies if r.result != Result.DECLINED_CARD_ALREADY_ISSUED]
                if not taken:
                    break
                todo = taken
                if sequential:              # a number issued otherwise (at random, by hand): the next ones
                    reply, more = serials(len(taken), start, attempt)
                    if reply.result != Result.APPROVED:
                        yield [reply]
                        return
                    for i, number in zip(taken, more):
                        numbers[i] = number
            else:
                raise validation.InvalidArgument("count", "the range is too full: its numbers keep "
                                                 "being taken already")

    def replace_card(self, request_id_text, pan_text, new_pan_text):
        rid = validation.request_id(request_id_text)
        old, new = self.card_key(pan_text), self.card_key(new_pan_text, "new_pan")
        if old == new:
            raise validation.InvalidArgument("new_pan", "is the card being replaced")
        return self.submit_one(self.pack(Op.REPLACE_CARD, rid, card_key=old, payload=new),
                               request_id_text)

    def set_card_stage(self, request_id_text, pan_text, stage):
        """stage: records.CardStage."""
        rid = validation.request_id(request_id_text)
        return self.submit_one(self.pack(Op.SET_STAGE, rid, card_key=self.card_key(pan_text),
                                                    stage=stage), request_id_text)

    def set_card_pin(self, request_id_text, pan_text, pin_text):
        rid = validation.request_id(request_id_text)
        card_key = self.card_key(pan_text)
        packed = self.pack(Op.SET_PIN, rid, card_key=card_key,
                                      pin_verifier=self._pin_verifier(card_key, pin_text))
        return self.submit_one(packed, request_id_text)

    # ---- subscription packages ----------------------------------------------------------

    def sell_package(self, request_id_text, pan_text, units, valid_until_s):
        if valid_until_s <= self.clock():
            raise validation.InvalidArgument("valid_until_s", f"{valid_until_s} is not in the future")
        return self._lot(Op.SELL_PACKAGE, records.UNITS_ASSET, "units", request_id_text, pan_text,
                         units, valid_until_s)

    def use_units(self, request_id_text, pan_text, units):
        return self._lot(Op.USE_UNITS, records.UNITS_ASSET, "units", request_id_text, pan_text, units)

    # ---- loyalty points ------------------------------------------------------------------

    def set_config(self, op, request_id_text, payload, program_id=0, zone_requests=()):
        """A loyalty program (SET_PROGRAM) or its earn rules (SET_RULES of program_id),
        packed by loyalty_config."""
        rid = validation.request_id(request_id_text)
        return self.submit_configuration(
            zone_requests, self.pack(op, rid, payload=payload, program_id=program_id),
            request_id_text)

    def submit_configuration(self, zone_requests, packed: bytes, request_id_text: str):
        """A configuration request, after the DEFINE_ZONE requests of the zone it names
        (zones.zone_fields), in one submission: the zone is there when it is read."""
        replies = self.writer.submit([*zone_requests, packed])
        for reply in replies[:-1]:
            if reply.result != Result.APPROVED:
                raise StoreFailed(f"time zone table refused ({reply.result})")
        raise_rejections(replies[-1], request_id_text)
        return replies[-1]

    def pack_loyalty_sale(self, m, method) -> bytes:
        """A sale paid otherwise, shown with a loyalty card (RecordSaleRequest)."""
        amount, volume, codes = fleet.lines_total(m.lines, m.amount.amount_minor)
        if not 0 <= m.points <= records.AMOUNT_MINOR_MAX:
            raise validation.InvalidArgument("points", f"must be 0 to {records.AMOUNT_MINOR_MAX}")
        return self.pack_money(Op.LOYALTY_SALE, m.request_id, m.pan, amount, m.amount.currency,
                               extra=dict(volume_ml=volume, products=codes, payment_method=method,
                                          points_tendered=m.points, payload=details_of(m, m.pan),
                                          **fleet.acceptor_codes(m.acceptor)))

    def define_partner(self, request_id_text, partner_id, name, shares_requests=False):
        rid = validation.request_id(request_id_text)
        validation.config_id(partner_id, "partner_id")
        if not name or len(name.encode("utf-8")) > 32 or not name.isprintable():
            raise validation.InvalidArgument("name", "must be 1 to 32 bytes of printable UTF-8")
        return self.submit_one(self.pack(Op.DEFINE_PARTNER, rid, partner_id=partner_id,
                                         partner_name=name, partner_shares=shares_requests),
                               request_id_text)

    def set_member(self, request_id_text, pan_text, birth_month, birth_day):
        rid = validation.request_id(request_id_text)
        if (birth_month, birth_day) != (0, 0):
            try:
                datetime.date(2000, birth_month, birth_day)       # a leap year: 29 February is a day
            except (ValueError, OverflowError):
                raise validation.InvalidArgument("birth_day", f"{birth_month}/{birth_day} is not "
                                                 "a day of the year (month 1-12, day of that month)") from None
        packed = self.pack(Op.SET_MEMBER, rid, card_key=self.card_key(pan_text),
                                      birthday_mmdd=birth_month * 100 + birth_day)
        return self.submit_one(packed, request_id_text)

    def earn_points(self, request_id_text, pan_text, points, valid_until_s=0, where=None):
        """A lot of points usable until valid_until_s (0: as the card's program says;
        never without a program)."""
        if valid_until_s and valid_until_s <= self.clock():
            raise validation.InvalidArgument("valid_until_s", f"{valid_until_s} is not in the "
                                             "future (0: as the card's program says)")
        if valid_until_s < 0:
            raise validation.InvalidArgument("valid_until_s", "must be 0 or a Unix second")
        return self._lot(Op.EARN_POINTS, records.POINTS_ASSET, "points", request_id_text, pan_text,
                         points, valid_until_s, where)

    def redeem_points(self, request_id_text, pan_text, points, where=None):
        """where: fleet.acceptor_codes of the acceptor (in a coalition its outlet's
        partner is reimbursed)."""
        return self._lot(Op.REDEEM_POINTS, records.POINTS_ASSET, "points", request_id_text,
                         pan_text, points, where=where)

    def reserve_points(self, request_id_text, pan_text, points, where=None):
        return self._lot(Op.RESERVE_POINTS, records.POINTS_ASSET, "points", request_id_text,
                         pan_text, points, where=where)

    def settle_points(self, request_id_text, pan_text, hold_id_text, points=None, where=None):
        """Confirm `points` of a reservation, or (points None) release it; only the
        reservation's own merchant (or an operator) may."""
        rid = validation.request_id(request_id_text)
        hold_id = validation.request_id(hold_id_text, "hold_id")
        if hold_id == rid:
            raise validation.InvalidArgument("hold_id", "must differ from request_id")
        packed = self.pack(
            Op.RELEASE_POINTS if points is None else Op.CONFIRM_POINTS, rid,
            card_key=self.card_key(pan_text), ref_request_id=hold_id, currency=records.POINTS_ASSET,
            amount_minor=0 if points is None else validation.amount_minor(points, "points"),
            merchant_code=(where or {}).get("merchant_code", 0))
        return self.submit_one(packed, request_id_text)

    def adjust_points(self, request_id_text, pan_text, points, down, reason):
        rid = validation.request_id(request_id_text)
        packed = self.pack(
            Op.ADJUST_POINTS, rid, card_key=self.card_key(pan_text),
            amount_minor=validation.amount_minor(points, "points"), currency=records.POINTS_ASSET,
            adjust_down=down, reason=_reason(reason))
        return self.submit_one(packed, request_id_text)

    def transfer_points(self, request_id_text, pan_text, to_pan_text, points, pin_text="",
                        where=None):
        """where: fleet.acceptor_codes of a terminal's acceptor (the core then wants the
        giving card's PIN); None: an operator's."""
        rid = validation.request_id(request_id_text)
        giving, receiving = self.card_key(pan_text), self.card_key(to_pan_text, "to_pan")
        if giving == receiving:
            raise validation.InvalidArgument("to_pan", "is the giving card itself")
        packed = self.pack(
            Op.TRANSFER_POINTS, rid, card_key=giving, payload=receiving,
            amount_minor=validation.amount_minor(points, "points"), currency=records.POINTS_ASSET,
            pin_verifier=self._pin_verifier(giving, pin_text) if pin_text else None,
            **(where or {}))
        return self.submit_one(packed, request_id_text)

    def _lot(self, op, asset, field, request_id_text, pan_text, amount, valid_until_s=0,
             where=None):
        rid = validation.request_id(request_id_text)
        packed = self.pack(
            op, rid, card_key=self.card_key(pan_text),
            amount_minor=validation.amount_minor(amount, field), currency=asset,
            valid_until_s=valid_until_s, **(where or {}))
        return self.submit_one(packed, request_id_text)

    # ---- the issuer's corrections ----------------------------------------------------

    def adjust_balance(self, request_id_text, pan_text, amount_minor, currency, down, reason):
        rid = validation.request_id(request_id_text)
        packed = self.pack(
            Op.ADJUST, rid, card_key=self.card_key(pan_text),
            amount_minor=validation.amount_minor(amount_minor),
            currency=validation.currency(currency, "amount.currency"), reason=_reason(reason),
            adjust_down=down)
        return self.submit_one(packed, request_id_text)

    def clear_balance(self, request_id_text, pan_text, reason):
        rid = validation.request_id(request_id_text)
        return self.submit_one(self.pack(Op.CLEAR, rid, card_key=self.card_key(pan_text),
                                                    reason=_reason(reason)), request_id_text)

    def deactivate_card(self, request_id_text, pan_text, disposition=0, to_pan_text="", reason=0):
        """disposition: 0 (value must be zero), 1 (paid out), 2 (moved to to_pan)."""
        rid = validation.request_id(request_id_text)
        card_key = self.card_key(pan_text)
        if disposition not in (0, 1, 2):
            raise validation.InvalidArgument("disposition", "must be CLOSE_DISPOSITION_UNSPECIFIED, "
                                             "_PAYOUT or _MOVE")
        payload = None
        if disposition == 2:
            payload = self.card_key(to_pan_text, "to_pan")
            if payload == card_key:
                raise validation.InvalidArgument("to_pan", "is the card being closed")
        elif to_pan_text:
            raise validation.InvalidArgument("to_pan", "goes only with CLOSE_DISPOSITION_MOVE")
        return self.submit_one(self.pack(
            Op.DEACTIVATE, rid, card_key=card_key, close_disposition=disposition, payload=payload,
            reason=_reason(reason) if reason else 0), request_id_text)

    def set_card_status(self, request_id_text, pan_text, status):
        rid = validation.request_id(request_id_text)
        if status not in (records.CardStatus.BLOCKED, records.CardStatus.ACTIVE):
            raise validation.InvalidArgument("status", "must be CARD_STATUS_BLOCKED or CARD_STATUS_ACTIVE")
        packed = self.pack(Op.SET_STATUS, rid, card_key=self.card_key(pan_text),
                                      target_status=status)
        return self.submit_one(packed, request_id_text)
