"""Least privilege, over real mutual TLS with certificates of the gateway's own CA: a
bureau cannot unblock; a terminal reads only cards its merchant accepts and moves points
only with the cardholder's PIN; an operator scoped to an issuer's ranges or a partner
sees and changes only those; every operator and bureau act is in the admin log; metrics
off loopback need an operator certificate; certificates are renewed."""
import ssl
import subprocess
import sys
import urllib.request

import grpc
import pytest

from cardgate.gateway.api.server import Gateway, InsecureRefused
from cardgate.gateway.security.pki import identity_of, load_certificate
from cardgate.v1 import (authorization_pb2, authorization_pb2_grpc, common_pb2, issuing_pb2,
                         issuing_pb2_grpc, loyalty_pb2, loyalty_pb2_grpc)

from conftest import TERMINAL_MERCHANT
from helpers import create_range, eur, funded_card, issue, load, make_pan, new_id

APPROVED = common_pb2.RESULT_CODE_APPROVED


def refused(code, call, *args):
    with pytest.raises(grpc.RpcError) as caught:
        call(*args)
    assert caught.value.code() == code, caught.value.details()
    return caught.value.details()


def cli(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "cardgate.gateway.cli.main", *args],
                          capture_output=True, text=True, timeout=60, **kwargs)


def test_a_bureau_blocks_but_never_unblocks(live_gateway):
    gw = live_gateway
    pan = funded_card(gw, 1)
    bureau = issuing_pb2_grpc.IssuingServiceStub(gw.open("bureau-1"))
    blocked = bureau.SetCardStatus(issuing_pb2.SetCardStatusRequest(
        request_id=new_id(), pan=pan, status=authorization_pb2.CARD_STATUS_BLOCKED))
    assert blocked.result_code == APPROVED
    details = refused(grpc.StatusCode.PERMISSION_DENIED, bureau.SetCardStatus,
                      issuing_pb2.SetCardStatusRequest(request_id=new_id(), pan=pan,
                                                       status=authorization_pb2.CARD_STATUS_ACTIVE))
    assert "never unblock" in details
    unblocked = gw.issuing.SetCardStatus(issuing_pb2.SetCardStatusRequest(
        request_id=new_id(), pan=pan, status=authorization_pb2.CARD_STATUS_ACTIVE))
    assert unblocked.result_code == APPROVED


def test_a_terminal_reads_only_cards_its_merchant_accepts(live_gateway):
    gw = live_gateway
    pan = funded_card(gw, 1)
    gw.gateway.pki.issue("terminal", "elsewhere", gw.certs, merchant_id="m2", outlet_id="o2")
    other = authorization_pb2_grpc.AuthorizationServiceStub(gw.open("elsewhere"))
    assert other.GetBalance(authorization_pb2.GetBalanceRequest(pan=pan)).balance.balance_minor
    accepted = gw.issuing.SetCardRangeAcceptance(issuing_pb2.SetCardRangeAcceptanceRequest(
        request_id=new_id(), range_id=1, merchant_ids=[TERMINAL_MERCHANT]))
    assert list(accepted.merchant_ids) == [TERMINAL_MERCHANT]
    unknown = refused(grpc.StatusCode.NOT_FOUND, other.GetBalance,
                      authorization_pb2.GetBalanceRequest(pan=pan))
    never_issued = refused(grpc.StatusCode.NOT_FOUND, other.GetBalance,
                           authorization_pb2.GetBalanceRequest(pan=make_pan(99)))
    assert unknown == never_issued                   # the same answer: no card-number oracle
    assert gw.auth.GetBalance(authorization_pb2.GetBalanceRequest(pan=pan)).balance.balance_minor
    loyalty = loyalty_pb2_grpc.LoyaltyServiceStub(gw.open("elsewhere"))
    refused(grpc.StatusCode.NOT_FOUND, loyalty.GetPoints, loyalty_pb2.GetPointsRequest(pan=pan))
    # The list is the operator's to change; a reused request id with another list is refused.
    rid = new_id()
    gw.issuing.SetCardRangeAcceptance(issuing_pb2.SetCardRangeAcceptanceRequest(
        request_id=rid, range_id=1, merchant_ids=[]))
    refused(grpc.StatusCode.ALREADY_EXISTS, gw.issuing.SetCardRangeAcceptance,
            issuing_pb2.SetCardRangeAcceptanceRequest(request_id=rid, range_id=1,
                                                      merchant_ids=["m9"]))
    assert other.GetBalance(authorization_pb2.GetBalanceRequest(pan=pan)).balance.balance_minor
    refused(grpc.StatusCode.INVALID_ARGUMENT, gw.issuing.SetCardRangeAcceptance,
            issuing_pb2.SetCardRangeAcceptanceRequest(request_id=new_id(), range_id=1,
                                                      merchant_ids=["not a merchant id"]))


