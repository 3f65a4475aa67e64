"""gRPC servicers: turn cardgate.v1 messages into Operations calls and back.

Business outcomes travel as result codes in the response; protocol faults become gRPC
status codes (INVALID_ARGUMENT naming the field, ALREADY_EXISTS for a reused request
id, RESOURCE_EXHAUSTED / UNAVAILABLE when the store cannot take the request).
"""
import asyncio
import contextvars
import functools
import inspect
import logging
import time

import grpc

from cardgate.fastcore import records
from cardgate.fastcore.records import POINTS_ASSET, Result
from cardgate.gateway.api.operations import RequestIdReused, VelocityExceeded
from cardgate.gateway.api.registration import Malformed
from cardgate.gateway.fleet import sales as fleet
from cardgate.gateway.issuing.jobs import ENCODED, FAILED, JobConflict, JobNotFound
from cardgate.gateway.loyalty.answers import loyalty_outcome
from cardgate.gateway.ops.logs import log_request
from cardgate.gateway.security import acting
from cardgate.gateway.security.access import Denied, Refused
from cardgate.gateway.security.pan import mask_pans_in, mask_parts
from cardgate.gateway.security.pki import PkiError
from cardgate.gateway.store import writer as writer_mod
from cardgate.gateway.validation import InvalidArgument
from cardgate.v1 import (authorization_pb2, authorization_pb2_grpc, common_pb2, issuing_pb2,
                         issuing_pb2_grpc)

log = logging.getLogger("cardgate.service")

