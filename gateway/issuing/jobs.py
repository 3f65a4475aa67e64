"""Personalization jobs for card bureaus: the job file (bureau.job_file), the bureau's
result for each card, and where a job stands.

Gateway-owned records in the jobs database, written through the writer's after-hook so
each lands in the same transaction as what the core did:
    b"J" job_id(8)            -> the job (JSON): request digest, time, profile, count
    b"C" job_id(8)            -> its card ids, 8 bytes big-endian each, in job order
    b"S" job_id(8) seq(4)     -> a card's result (JSON): result, reason, attempts, chip uid
    b"Q" request id(16)       -> what that request did (JSON): a retry answers the same
    b"B" IssueCards request id(16) part start(4) attempt(1)
                              -> the card ids that part issued (store.issued_part_key)
"""
import datetime
import hashlib
import json

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from cardgate.devices import personalize, tracks
from cardgate.fastcore import records
from cardgate.fastcore.records import CardStage, CardStatus, Op, Result
from cardgate.gateway import limits, validation
from cardgate.gateway.api.operations import RequestIdReused, raise_rejections
from cardgate.gateway.issuing import job_file
from cardgate.gateway.security.datakeys import HOLDER
from cardgate.gateway.security import acting
from cardgate.gateway.security.pan import mask_parts
from cardgate.gateway.security.pki import PkiError, identity_of, load_certificate
from cardgate.gateway.store.store import issued_parts_prefix

SERVICE_CODE_DEFAULT = "701"         # private use, normal authorization, no restrictions
KEY_LABEL_DEFAULT = "default"
REASON_CHARS_MAX = 200
BEARER_NAME_DEFAULT = "BEARER CARD"
ENCODED, FAILED, PENDING = "encoded", "failed", "pending"


class JobNotFound(LookupError):
    pass


class JobConflict(Exception):
    """A result that contradicts one already recorded."""


def _job_key(job_id: bytes) -> bytes:
    return b"J" + job_id


def _cards_key(job_id: bytes) -> bytes:
    return b"C" + job_id


def _result_key(job_id: bytes, seq: int) -> bytes:
    return b"S" + job_id + seq.to_bytes(4, "big")


def _request_key(rid: bytes) -> bytes:
    return b"Q" + rid


def job_id_bytes(text: str) -> bytes:
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = b""
    if len(raw) != 8:
        raise validation.InvalidArgument("job_id", "is not a job id (16 hexadecimal characters)")
    return raw


def emboss_lines(pan: str, expiry_yymm: str, holder: str) -> list:
    lines = [" ".join(pan[i:i + 4] for i in range(0, len(pan), 4)),
             f"VALID THRU {expiry_yymm[2:]}/{expiry_yymm[:2]}"]
    return lines + [holder] if holder else lines


def bearer_name(range_name: str) -> str:
    """Track 1 needs a name: a bearer card carries its range's, in the track's set."""
    try:
        return validation.holder_name("".join(c for c in range_name.upper() if c.isascii()))
    except validation.InvalidArgument:
        return BEARER_NAME_DEFAULT


