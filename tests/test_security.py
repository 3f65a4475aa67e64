"""Over real TLS on loopback: only certificates of the gateway's own CA get in, each
role only reaches its RPCs, a terminal only acts for its own outlet, revocation needs
no restart, and abuse limits refuse without changing anything."""
import subprocess
import sys

import grpc
import pytest

from cardgate.gateway.api.server import Gateway, InsecureRefused
from cardgate.gateway.cli.channels import open_channel
from cardgate.gateway.security.access import ALLOWED_ROLES
from cardgate.gateway.security.pki import Pki
from cardgate.v1 import authorization_pb2, authorization_pb2_grpc, common_pb2

from conftest import TERMINAL_MERCHANT, TERMINAL_OUTLET, LiveGateway
from helpers import create_range, eur, issue, load, make_pan, new_id, purchase, snapshot

ROLE_CERT = {"terminal": "terminal-1", "bureau": "bureau-1", "operator": "operator-1"}


STREAMING = {"/cardgate.v1.ForecourtService/AuthorizeStream"}
SERVER_STREAMING = {"/cardgate.v1.LoyaltyService/ListExpiringPoints",
                    "/cardgate.v1.OfficeService/ListTransactions",
                    "/cardgate.v1.OfficeService/WatchEvents"}
WATCHING = {"/cardgate.v1.OfficeService/WatchEvents"}     # streams until cancelled


def call_raw(channel, method, payload=b""):
    if method in STREAMING:
        return list(channel.stream_stream(method)(iter([payload]), timeout=10))
    if method in SERVER_STREAMING:
        return list(channel.unary_stream(method)(payload, timeout=10))
    return channel.unary_unary(method)(payload, timeout=10)


def expect_code(code, fn, *args):
    with pytest.raises(grpc.RpcError) as caught:
        fn(*args)
    assert caught.value.code() == code, caught.value.details()
    return caught.value


def test_no_client_certificate_is_refused(live_gateway):
    ca = (live_gateway.certs / "ca.crt").read_bytes()
    with grpc.secure_channel(live_gateway.gateway.address,
                             grpc.ssl_channel_credentials(root_certificates=ca)) as channel:
        stub = authorization_pb2_grpc.AuthorizationServiceStub(channel)
        expect_code(grpc.StatusCode.UNAVAILABLE, stub.GetBalance,
                    authorization_pb2.GetBalanceRequest(pan=make_pan(1)))


def test_plain_text_is_refused(live_gateway):
    with grpc.insecure_channel(live_gateway.gateway.address) as channel:
        stub = authorization_pb2_grpc.AuthorizationServiceStub(channel)
        expect_code(grpc.StatusCode.UNAVAILABLE, stub.GetBalance,
                    authorization_pb2.GetBalanceRequest(pan=make_pan(1)))


def test_certificate_of_another_ca_is_refused(live_gateway, tmp_path):
    other = Pki(tmp_path / "other")
    other.ensure()
    other.issue("operator", "intruder", tmp_path / "intruder")
    # Trust the real gateway, present a certificate it never issued.
    (tmp_path / "intruder" / "ca.crt").write_bytes((live_gateway.certs / "ca.crt").read_bytes())
    channel = live_gateway.open("intruder", tmp_path / "intruder")
    stub = authorization_pb2_grpc.AuthorizationServiceStub(channel)
    expect_code(grpc.StatusCode.UNAVAILABLE, stub.GetBalance,
                authorization_pb2.GetBalanceRequest(pan=make_pan(1)))


def test_revoked_certificate_is_refused_on_its_next_call_without_restart(live_gateway):
    gw = live_gateway
    pan = make_pan(1)
    create_range(gw)
    issue(gw, [pan])
    assert load(gw, pan, 10_00).result_code == common_pb2.RESULT_CODE_APPROVED
    revoke = subprocess.run([sys.executable, "-m", "cardgate.gateway.cli.main", "pki", "revoke",
                             "--data-dir", str(gw.data_dir), "--cert",
                             str(gw.certs / "terminal-1.crt")], capture_output=True, text=True,
                            timeout=60)
    assert revoke.returncode == 0, revoke.stderr
    error = expect_code(grpc.StatusCode.UNAUTHENTICATED, purchase, gw, pan, 1_00)
    assert "revoked" in error.details()
    assert balance_as_operator(gw, pan) == 10_00
    listing = subprocess.run([sys.executable, "-m", "cardgate.gateway.cli.main", "pki", "list",
                              "--data-dir", str(gw.data_dir)], capture_output=True, text=True,
                             timeout=60)
    assert "terminal-1: REVOKED" in listing.stdout and "operator-1: valid" in listing.stdout


def balance_as_operator(gw, pan):
    stub = authorization_pb2_grpc.AuthorizationServiceStub(gw.open("operator-1"))
    return stub.GetBalance(authorization_pb2.GetBalanceRequest(pan=pan)).balance.balance_minor