RESULT_MESSAGES = {
    Result.APPROVED: "approved",
    Result.DECLINED_UNKNOWN_CARD: "declined: card not known",
    Result.DECLINED_CARD_NOT_ACTIVE: "declined: card not activated yet; load it first",
    Result.DECLINED_CARD_BLOCKED: "declined: card blocked",
    Result.DECLINED_CARD_EXPIRED: "declined: card expired",
    Result.DECLINED_CARD_CLOSED: "declined: card closed",
    Result.DECLINED_WRONG_PIN: "declined: wrong PIN",
    Result.DECLINED_PIN_REQUIRED: "declined: the card's PIN is required",
    Result.DECLINED_INSUFFICIENT_FUNDS: "declined: insufficient funds",
    Result.DECLINED_CURRENCY_MISMATCH: "declined: the card holds another currency",
    Result.DECLINED_BALANCE_LIMIT_EXCEEDED: "declined: the balance would exceed its limit",
    Result.DECLINED_LOAD_LIMIT_EXCEEDED: "declined: over the card's load limit for today",
    Result.DECLINED_BALANCE_NOT_ZERO: "declined: the card still holds value; clear it first",
    Result.DECLINED_NO_UNITS_LEFT: "declined: no units left in the card's valid packages",
    Result.DECLINED_POINTS_LIMIT_EXCEEDED: "declined: the card's points would exceed the most "
                                           "a card may hold",
    Result.DECLINED_UNITS_LIMIT_EXCEEDED: "declined: the card's units would exceed the most a "
                                          "card may hold",
    Result.DECLINED_SYSTEM_LIMIT_EXCEEDED: "declined: an account of the card range has reached "
                                           "its largest value",
    Result.DECLINED_ORIGINAL_NOT_FOUND: "declined: original request not found",
    Result.DECLINED_ORIGINAL_NOT_REFUNDABLE: "declined: original is not an approved purchase",
    Result.DECLINED_REFUND_EXCEEDS_ORIGINAL: "declined: refunds would exceed the original purchase",
    Result.DECLINED_CARD_MISMATCH: "declined: original was made with another card",
    Result.DECLINED_NOT_REVERSIBLE: "declined: request cannot be reversed (reverse its refunds first)",
    Result.DECLINED_ALREADY_REVERSED: "declined: already reversed",
    Result.DECLINED_NOT_OWN_REQUEST: "declined: the original request is not this merchant's",
    Result.DECLINED_CARD_ALREADY_ISSUED: "declined: card number already issued",
    Result.DECLINED_UNKNOWN_CARD_RANGE: "declined: card range not known",
    Result.DECLINED_CARD_RANGE_EXISTS: "declined: card range already exists",
    Result.DECLINED_INVALID_STATUS_CHANGE: "declined: status change not allowed",
    Result.DECLINED_RANGE_EXHAUSTED: "declined: the card range has no card numbers left",
    Result.DECLINED_REPLACEMENT_UNUSABLE: "declined: the replacement must be a new, unused, unexpired "
                                          "card of the same range",
    Result.DECLINED_HOLDS_OPEN: "declined: the card has open pre-authorizations or held points",
    Result.PARTIALLY_APPROVED: "partially approved: the card had less than asked",
    Result.DECLINED_HOLD_NOT_FOUND: "declined: no such pre-authorization",
    Result.DECLINED_HOLD_ALREADY_COMPLETED: "declined: pre-authorization already completed",
    Result.DECLINED_HOLD_VOIDED: "declined: pre-authorization was voided or reversed",
    Result.DECLINED_HOLD_EXPIRED: "declined: pre-authorization expired and was released",
    Result.DECLINED_COMPLETION_EXCEEDS_HOLD: "declined: completion is more than was held",
    # (also a sale that names no products, on a card whose profile allows only some)
    Result.DECLINED_PRODUCT_NOT_ALLOWED: "declined: the card's profile does not allow what this "
                                         "sale names, or it must name its products",
    Result.DECLINED_OUTLET_NOT_ALLOWED: "declined: the card may not be used at this outlet",
    Result.DECLINED_TIME_NOT_ALLOWED: "declined: the card may not be used at this day or hour",
    Result.DECLINED_PROMPT_REQUIRED: "declined: the terminal must collect",
    Result.DECLINED_ODOMETER_BACKWARDS: "declined: odometer reading is below the last one",
    Result.DECLINED_LIMIT_EXCEEDED: "declined: over the card's limit",
    Result.DECLINED_CREDIT_LIMIT_EXCEEDED: "declined: over the contract's credit limit",
    Result.DECLINED_UNKNOWN_PROFILE: "declined: restriction profile not known",
    Result.DECLINED_UNKNOWN_CONTRACT: "declined: contract not known",
    Result.DECLINED_CONTRACT_CARD: "declined: the card draws on a contract; act on the contract",
    Result.DECLINED_OUTLET_CODE_TAKEN: "declined: another outlet already has this outlet's code",
    Result.DECLINED_INSUFFICIENT_POINTS: "declined: not enough points (valid, not expired)",
    Result.DECLINED_POINTS_PENDING: "declined: some of the points are not usable yet (returns window)",
    Result.DECLINED_RANGE_IN_ANOTHER_PROGRAM: "declined: a card range is in another program",
    Result.DECLINED_RECEIVING_CARD_UNUSABLE: "declined: the receiving card is unknown, blocked, "
                                             "closed or expired",
    Result.DECLINED_POINTS_OWED: "declined: a return took back points already spent; the card "
                                 "owes points until new ones cover them",
    Result.DECLINED_UNKNOWN_PROGRAM: "declined: loyalty program not known",
    Result.DECLINED_NOT_IN_PROGRAM: "declined: the card's range is in no loyalty program",
    Result.DECLINED_UNKNOWN_OUTLET: "declined: an earn rule names an outlet that is not defined "
                                    "(FleetService.DefineOutlet)",
    Result.DECLINED_POINTS_HAVE_NO_VALUE: "declined: the program gives points no value to pay with",
    Result.DECLINED_UNKNOWN_PARTNER: "declined: loyalty partner not defined (DefinePartner first)",
    Result.DECLINED_UNKNOWN_ZONE: "declined: time zone not defined",
    Result.DECLINED_OFFLINE_FLOOR_EXCEEDED: "declined: an offline sale above the range's "
                                            "offline floor limit (recorded, flagged for review)",
    Result.DECLINED_OFFLINE_TOO_OLD: "declined: an offline sale past the range's offline age "
                                     "limit (recorded, flagged for review)",
}
PROMPT_NAMES = {1: "PIN", 2: "odometer", 3: "driver id", 4: "vehicle id"}
PERIOD_NAMES = {1: "per transaction", 2: "daily", 3: "weekly", 4: "monthly", 5: "lifetime"}
MEASURE_NAMES = {1: "money", 2: "volume", 3: "count"}
JOB_FILE_PART_BYTES = 48 * 1024          # a job file's part per message (under MESSAGE_BYTES_MAX)

