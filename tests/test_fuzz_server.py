"""Malformed and mutated requests against the running server over TLS: it never
crashes, never answers INTERNAL or UNKNOWN, and the ledger still audits clean."""
import random

import grpc
import pytest
from google.protobuf import message_factory
from hypothesis import HealthCheck, given, settings, strategies as st
from test_gift_card_end_to_end import run_audit

from cardgate.gateway.api.registration import SERVICES
from cardgate.gateway.security.access import ALLOWED_ROLES
from cardgate.v1 import authorization_pb2, common_pb2, issuing_pb2

from conftest import LiveGateway
from helpers import create_range, eur, issue, load, make_pan, new_id

ROLE_CERT = {"terminal": "terminal-1", "bureau": "bureau-1", "operator": "operator-1"}
FORBIDDEN = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.UNAVAILABLE,
             grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNIMPLEMENTED}
METHODS = sorted(ALLOWED_ROLES)
PAN = make_pan(1)


def _request_class(method):
    service, name = method.strip("/").split("/")
    svc = next(s for s in SERVICES if s.full_name == service)
    return message_factory.GetMessageClass(svc.methods_by_name[name].input_type)


def _valid_seed(method):
    """A well-formed request for the method, to mutate."""
    cls = _request_class(method)
    fields = {"request_id": new_id(), "pan": PAN, "amount": eur(1_00),
              "original_request_id": new_id(), "range_id": 1, "iin_prefix": "627700",
              "pan_length": 16, "currency": "EUR", "status": 3,
              "cards": [issuing_pb2.GiftCardToIssue(pan=make_pan(77), expiry_yyyymm=209912)]}
    names = {f.name for f in cls.DESCRIPTOR.fields}
    return cls(**{k: v for k, v in fields.items() if k in names}).SerializeToString()


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("fuzz") / "data"
    gw = LiveGateway(data_dir)
    create_range(gw)
    issue(gw, [PAN])
    load(gw, PAN, 1_000_00)
    callers = {role: gw.open(cert) for role, cert in ROLE_CERT.items()}
    yield gw, callers
    gw.close()
    audit = run_audit(data_dir)
    assert audit.returncode == 0, audit.stdout


def mutate(seed: bytes, rng: random.Random) -> bytes:
    data = bytearray(seed)
    for _ in range(rng.randint(1, 6)):
        kind = rng.randrange(5)
        if kind == 0 and data:
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif kind == 1 and data:
            del data[rng.randrange(len(data)):]
        elif kind == 2:
            at = rng.randrange(len(data) + 1)
            data[at:at] = rng.randbytes(rng.randint(1, 40))
        elif kind == 3 and data:
            at = rng.randrange(len(data))
            data[at:at] = data[at:at + rng.randint(1, 30)] * rng.randint(2, 50)
        else:
            data += seed
    return bytes(data)


# Streams that follow what happens until the caller cancels: a valid request is answered
# with what there is, then the stream waits; only its caller's deadline ends it.
WATCHING = {"/cardgate.v1.OfficeService/WatchEvents"}
WATCH_S = 0.5


def _call(channel, method, payload):
    service, name = method.strip("/").split("/")
    descriptor = next(s for s in SERVICES if s.full_name == service).methods_by_name[name]
    if descriptor.client_streaming:
        return list(channel.stream_stream(method)(iter([payload]), timeout=10))
    if descriptor.server_streaming:
        return list(channel.unary_stream(method)(payload, timeout=WATCH_S if method in WATCHING else 10))
    return channel.unary_unary(method)(payload, timeout=10)


def check(callers, method, payload, role=None):
    role = role or sorted(ALLOWED_ROLES[method])[0]
    try:
        _call(callers[role], method, payload)
    except grpc.RpcError as exc:
        if method in WATCHING and exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            return                          # watching, as asked
        assert exc.code() not in FORBIDDEN, (method, payload[:80], exc.code(), exc.details())
        assert PAN not in (exc.details() or "")


fuzz_settings = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@fuzz_settings
@given(method=st.sampled_from(METHODS), payload=st.binary(max_size=3000))
def test_random_bytes(fuzz_target, method, payload):
    check(fuzz_target[1], method, payload)


@fuzz_settings
@given(method=st.sampled_from(METHODS), seed=st.integers(0, 2**32))
def test_mutated_valid_requests(fuzz_target, method, seed):
    check(fuzz_target[1], method, mutate(_valid_seed(method), random.Random(seed)))


@fuzz_settings
@given(method=st.sampled_from(METHODS), text=st.text(max_size=300),
       number=st.one_of(st.integers(-2**63, 2**63 - 1), st.sampled_from([0, -1, 2**63 - 1])),
       role=st.sampled_from(sorted(ROLE_CERT)))
def test_well_typed_requests_with_wild_values(fuzz_target, method, text, number, role):
    cls = _request_class(method)
    request = cls()
    for field in cls.DESCRIPTOR.fields:
        if field.is_repeated:
            continue
        if field.type == field.TYPE_STRING:
            setattr(request, field.name, text)
        elif field.type in (field.TYPE_UINT32,):
            setattr(request, field.name, abs(number) % 2**32)
        elif field.type == field.TYPE_ENUM:
            setattr(request, field.name, abs(number) % 2**31)
        elif field.message_type is not None and field.message_type.name == "Money":
            getattr(request, field.name).CopyFrom(common_pb2.Money(amount_minor=number, currency=text[:5]))
        elif field.message_type is not None and field.message_type.name == "Acceptor":
            getattr(request, field.name).CopyFrom(common_pb2.Acceptor(outlet_id=text))
    check(fuzz_target[1], method, request.SerializeToString(), role)


@pytest.mark.parametrize("size", [64 * 1024 + 1, 1 << 20])
def test_oversized_messages(fuzz_target, size):
    for method in METHODS:
        check(fuzz_target[1], method, b"\x0a" + b"\xff" * size)


def test_server_still_answers_after_the_fuzzing(fuzz_target):
    gw, _ = fuzz_target
    reply = gw.auth.GetBalance(authorization_pb2.GetBalanceRequest(pan=PAN))
    assert reply.balance.currency == "EUR"