@pytest.mark.parametrize("field,value", [("outlet_id", "o2"), ("merchant_id", "m2")])
def test_terminal_acting_for_another_outlet_or_merchant_is_denied(live_gateway, field, value):
    gw = live_gateway
    pan = make_pan(1)
    create_range(gw)
    issue(gw, [pan])
    load(gw, pan, 10_00)
    before = snapshot(gw.gateway.store)
    acceptor = common_pb2.Acceptor(merchant_id=TERMINAL_MERCHANT, outlet_id=TERMINAL_OUTLET)
    setattr(acceptor, field, value)
    error = expect_code(grpc.StatusCode.PERMISSION_DENIED, gw.auth.Purchase,
                        authorization_pb2.PurchaseRequest(request_id=new_id(), pan=pan,
                                                          amount=eur(1_00), acceptor=acceptor))
    assert f"acceptor.{field}" in error.details() and pan not in error.details()
    assert snapshot(gw.gateway.store) == before
    # Its own outlet, named or left empty, is served.
    own = common_pb2.Acceptor(merchant_id=TERMINAL_MERCHANT, outlet_id=TERMINAL_OUTLET)
    served = gw.auth.Purchase(authorization_pb2.PurchaseRequest(
        request_id=new_id(), pan=pan, amount=eur(1_00), acceptor=own))
    assert served.authorization.result_code == common_pb2.RESULT_CODE_APPROVED


EMPTY_REQUEST_VALID = {"/cardgate.v1.FleetService/ListFlagged",   # lists everything flagged
                       "/cardgate.v1.OfficeService/ListTransactions"}     # every transaction


@pytest.mark.parametrize("method", sorted(ALLOWED_ROLES))
def test_every_rpc_admits_exactly_its_roles(live_gateway, method):
    for role, cert in ROLE_CERT.items():
        channel = live_gateway.open(cert)
        if role in ALLOWED_ROLES[method] and method in STREAMING:
            # Let in: the stream answers the empty message with its own error.
            answers = call_raw(channel, method)
            assert len(answers) == 1 and b"operations: is empty" in answers[0]
        elif role in ALLOWED_ROLES[method] and method in EMPTY_REQUEST_VALID:
            call_raw(channel, method)                   # let in, and answered
        elif role in ALLOWED_ROLES[method] and method in WATCHING:
            # Let in, and watching an empty journal until the caller gives up.
            expect_code(grpc.StatusCode.DEADLINE_EXCEEDED,
                        lambda: list(channel.unary_stream(method)(b"", timeout=1)))
        elif role in ALLOWED_ROLES[method]:
            # Let in: the handler itself answers (the empty request is invalid).
            expect_code(grpc.StatusCode.INVALID_ARGUMENT, call_raw, channel, method)
        else:
            error = expect_code(grpc.StatusCode.PERMISSION_DENIED, call_raw, channel, method)
            assert role in error.details() and method in error.details()


def test_roles_follow_the_product_rules():
    pay = "/cardgate.v1.AuthorizationService/Purchase"
    issue_cards = "/cardgate.v1.IssuingService/IssueGiftCards"
    assert "bureau" not in ALLOWED_ROLES[pay]            # a bureau cannot authorize payments
    assert "terminal" not in ALLOWED_ROLES[issue_cards]  # a terminal cannot issue cards
    assert all("terminal" not in roles for name, roles in ALLOWED_ROLES.items()
               if "IssuingService" in name)


def test_terminal_over_its_request_rate_is_refused_and_nothing_changes(tmp_path):
    gw = LiveGateway(tmp_path / "data", terminal_rate_per_s=0.01, terminal_burst=3)
    try:
        pan = make_pan(1)
        create_range(gw)
        issue(gw, [pan])
        load(gw, pan, 10_00)              # 1
        purchase(gw, pan, 1_00)           # 2
        purchase(gw, pan, 1_00)           # 3
        before = snapshot(gw.gateway.store)
        error = expect_code(grpc.StatusCode.RESOURCE_EXHAUSTED, purchase, gw, pan, 1_00)
        assert "requests/s" in error.details()
        assert snapshot(gw.gateway.store) == before
    finally:
        gw.close()


def test_card_over_its_velocity_limit_is_refused_and_nothing_changes(tmp_path):
    gw = LiveGateway(tmp_path / "data", card_per_minute_max=3)
    try:
        pan, other = make_pan(1), make_pan(2)
        create_range(gw)
        issue(gw, [pan, other])
        load(gw, pan, 10_00)
        purchase(gw, pan, 1_00)
        purchase(gw, pan, 1_00)
        before = snapshot(gw.gateway.store)
        error = expect_code(grpc.StatusCode.RESOURCE_EXHAUSTED, purchase, gw, pan, 1_00)
        assert f"{pan[:6]}******{pan[-4:]}" in error.details() and pan not in error.details()
        assert snapshot(gw.gateway.store) == before
        assert load(gw, other, 5_00).result_code == common_pb2.RESULT_CODE_APPROVED
    finally:
        gw.close()


def test_development_mode_serves_loopback_only(tmp_path):
    with pytest.raises(InsecureRefused, match="only for loopback"):
        Gateway(tmp_path / "a", "0.0.0.0:0", tls=False)
    gw = Gateway(tmp_path / "b", "127.0.0.1:0", tls=False).start()
    try:
        with open_channel(gw.address) as channel:
            stub = authorization_pb2_grpc.AuthorizationServiceStub(channel)
            expect_code(grpc.StatusCode.NOT_FOUND, stub.GetBalance,
                        authorization_pb2.GetBalanceRequest(pan=make_pan(1)))
    finally:
        gw.stop()
    assert not (tmp_path / "b" / "pki").exists()