def test_a_terminal_moves_points_only_with_the_cardholders_pin(live_gateway):
    gw = live_gateway
    create_range(gw)
    giving, receiving = make_pan(1), make_pan(2)
    issue(gw, [giving, receiving])
    load(gw, giving, 1_00)
    bureau = issuing_pb2_grpc.IssuingServiceStub(gw.open("bureau-1"))
    bureau.SetCardPin(issuing_pb2.SetCardPinRequest(request_id=new_id(), pan=giving, pin="4321"))
    operator = loyalty_pb2_grpc.LoyaltyServiceStub(gw.open("operator-1"))
    operator.AdjustPoints(loyalty_pb2.AdjustPointsRequest(
        request_id=new_id(), pan=giving, points=300,
        direction=issuing_pb2.ADJUSTMENT_DIRECTION_CREDIT,
        reason=common_pb2.ADJUSTMENT_REASON_GOODWILL))
    terminal = loyalty_pb2_grpc.LoyaltyServiceStub(gw.channel)

    def transfer(stub, pin=""):
        return stub.TransferPoints(loyalty_pb2.TransferPointsRequest(
            request_id=new_id(), pan=giving, to_pan=receiving, points=100,
            pin=pin)).authorization.result_code

    assert transfer(terminal) == common_pb2.RESULT_CODE_DECLINED_PIN_REQUIRED
    assert transfer(terminal, "1111") == common_pb2.RESULT_CODE_DECLINED_WRONG_PIN
    assert transfer(terminal, "4321") == APPROVED
    assert transfer(operator) == APPROVED


def test_an_operator_scoped_to_an_issuer_sees_and_changes_only_its_ranges(live_gateway):
    gw = live_gateway
    create_range(gw, 1, "627700")
    create_range(gw, 2, "627701")
    own, foreign = make_pan(1, "627700"), make_pan(1, "627701")
    issue(gw, [own], 1)
    issue(gw, [foreign], 2)
    for pan in (own, foreign):
        load(gw, pan, 10_00)
    identity = gw.gateway.pki.issue("operator", "issuer-a", gw.certs, ranges=[1])
    assert identity.ranges == {1} and "ranges:1" in str(load_certificate(gw.certs / "issuer-a.crt")
                                                         .extensions)
    scoped = issuing_pb2_grpc.IssuingServiceStub(gw.open("issuer-a"))
    reads = authorization_pb2_grpc.AuthorizationServiceStub(gw.open("issuer-a"))

    def adjust(pan):
        return scoped.AdjustBalance(issuing_pb2.AdjustBalanceRequest(
            request_id=new_id(), pan=pan, amount=eur(1_00),
            direction=issuing_pb2.ADJUSTMENT_DIRECTION_CREDIT,
            reason=common_pb2.ADJUSTMENT_REASON_GOODWILL)).authorization

    assert adjust(own).result_code == APPROVED
    details = refused(grpc.StatusCode.PERMISSION_DENIED, adjust, foreign)
    assert details.startswith("pan: outside the scope") and foreign not in details
    refused(grpc.StatusCode.PERMISSION_DENIED, adjust, make_pan(77, "627701"))   # not issued
    assert reads.GetBalance(authorization_pb2.GetBalanceRequest(pan=own)).balance.balance_minor
    refused(grpc.StatusCode.PERMISSION_DENIED, reads.GetBalance,
            authorization_pb2.GetBalanceRequest(pan=foreign))
    refused(grpc.StatusCode.PERMISSION_DENIED, scoped.CreateCardRange,
            issuing_pb2.CreateCardRangeRequest(request_id=new_id(), range_id=3, iin_prefix="627702",
                                               pan_length=16, currency="EUR", name="x"))
    # What cannot be scoped is the host's global operator's.
    refused(grpc.StatusCode.PERMISSION_DENIED, reads.Reverse,
            authorization_pb2.ReverseRequest(request_id=new_id(), original_request_id=new_id()))
    assert gw.issuing.AdjustBalance(issuing_pb2.AdjustBalanceRequest(
        request_id=new_id(), pan=foreign, amount=eur(1_00),
        direction=issuing_pb2.ADJUSTMENT_DIRECTION_CREDIT,
        reason=common_pb2.ADJUSTMENT_REASON_GOODWILL)).authorization.result_code == APPROVED


def test_an_operator_scoped_to_a_partner_defines_only_itself(live_gateway):
    gw = live_gateway
    gw.gateway.pki.issue("operator", "partner-7", gw.certs, partner_id=7)
    partner = loyalty_pb2_grpc.LoyaltyServiceStub(gw.open("partner-7"))
    assert partner.DefinePartner(loyalty_pb2.DefinePartnerRequest(
        request_id=new_id(), partner_id=7, name="Cafe")).result_code == APPROVED
    refused(grpc.StatusCode.PERMISSION_DENIED, partner.DefinePartner,
            loyalty_pb2.DefinePartnerRequest(request_id=new_id(), partner_id=8, name="Other"))
    refused(grpc.StatusCode.PERMISSION_DENIED, partner.SetProgram,
            loyalty_pb2.SetProgramRequest(request_id=new_id(), program_id=1))
    scope = identity_of(load_certificate(gw.certs / "partner-7.crt"))
    assert (scope.partner_id, scope.ranges) == (7, frozenset())