_WRITER_CODES = {
    writer_mod.QueueFull: grpc.StatusCode.RESOURCE_EXHAUSTED,
    writer_mod.StoreFull: grpc.StatusCode.RESOURCE_EXHAUSTED,
    writer_mod.StoreFailed: grpc.StatusCode.UNAVAILABLE,
    writer_mod.CoreFault: grpc.StatusCode.INTERNAL,
    writer_mod.ReplyTimeout: grpc.StatusCode.UNAVAILABLE,
    writer_mod.GuardRefused: grpc.StatusCode.ALREADY_EXISTS,
}


REFUSALS = (Refused, VelocityExceeded, InvalidArgument, RequestIdReused, writer_mod.WriterError,
            JobNotFound, JobConflict, PkiError)
_STATUS_OF = {VelocityExceeded: grpc.StatusCode.RESOURCE_EXHAUSTED,
              InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
              RequestIdReused: grpc.StatusCode.ALREADY_EXISTS,
              JobNotFound: grpc.StatusCode.NOT_FOUND,
              JobConflict: grpc.StatusCode.FAILED_PRECONDITION,
              PkiError: grpc.StatusCode.FAILED_PRECONDITION}


def throttle_of(exc) -> str:
    """Why a refusal throttled its caller ("rate", "operations", "admission" of access
    control, "velocity" of the card, "queue" of the writer), or "" for another refusal."""
    if isinstance(exc, VelocityExceeded):
        return "velocity"
    if isinstance(exc, writer_mod.QueueFull):
        return "queue"
    return getattr(exc, "throttle", "")


def public_text(exc) -> str:
    """What a refusal says to the client and the log: its text, with any card number
    a client may have put in a field masked (pan.mask_pans_in)."""
    return mask_pans_in(str(exc))


def status_of(exc) -> grpc.StatusCode:
    """The gRPC status a refusal (one of REFUSALS) is answered with."""
    if isinstance(exc, Refused):
        return exc.code
    if isinstance(exc, writer_mod.WriterError):
        return _WRITER_CODES.get(type(exc), grpc.StatusCode.UNAVAILABLE)
    return _STATUS_OF[type(exc)]