class PersonalizationJobs:
    def __init__(self, ops, pki):
        self.ops = ops
        self.store = ops.store
        self.pki = pki

    # ---- export ----------------------------------------------------------------------

    def _recipient(self, pem: bytes):
        """The certificate a job is sealed to: an EC P-256 bureau certificate this CA
        issued, valid now and not revoked."""
        try:
            recipient = x509.load_pem_x509_certificate(pem)
            job_file.recipient_key(recipient)
            recipient.verify_directly_issued_by(load_certificate(self.pki.ca_cert_path))
            identity = identity_of(recipient)
        except (ValueError, TypeError, InvalidSignature, job_file.JobFileError, PkiError) as exc:
            raise validation.InvalidArgument(
                "bureau_certificate_pem", f"is not a bureau certificate this gateway's CA issued "
                f"({type(exc).__name__}: {exc})") from None
        now = datetime.datetime.now(datetime.timezone.utc)
        if identity.role != "bureau":
            raise validation.InvalidArgument("bureau_certificate_pem", f"is a {identity.role}'s "
                                             "certificate, not a bureau's")
        if not recipient.not_valid_before_utc <= now <= recipient.not_valid_after_utc:
            raise validation.InvalidArgument("bureau_certificate_pem", "is not valid now")
        if recipient.serial_number in self.pki.revoked_serials():
            raise validation.InvalidArgument("bureau_certificate_pem", "has been revoked")
        return recipient

    def export(self, request_id_text, card_ids, bureau_certificate_pem=b"", service_code="",
               aid=b"", value_limit_minor=0, master_key_label="", issue_request_id="",
               allow_unsealed=False):
        """(job id, cards, job file bytes, encrypted). The cards: by id, or those one
        IssueCards request issued. Sealed to a bureau certificate of this CA, or, with
        allow_unsealed (the caller checked it is an operator's), only signed."""
        rid = validation.request_id(request_id_text)
        card_ids = list(card_ids)
        if issue_request_id:
            if card_ids:
                raise validation.InvalidArgument("issue_request_id", "name the cards by card_ids or "
                                                 "by issue_request_id, not both")
            card_ids = self._issued_by(validation.request_id(issue_request_id, "issue_request_id"))
            if not card_ids:
                raise validation.InvalidArgument("issue_request_id", f"no IssueCards request "
                                                 f"{issue_request_id} issued cards here")
        if not 1 <= len(card_ids) <= limits.ISSUE_CARDS_PER_BATCH_MAX:
            raise validation.InvalidArgument("card_ids", f"must name 1 to {limits.ISSUE_CARDS_PER_BATCH_MAX} "
                                             f"cards, got {len(card_ids)}")
        if len(set(card_ids)) != len(card_ids):
            raise validation.InvalidArgument("card_ids", "name a card twice")
        service_code = service_code or SERVICE_CODE_DEFAULT
        if not (len(service_code) == 3 and service_code.isascii() and service_code.isdigit()):
            raise validation.InvalidArgument("service_code", f"must be 3 digits, got {service_code!r}")
        if len(aid) != 3 or aid == b"\0\0\0":
            raise validation.InvalidArgument("chip.aid", "must be 3 bytes, not 000000 (the card's own)")
        if not 0 <= value_limit_minor <= records.BALANCE_MINOR_MAX:
            raise validation.InvalidArgument("chip.value_limit_minor",
                                             f"must be 0 (no value file) to {records.BALANCE_MINOR_MAX}")
        label = master_key_label or KEY_LABEL_DEFAULT
        if len(label) > 64 or not label.isprintable():
            raise validation.InvalidArgument("master_key_label", "must be up to 64 printable characters")
        recipient = self._recipient(bureau_certificate_pem) if bureau_certificate_pem else None
        if recipient is None and not allow_unsealed:
            raise validation.InvalidArgument(
                "bureau_certificate_pem", "is needed: a job is sealed to a bureau certificate "
                "this gateway's CA issued (an operator may set allow_unsealed to export one "
                "only signed)")
        profile = {"aid": aid.hex().upper(), "value_limit_minor": value_limit_minor}
        meta = {"service_code": service_code, "chip": profile, "master_key_label": label,
                "cards": len(card_ids)}
        ids = b"".join(i.to_bytes(8, "big") for i in card_ids)
        digest = hashlib.blake2b(json.dumps(meta, sort_keys=True).encode() + ids,
                                 digest_size=16).hexdigest()
        job_id = hashlib.blake2b(rid, digest_size=8).digest()

        earlier = self._request(rid)
        if earlier is not None:
            if earlier.get("digest") != digest:
                raise RequestIdReused(request_id_text)
        else:
            self._check_exportable(card_ids)
            meta.update(digest=digest, created_at_s=self.ops.clock())
            actor = acting.actor()

            def record(txn, _replies):
                if txn.get(_job_key(job_id), db=self.store.db_jobs) is None:
                    txn.put(_job_key(job_id), json.dumps(meta).encode(), db=self.store.db_jobs)
                    txn.put(_cards_key(job_id), ids, db=self.store.db_jobs)
                    txn.put(_request_key(rid), json.dumps({"digest": digest, "job_id": job_id.hex()}).encode(),
                            db=self.store.db_jobs)
                    if actor:               # the admin log: who exported card numbers, when
                        txn.put(*records.admin_log_entry(meta["created_at_s"], rid, actor,
                                                         records.ADMIN_OP_EXPORT_JOB, Result.APPROVED),
                                db=self.store.db_admin_log)

            self.ops.writer.submit([], guard=self._same_request(rid, request_id_text, digest), after=record)
        with self.store.env.begin() as txn:
            meta = self._job(txn, job_id)
        chip = {**profile, "system_id": personalize.SYSTEM_ID.hex().upper()}
        signed = job_file.sign({"job_id": job_id.hex(), "cards": len(card_ids),
                                "created_at_s": meta["created_at_s"], "master_key_label": label,
                                "chip": {**chip, "key_derivation": personalize.key_derivation()}},
                               self._card_lines(card_ids, service_code, chip), *self.pki.job_signer())
        if recipient is not None:
            return job_id.hex(), len(card_ids), job_file.seal(signed, recipient), True
        return job_id.hex(), len(card_ids), signed, False

    def _check_exportable(self, card_ids):
        with self.store.env.begin() as txn:
            for i, card_id in enumerate(card_ids):
                found = txn.get(records.card_key(card_id), db=self.store.db_book)
                if found is None:
                    raise validation.InvalidArgument(f"card_ids[{i}]", f"no card {card_id}")
                card = records.unpack_card(found)
                if card.status == CardStatus.CLOSED:
                    raise validation.InvalidArgument(f"card_ids[{i}]", f"card {card_id} is closed")
                if card.stage != CardStage.CREATED:
                    raise validation.InvalidArgument(f"card_ids[{i}]", f"card {card_id} is "
                                                     f"{CardStage(card.stage).name.lower()} already")

    def _card_lines(self, card_ids, service_code, profile) -> list:
        ring, lines, programs, names = self.store.key_ring, [], {}, {}
        with self.store.env.begin() as txn:
            for seq, card_id in enumerate(card_ids, 1):
                key = card_id.to_bytes(8, "big")
                card = records.unpack_card(txn.get(records.card_key(card_id), db=self.store.db_book))
                pan = ring.decrypt(txn.get(key, db=self.store.db_pans), card_id)
                sealed_name = txn.get(key, db=self.store.db_holders)
                holder = ring.decrypt(sealed_name, card_id, HOLDER) if sealed_name else ""
                if card.range_id not in programs:
                    programs[card.range_id] = self.store._program_id_of_range(txn, card.range_id)
                    names[card.range_id] = bearer_name(records.unpack_range(
                        txn.get(records.range_key(card.range_id), db=self.store.db_config)).name)
                yymm = tracks.expiry_yymm(card.expiry_yyyymm)
                lines.append({
                    "seq": seq, "card_id": card_id, "pan": pan, "holder": holder,
                    "expiry_yymm": yymm, "service_code": service_code,
                    "track1": tracks.build_track1(pan, holder or names[card.range_id], yymm, service_code),
                    "track2": tracks.build_track2(pan, yymm, service_code),
                    "emboss": emboss_lines(pan, yymm, holder),
                    "chip": {**profile, "program_id": programs[card.range_id]}})
        return lines

    # ---- results ---------------------------------------------------------------------

    def report(self, request_id_text, job_id_text, seq, encoded: bool, reason="", chip_uid=b""):
        """(Result, masked PAN, CardStage) of the card after the bureau's result."""
        rid = validation.request_id(request_id_text)
        job_id = job_id_bytes(job_id_text)
        with self.store.env.begin(buffers=True) as txn:     # what the report needs, in one read
            meta = self._job(txn, job_id)
            card_id = _card_id_of(txn.get(_cards_key(job_id), db=self.store.db_jobs), seq) \
                if 1 <= seq <= meta["cards"] else None
            earlier = _json_or(txn.get(_request_key(rid), db=self.store.db_jobs), None)
            state = _json_or(txn.get(_result_key(job_id, seq), db=self.store.db_jobs), {})
            sealed_pan = bytes(txn.get(card_id.to_bytes(8, "big"), db=self.store.db_pans)) \
                if encoded and card_id is not None else None
        if not 1 <= seq <= meta["cards"]:
            raise validation.InvalidArgument("seq", f"must be 1 to {meta['cards']} (the job's cards), got {seq}")
        if len(reason) > REASON_CHARS_MAX or not reason.isprintable():
            raise validation.InvalidArgument("reason", f"must be up to {REASON_CHARS_MAX} printable characters")
        if not encoded and not reason:
            raise validation.InvalidArgument("reason", "is missing: say why the card failed")
        if len(chip_uid) not in (0, 7):
            raise validation.InvalidArgument("chip_uid", f"must be 7 bytes, got {len(chip_uid)}")
        digest = hashlib.blake2b(job_id + bytes([encoded]) + seq.to_bytes(4, "big") +
                                 reason.encode() + chip_uid, digest_size=16).hexdigest()
        if earlier is not None:
            if earlier.get("digest") != digest:
                raise RequestIdReused(request_id_text)
            return self._card_answer(card_id, Result(earlier["result"]))
        if not encoded and state.get("result") == ENCODED:
            raise JobConflict(f"card {seq} of job {job_id_text} was reported encoded already; "
                              "a failure after it cannot be recorded")
        packed = []
        if encoded:
            pan = self.store.key_ring.decrypt(sealed_pan, card_id)
            packed.append(self.ops.pack(Op.SET_STAGE, rid, card_key=self.store.pan_key.card_key(pan),
                                        stage=CardStage.PERSONALIZED))

        def record(txn, replies):
            result = replies[0].result if replies else Result.APPROVED
            if txn.get(_request_key(rid), db=self.store.db_jobs) is not None:
                return                                  # a concurrent retry recorded it
            key = _result_key(job_id, seq)
            found = txn.get(key, db=self.store.db_jobs)
            state = json.loads(found) if found else {"attempts": 0}
            if result == Result.APPROVED and not (state.get("result") == ENCODED and not encoded):
                state.update(result=ENCODED if encoded else FAILED, reason=reason,
                             attempts=state["attempts"] + 1, chip_uid=chip_uid.hex(),
                             at_s=self.ops.clock())
                txn.put(key, json.dumps(state).encode(), db=self.store.db_jobs)
            txn.put(_request_key(rid), json.dumps({"digest": digest, "result": int(result)}).encode(),
                    db=self.store.db_jobs)

        replies = self.ops.writer.submit(packed, guard=self._same_request(rid, request_id_text, digest),
                                         after=record)
        for reply in replies:
            raise_rejections(reply, request_id_text)
        return self._card_answer(card_id, Result(replies[0].result) if replies else Result.APPROVED)

    def _card_answer(self, card_id, result):
        card = self.store.read_card_by_id(card_id)
        return result, mask_parts(card.pan_first6, card.pan_last4, card.pan_length), CardStage(card.stage)

    # ---- where a job stands ------------------------------------------------------------

    def status(self, job_id_text):
        """(job meta, [(seq, card, result record, {stage: time})])."""
        job_id = job_id_bytes(job_id_text)
        rows = []
        with self.store.env.begin() as txn:
            meta = self._job(txn, job_id)
            ids = txn.get(_cards_key(job_id), db=self.store.db_jobs)
            for seq in range(1, meta["cards"] + 1):
                card_id = _card_id_of(ids, seq)
                card = records.unpack_card(txn.get(records.card_key(card_id), db=self.store.db_book))
                found = txn.get(_result_key(job_id, seq), db=self.store.db_jobs)
                times = {CardStage.CREATED: card.issued_s}
                for stage in (CardStage.PERSONALIZED, CardStage.SHIPPED):
                    at = txn.get(records.stage_time_key(card_id, stage), db=self.store.db_book)
                    times[stage] = int.from_bytes(at, "big") if at else 0
                rows.append((seq, card, json.loads(found) if found else {"result": PENDING, "attempts": 0},
                             times))
        return meta, rows

    def _same_request(self, rid, request_id_text, digest):
        """A writer guard: refuses a request id already used for other content (checked
        again inside the write, for two of the same request at once)."""
        def guard(txn):
            found = txn.get(_request_key(rid), db=self.store.db_jobs)
            if found is not None and json.loads(found).get("digest") != digest:
                return str(RequestIdReused(request_id_text))
            return None
        return guard

    # ---- reads -------------------------------------------------------------------------

    def _request(self, rid):
        with self.store.env.begin() as txn:
            return _json_or(txn.get(_request_key(rid), db=self.store.db_jobs), None)

    def _job(self, txn, job_id):
        found = txn.get(_job_key(job_id), db=self.store.db_jobs)
        if found is None:
            raise JobNotFound(f"no personalization job {job_id.hex()}")
        return json.loads(bytes(found))

    def _issued_by(self, issue_rid) -> list:
        prefix, ids = issued_parts_prefix(issue_rid), []
        with self.store.env.begin() as txn:
            cursor = txn.cursor(db=self.store.db_jobs)
            found = cursor.set_range(prefix)
            while found and cursor.key().startswith(prefix):
                part = cursor.value()
                ids.extend(int.from_bytes(part[i:i + 8], "big") for i in range(0, len(part), 8))
                found = cursor.next()
        return ids


def _card_id_of(ids, seq: int) -> int:
    """The card of a job's seq, from its card ids record."""
    return int.from_bytes(ids[8 * (seq - 1):8 * seq], "big")


def _json_or(found, default):
    return json.loads(bytes(found)) if found is not None else default