def test_every_operator_and_bureau_act_is_in_the_admin_log(live_gateway):
    gw = live_gateway
    pan = funded_card(gw, 1)
    gw.issuing.SetCardStatus(issuing_pb2.SetCardStatusRequest(
        request_id=new_id(), pan=pan, status=authorization_pb2.CARD_STATUS_BLOCKED))
    bureau = issuing_pb2_grpc.IssuingServiceStub(gw.open("bureau-1"))
    bureau.SetCardPin(issuing_pb2.SetCardPinRequest(request_id=new_id(), pan=pan, pin="1234"))
    gw.issuing.AdjustBalance(issuing_pb2.AdjustBalanceRequest(
        request_id=new_id(), pan=pan, amount=eur(5_00),
        direction=issuing_pb2.ADJUSTMENT_DIRECTION_DEBIT,
        reason=common_pb2.ADJUSTMENT_REASON_CORRECTION))
    card_id = issue(gw, [make_pan(2)]).cards[0].card_id
    list(bureau.ExportPersonalizationJob(issuing_pb2.ExportPersonalizationJobRequest(
        request_id=new_id(), card_ids=[card_id], chip=issuing_pb2.ChipProfile(aid=b"\xf0\x01\x01"),
        bureau_certificate_pem=(gw.certs / "bureau-1.crt").read_bytes())))
    shown = cli("admin-log", "--data-dir", str(gw.data_dir))
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    for op in ("CREATE_RANGE", "ISSUE_CARD", "SET_STATUS", "ADJUST"):
        assert any(f": {op} " in line and "operator operator-1" in line for line in lines), (op, lines)
    assert any(": SET_PIN APPROVED" in line and "bureau bureau-1" in line for line in lines)
    assert any(": EXPORT_PERSONALIZATION_JOB APPROVED" in line and "bureau bureau-1" in line
               for line in lines)
    assert not any(": LOAD " in line for line in lines)              # a terminal's act is not
    assert pan not in shown.stdout and pan[:6] + "******" + pan[-4:] in shown.stdout
    bureau_serial = load_certificate(gw.certs / "bureau-1.crt").serial_number
    only = cli("admin-log", "--data-dir", str(gw.data_dir), "--actor", f"{bureau_serial:x}")
    assert len(only.stdout.splitlines()) == 2 and only.stdout.count("bureau bureau-1") == 2


def test_metrics_off_loopback_are_https_for_operators_only(tmp_path):
    with pytest.raises(InsecureRefused):
        Gateway(tmp_path / "plain", "127.0.0.1:0", tls=False, metrics_listen="0.0.0.0:0")
    gw = Gateway(tmp_path / "data", "127.0.0.1:0", metrics_listen="0.0.0.0:0").start()
    try:
        certs = tmp_path / "certs"
        gw.pki.issue("operator", "prometheus", certs)
        gw.pki.issue("terminal", "pump", certs, merchant_id="m1", outlet_id="o1")
        port = gw.metrics_server.address.rsplit(":", 1)[1]
        url = f"https://127.0.0.1:{port}/metrics"

        def scrape(name=None):
            context = ssl.create_default_context(cafile=str(certs / "ca.crt"))
            if name:
                context.load_cert_chain(str(certs / f"{name}.crt"), str(certs / f"{name}.key"))
            return urllib.request.urlopen(url, context=context, timeout=10).read()

        assert b"cardgate" in scrape("prometheus")
        for name in (None, "pump"):
            with pytest.raises((ssl.SSLError, OSError, urllib.error.URLError)):
                scrape(name)
        with pytest.raises((urllib.error.URLError, OSError)):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
    finally:
        gw.stop()


def test_client_certificates_last_a_year_and_are_renewed(live_gateway):
    gw = live_gateway
    pan = funded_card(gw, 1)
    old = load_certificate(gw.certs / "terminal-1.crt")
    lifetime = old.not_valid_after_utc - old.not_valid_before_utc
    assert 364 <= lifetime.days <= 366
    renewed = cli("pki", "renew", "--data-dir", str(gw.data_dir), "--cert",
                  str(gw.certs / "terminal-1.crt"), "--out", str(gw.certs / "next"), "--revoke-old")
    assert renewed.returncode == 0, renewed.stderr
    new = load_certificate(gw.certs / "next" / "terminal-1.crt")
    assert identity_of(new).merchant_id == identity_of(old).merchant_id
    assert new.serial_number != old.serial_number
    stub = authorization_pb2_grpc.AuthorizationServiceStub(gw.open("terminal-1", gw.certs / "next"))
    assert stub.GetBalance(authorization_pb2.GetBalanceRequest(pan=pan)).balance.balance_minor
    refused(grpc.StatusCode.UNAUTHENTICATED, gw.auth.GetBalance,
            authorization_pb2.GetBalanceRequest(pan=pan))