def rpc(method):
    """Check the caller's access and admit the call (a place among its certificate's calls
    at once), then run the method, mapping the gateway's exceptions onto gRPC status
    codes. Admission runs on the event loop before any work of the call is queued. A
    coroutine method (or async generator, for a server stream) runs on the event loop; a
    plain one in the servicer's thread pool, with the caller (acting.CALLER)."""
    full_name = None
    stream = inspect.isasyncgenfunction(method)

    def admitted(self, request, context):
        """The caller, checked, for the call to read (acting.CALLER): the requests it
        makes carry its actor code."""
        nonlocal full_name
        full_name = full_name or f"/{self.SERVICE}/{method.__name__}"
        caller = self.access.check(context, full_name, request)
        if isinstance(request, Malformed):
            raise InvalidArgument("request", f"not a valid {request.type_name} message "
                                  f"({request.problem})")
        acting.CALLER.set(caller)
        return caller

    def refused(exc):
        details = public_text(exc)
        if isinstance(exc, Denied):
            log.info("%s refused: %s", method.__name__, details)
        return status_of(exc), details

    per_operation = getattr(method, "counts_operations", False)

    def throttled(self, exc):
        reason = throttle_of(exc)
        if reason and self.metrics is not None:
            self.metrics.throttled.labels(reason).inc()

    def observe(self, caller, request, result: str, started: float):
        """Metrics and the request's log line, once it is answered."""
        if self.metrics is not None:
            self.metrics.answered(method.__name__, result, started,
                                  per_operation and result == "answered")
        log_request(caller, method.__name__, request, result, started)

    if stream:
        @functools.wraps(method)
        async def stream_wrapper(self, request, context):
            started, result, caller = time.perf_counter(), "answered", None
            try:
                caller = admitted(self, request, context)
                with self.access.admission(caller, stream=True):
                    async for item in method(self, request, context):
                        yield item
            except REFUSALS as exc:
                code, details = refused(exc)
                result, caller = code.name, caller or getattr(exc, "identity", None)
                throttled(self, exc)
                await context.abort(code, details)
            finally:
                observe(self, caller, request, result, started)
        return stream_wrapper

    if inspect.iscoroutinefunction(method):
        run = method
    else:
        async def run(self, request, context):
            # The caller goes with the work to the pool thread (a copy of this context),
            # and no thread keeps it for the next call.
            return await asyncio.get_running_loop().run_in_executor(
                self.executor, contextvars.copy_context().run, method, self, request, context)

    @functools.wraps(method)
    async def wrapper(self, request, context):
        started, caller = time.perf_counter(), None
        try:
            caller = admitted(self, request, context)
            with self.access.admission(caller):
                response = await run(self, request, context)
        except REFUSALS as exc:
            code, details = refused(exc)
            throttled(self, exc)
            observe(self, caller or getattr(exc, "identity", None), request, code.name, started)
            await context.abort(code, details)
        observe(self, caller, request, _result_of(response), started)
        return response
    return wrapper


def counts_operations(method):
    """Marks an RPC that counts each operation it carries in the metrics itself (the rpc
    decorator then counts only refusals of the whole call)."""
    method.counts_operations = True
    return method


def _result_of(response) -> str:
    code = getattr(getattr(response, "authorization", response), "result_code", None)
    return common_pb2.ResultCode.Name(code) if code is not None else "answered"


def balance_message(currency, balance_minor, pending_minor, credit_limit_minor=0):
    return common_pb2.Balance(currency=currency, balance_minor=balance_minor,
                              pending_minor=pending_minor, credit_limit_minor=credit_limit_minor,
                              available_minor=balance_minor - pending_minor + credit_limit_minor)


def takes_off(direction) -> bool:
    """True for ADJUSTMENT_DIRECTION_DEBIT, False for _CREDIT; anything else is refused."""
    if direction not in (issuing_pb2.ADJUSTMENT_DIRECTION_CREDIT,
                         issuing_pb2.ADJUSTMENT_DIRECTION_DEBIT):
        raise InvalidArgument("direction", "must be ADJUSTMENT_DIRECTION_CREDIT or _DEBIT")
    return direction == issuing_pb2.ADJUSTMENT_DIRECTION_DEBIT


def limit_message(limit_hit, soft, maximum) -> common_pb2.Limit:
    """The Limit a reply or a flagged sale names (the core's limit_hit), with its maximum."""
    period, measure = fleet.limit_of(limit_hit)
    return common_pb2.Limit(period=period, measure=measure, soft=bool(soft), max=maximum)


def authorization_message(reply, store=None) -> common_pb2.Authorization:
    """The Authorization of a core reply; with the store, a sale of a loyalty card also
    says what it earned and why (LoyaltyOutcome)."""
    approved = reply.result in (Result.APPROVED, Result.PARTIALLY_APPROVED)
    loyalty, money = loyalty_outcome(store, reply) if store is not None else (None, None)
    # A sale paid otherwise (or its return) answers the card's points as its balance,
    # and the money the sale took as approved.
    approved_currency = money if money and reply.currency == POINTS_ASSET else reply.currency
    message = RESULT_MESSAGES.get(reply.result, f"result {reply.result}")
    prompts = fleet.prompts_of(reply.prompts_missing)
    limit = fleet.limit_of(reply.limit_hit)
    if prompts:
        message += ": " + ", ".join(PROMPT_NAMES[p] for p in prompts)
    if limit:
        message += f" ({PERIOD_NAMES[limit[0]]} {MEASURE_NAMES[limit[1]]} limit" + \
            (", flagged for review)" if reply.review & records.REVIEW_FLAG_SOFT_LIMIT else ")")
    if reply.review & records.REVIEW_FLAG_FORCED_CAPTURE:
        message += " (late completion taken as a forced capture)"
    if reply.review & records.REVIEW_FLAG_OFFLINE_POSTED:
        message += " (a sale approved offline, posted whatever the card held: flagged for review)"
    if reply.review & records.REVIEW_FLAG_OFFLINE_REFUSED:
        message += " (a sale approved offline: recorded, not posted, flagged for review)"
    limit_max = store.read_limit_max(reply.card_id, reply.limit_hit) \
        if limit and store is not None else 0
    return common_pb2.Authorization(
        result_code=reply.result,
        approval_code=f"{reply.approval_code:06d}" if approved else "",
        approved=common_pb2.Money(amount_minor=reply.approved_minor, currency=approved_currency),
        balance=balance_message(reply.currency, reply.balance_minor, reply.pending_minor,
                                reply.credit_limit_minor),
        masked_pan=mask_parts(reply.pan_first6, reply.pan_last4, reply.pan_length),
        journal_seq=reply.journal_seq,
        message=message,
        missing_prompts=prompts,
        limit=limit_message(reply.limit_hit, reply.review & records.REVIEW_FLAG_SOFT_LIMIT,
                            limit_max) if limit else None,
        flagged_for_review=bool(reply.review),
        forced_capture=bool(reply.review & records.REVIEW_FLAG_FORCED_CAPTURE),
        volume_ml=reply.volume_ml,
        loyalty=loyalty,
    )


class Servicer:
    """What every cardgate.v1 servicer holds; SERVICE names the service it implements
    (the rpc decorator checks access by it, registration registers under it); metrics,
    set by the server, counts what it answers."""
    SERVICE = ""
    metrics = None
    executor = None         # the thread pool of plain (not async) methods; None: the loop's

    def __init__(self, operations, access):
        self.ops = operations
        self.access = access

    @staticmethod
    def caller_may(role: str) -> bool:
        """Whether the caller has `role` (without TLS, the development mode: yes)."""
        identity = acting.CALLER.get()
        return identity is None or identity.role == role

    def known_card(self, pan_text):
        """(Card, Reply describing it) of the card, or NOT_FOUND; a read, no writer. A
        terminal reads only cards its merchant accepts (SetCardRangeAcceptance); any other
        is answered as not known."""
        found = self.ops.balance(pan_text)
        identity = acting.CALLER.get()
        if found is None or identity is not None and identity.role == "terminal" and \
                not self.ops.accepts(found[0].range_id, identity.merchant_id):
            raise Refused(grpc.StatusCode.NOT_FOUND, "pan: this card is not known")
        return found


class AuthorizationService(Servicer, authorization_pb2_grpc.AuthorizationServiceServicer):
    SERVICE = authorization_pb2.DESCRIPTOR.services_by_name["AuthorizationService"].full_name

    # The authorizations are coroutines on the event loop: validate and pack there, then
    # wait for the writer's commit without holding a thread.
    async def _authorize(self, kind, request) -> common_pb2.Authorization:
        reply = await self.ops.submit_one_async(self.ops.pack_operation(kind, request),
                                                request.request_id)
        return authorization_message(reply, self.ops.store)

    @rpc
    async def LoadValue(self, request, context):
        return authorization_pb2.LoadValueResponse(
            authorization=await self._authorize("load", request))

    @rpc
    async def Purchase(self, request, context):
        return authorization_pb2.PurchaseResponse(
            authorization=await self._authorize("purchase", request))

    @rpc
    async def PreAuthorize(self, request, context):
        return authorization_pb2.PreAuthorizeResponse(
            authorization=await self._authorize("preauthorize", request), hold_id=request.request_id)

    @rpc
    async def CompletePreAuthorization(self, request, context):
        return authorization_pb2.CompletePreAuthorizationResponse(
            authorization=await self._authorize("complete", request))

    @rpc
    async def VoidPreAuthorization(self, request, context):
        return authorization_pb2.VoidPreAuthorizationResponse(
            authorization=await self._authorize("void", request))

    @rpc
    async def Refund(self, request, context):
        return authorization_pb2.RefundResponse(
            authorization=await self._authorize("refund", request))

    @rpc
    async def Reverse(self, request, context):
        return authorization_pb2.ReverseResponse(
            authorization=await self._authorize("reverse", request))

    @rpc
    def SellPackage(self, request, context):
        reply = self.ops.sell_package(request.request_id, request.pan, request.units,
                                      request.valid_until_s)
        return authorization_pb2.SellPackageResponse(authorization=authorization_message(reply))

    @rpc
    def UseUnits(self, request, context):
        reply = self.ops.use_units(request.request_id, request.pan, request.units)
        return authorization_pb2.UseUnitsResponse(authorization=authorization_message(reply))

    @rpc
    def GetBalance(self, request, context):
        card, described = self.known_card(request.pan)
        return authorization_pb2.GetBalanceResponse(
            balance=balance_message(described.currency, described.balance_minor,
                                    described.pending_minor, described.credit_limit_minor),
            masked_pan=mask_parts(card.pan_first6, card.pan_last4, card.pan_length),
            status=card.status, expiry_yyyymm=card.expiry_yyyymm, stage=card.stage + 1,
            units_left=self.ops.store.read_units_left(card.card_id))


class IssuingService(Servicer, issuing_pb2_grpc.IssuingServiceServicer):
    SERVICE = issuing_pb2.DESCRIPTOR.services_by_name["IssuingService"].full_name

    def __init__(self, operations, access, jobs):
        super().__init__(operations, access)
        self.jobs = jobs                            # jobs.PersonalizationJobs

    @rpc
    def CreateCardRange(self, request, context):
        reply = self.ops.create_range(request.request_id, request.range_id, request.iin_prefix,
                                      request.pan_length, request.currency, request.name,
                                      request.pin_tries_max, request.balance_max_minor,
                                      request.load_per_day_max_minor, request.numbering,
                                      request.late_completion_grace_s
                                      if request.HasField("late_completion_grace_s")
                                      else records.LATE_GRACE_S_DEFAULT,
                                      request.time_zone, request.utc_offset_min,
                                      request.pin_policy, request.offline_floor_minor,
                                      request.offline_age_hours)
        return issuing_pb2.CreateCardRangeResponse(
            result_code=reply.result, message=RESULT_MESSAGES.get(reply.result, ""))

    @rpc
    def IssueGiftCards(self, request, context):
        replies = self.ops.issue_gift_cards(
            request.request_id, request.range_id,
            [(card.pan, card.expiry_yyyymm) for card in request.cards])
        return issuing_pb2.IssueGiftCardsResponse(cards=[
            issuing_pb2.IssuedCard(result_code=r.result, card_id=r.card_id,
                                   masked_pan=mask_parts(r.pan_first6, r.pan_last4, r.pan_length))
            for r in replies])

    @rpc
    async def IssueCards(self, request, context):
        if request.numbering not in (issuing_pb2.CARD_NUMBERING_UNSPECIFIED,
                                     issuing_pb2.CARD_NUMBERING_SEQUENTIAL,
                                     issuing_pb2.CARD_NUMBERING_RANDOM):
            raise InvalidArgument("numbering", "must be CARD_NUMBERING_SEQUENTIAL or _RANDOM "
                                  "(or unspecified: as the range says)")
        parts = self.ops.issue_cards(request.request_id, request.range_id, request.count,
                                     request.expiry_yyyymm,
                                     None if request.numbering == issuing_pb2.CARD_NUMBERING_UNSPECIFIED
                                     else request.numbering == issuing_pb2.CARD_NUMBERING_SEQUENTIAL,
                                     list(request.holder_names))
        total = request.count or len(request.holder_names)
        loop, issued = asyncio.get_running_loop(), 0
        acting_context = contextvars.copy_context()     # the parts are made by this caller
        while True:                 # each part commits in the writer; the loop serves on
            replies = await loop.run_in_executor(None, acting_context.run, next, parts, None)
            if replies is None:
                return
            issued += sum(r.result == Result.APPROVED for r in replies)
            yield issuing_pb2.IssueCardsProgress(issued=issued, total=total, cards=[
                issuing_pb2.IssuedCard(result_code=r.result, card_id=r.card_id,
                                       masked_pan=mask_parts(r.pan_first6, r.pan_last4, r.pan_length))
                for r in replies])

    @rpc
    def ReplaceCard(self, request, context):
        reply = self.ops.replace_card(request.request_id, request.pan, request.new_pan)
        return issuing_pb2.ReplaceCardResponse(authorization=authorization_message(reply))

    @rpc
    def SetCardStage(self, request, context):
        if request.stage not in (issuing_pb2.CARD_STAGE_CREATED, issuing_pb2.CARD_STAGE_PERSONALIZED,
                                 issuing_pb2.CARD_STAGE_SHIPPED):
            raise InvalidArgument("stage", "must be CARD_STAGE_CREATED, _PERSONALIZED or _SHIPPED")
        reply = self.ops.set_card_stage(request.request_id, request.pan, request.stage - 1)
        card = self.ops.store.read_card_by_id(reply.card_id) if reply.card_id else None
        return issuing_pb2.SetCardStageResponse(
            result_code=reply.result, stage=card.stage + 1 if card else 0,
            masked_pan=mask_parts(reply.pan_first6, reply.pan_last4, reply.pan_length))

    @rpc
    async def ExportPersonalizationJob(self, request, context):
        if request.allow_unsealed and not self.caller_may("operator"):
            raise Denied(grpc.StatusCode.PERMISSION_DENIED,
                         "allow_unsealed: only an operator may export a job unsealed")
        job_id, cards, data, encrypted = await asyncio.get_running_loop().run_in_executor(
            None, contextvars.copy_context().run, lambda: self.jobs.export(
                request.request_id, request.card_ids, request.bureau_certificate_pem,
                request.service_code, request.chip.aid, request.chip.value_limit_minor,
                request.master_key_label, request.issue_request_id, request.allow_unsealed))
        message = f"job {job_id}: {cards} cards, signed" + \
            (" and encrypted to the bureau's certificate" if encrypted else "")
        for at in range(0, len(data), JOB_FILE_PART_BYTES):
            yield issuing_pb2.ExportPersonalizationJobResponse(
                result_code=Result.APPROVED, job_id=job_id, cards=cards, encrypted=encrypted,
                message=message, job_file=data[at:at + JOB_FILE_PART_BYTES])

    @rpc
    def ReportPersonalization(self, request, context):
        if request.result not in (issuing_pb2.PERSONALIZATION_RESULT_ENCODED,
                                  issuing_pb2.PERSONALIZATION_RESULT_FAILED):
            raise InvalidArgument("result", "must be PERSONALIZATION_RESULT_ENCODED or _FAILED")
        result, masked, stage = self.jobs.report(
            request.request_id, request.job_id, request.seq,
            request.result == issuing_pb2.PERSONALIZATION_RESULT_ENCODED, request.reason,
            request.chip_uid)
        return issuing_pb2.ReportPersonalizationResponse(
            result_code=result, message=RESULT_MESSAGES.get(result, ""), masked_pan=masked,
            stage=stage + 1)

    @rpc
    def GetPersonalizationJob(self, request, context):
        meta, rows = self.jobs.status(request.job_id)
        results = {ENCODED: issuing_pb2.PERSONALIZATION_RESULT_ENCODED,
                   FAILED: issuing_pb2.PERSONALIZATION_RESULT_FAILED}
        cards = [issuing_pb2.PersonalizationJobCard(
            seq=seq, masked_pan=mask_parts(card.pan_first6, card.pan_last4, card.pan_length),
            stage=card.stage + 1, result=results.get(state["result"], issuing_pb2.PERSONALIZATION_RESULT_PENDING),
            reason=state.get("reason", ""), attempts=state["attempts"],
            chip_uid=bytes.fromhex(state.get("chip_uid", "")),
            created_at_s=times[0], personalized_at_s=times[1], shipped_at_s=times[2])
            for seq, card, state, times in rows]
        counts = {r: sum(c.result == r for c in cards) for r in (
            issuing_pb2.PERSONALIZATION_RESULT_ENCODED, issuing_pb2.PERSONALIZATION_RESULT_FAILED,
            issuing_pb2.PERSONALIZATION_RESULT_PENDING)}
        return issuing_pb2.GetPersonalizationJobResponse(
            result_code=Result.APPROVED, message="", job_id=request.job_id,
            created_at_s=meta["created_at_s"], cards=cards,
            encoded=counts[issuing_pb2.PERSONALIZATION_RESULT_ENCODED],
            failed=counts[issuing_pb2.PERSONALIZATION_RESULT_FAILED],
            pending=counts[issuing_pb2.PERSONALIZATION_RESULT_PENDING])

    @rpc
    def SetCardPin(self, request, context):
        reply = self.ops.set_card_pin(request.request_id, request.pan, request.pin)
        return issuing_pb2.SetCardPinResponse(
            result_code=reply.result,
            masked_pan=mask_parts(reply.pan_first6, reply.pan_last4, reply.pan_length))

    @rpc
    def AdjustBalance(self, request, context):
        reply = self.ops.adjust_balance(
            request.request_id, request.pan, request.amount.amount_minor, request.amount.currency,
            takes_off(request.direction), request.reason)
        return issuing_pb2.AdjustBalanceResponse(authorization=authorization_message(reply))

    @rpc
    def ClearBalance(self, request, context):
        reply = self.ops.clear_balance(request.request_id, request.pan, request.reason)
        return issuing_pb2.ClearBalanceResponse(authorization=authorization_message(reply))

    @rpc
    def DeactivateCard(self, request, context):
        reply = self.ops.deactivate_card(request.request_id, request.pan, request.disposition,
                                         request.to_pan, request.reason)
        return issuing_pb2.DeactivateCardResponse(authorization=authorization_message(reply))

    @rpc
    def SetCardRangeAcceptance(self, request, context):
        merchants = self.ops.set_acceptance(request.request_id, request.range_id,
                                            list(request.merchant_ids))
        return issuing_pb2.SetCardRangeAcceptanceResponse(
            result_code=Result.APPROVED, merchant_ids=merchants,
            message="accepted by " + (", ".join(merchants) if merchants else "every merchant"))

    @rpc
    def SetCardStatus(self, request, context):
        if request.status == records.CardStatus.ACTIVE and not self.caller_may("operator"):
            raise Denied(grpc.StatusCode.PERMISSION_DENIED,
                         "status: a bureau may block a card, never unblock or activate one; an "
                         "operator does")
        reply = self.ops.set_card_status(request.request_id, request.pan, request.status)
        return issuing_pb2.SetCardStatusResponse(
            result_code=reply.result, status=reply.card_status,
            masked_pan=mask_parts(reply.pan_first6, reply.pan_last4, reply.pan_length))
