"""The `cardgate` command as a newcomer uses it: serve with the demo, try it, audit."""
import csv
import datetime
import json
import os
import pathlib
import shutil
import stat
import subprocess
import sys

import lmdb
import pytest

from cardgate.fastcore import ledger, records
from cardgate.gateway.cli.demo import DEMO_PROGRAM, read_demo_pans
from cardgate.gateway.security import kek

from gateway_process import GatewayProcess
from helpers import make_pan

SUBCOMMANDS = ("serve", "audit", "balance", "load", "pay", "refund", "reverse", "pki", "keys",
               "points", "earn", "redeem", "program", "sale", "statement", "member", "settlement",
               "analytics", "bureau", "top", "backup", "restore", "admin-log", "transactions",
               "invoice", "webhooks")
DEMO_PROGRAM_FILE = pathlib.Path(__file__).parent.parent / "docs" / "demo-program.json"


def cardgate(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "cardgate.gateway.cli.main", *args],
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def test_console_script_and_help_of_every_subcommand():
    script = shutil.which("cardgate", path=os.path.dirname(sys.executable))
    assert script, "pip install did not put the cardgate script beside the interpreter"
    top = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=60)
    assert top.returncode == 0
    for name in SUBCOMMANDS:
        assert name in top.stdout
        sub = cardgate(name, "--help")
        assert sub.returncode == 0, sub.stderr
        assert "usage: cardgate " + name in sub.stdout


@pytest.mark.slow
def test_first_start_creates_a_demo_that_answers_at_once(tmp_path):
    data_dir = tmp_path / "data"
    gateway = GatewayProcess(data_dir)
    try:
        pans = read_demo_pans(data_dir)
        assert len(pans) == 4
        target = ("--target", gateway.address, "--data-dir", str(data_dir))
        balance = cardgate("balance", "--demo-card", "1", *target)
        assert balance.returncode == 0, balance.stderr
        assert "balance 100.00 EUR" in balance.stdout
        pay = cardgate("pay", "--demo-card", "1", "--amount", "12.50", *target)
        assert pay.returncode == 0, pay.stderr
        # the card's 2 % member discount comes off: 12.25 paid
        assert "approved" in pay.stdout and "balance 87.75 EUR" in pay.stdout
        assert "discount 0.25 EUR" in pay.stdout
        request_id = pay.stdout.split("request id ")[1].split()[0]
        refund = cardgate("refund", "--demo-card", "1", "--amount", "2.50",
                          "--original-request-id", request_id, *target)
        assert "balance 90.25 EUR" in refund.stdout, refund.stdout + refund.stderr
        too_much = cardgate("pay", "--demo-card", "3", "--amount", "26.00", *target)
        assert too_much.returncode == 3 and "insufficient funds" in too_much.stdout
        bad = cardgate("pay", "--demo-card", "1", "--amount", "1.005", *target)
        assert bad.returncode == 2 and "more than 2 decimals" in bad.stderr
        # Demo card 4 is a fleet card: diesel only, with the odometer.
        no_odometer = cardgate("pay", "--demo-card", "4", "--amount", "80.00", "--product", "19",
                               "--litres", "40.000", *target)
        assert no_odometer.returncode == 3 and "must collect: odometer" in no_odometer.stdout
        petrol = cardgate("pay", "--demo-card", "4", "--amount", "80.00", "--product", "1",
                          "--litres", "40.000", "--odometer", "1200", *target)
        assert petrol.returncode == 3 and "does not allow what this sale names" in petrol.stdout
        fuel = cardgate("pay", "--demo-card", "4", "--amount", "80.00", "--product", "19",
                        "--litres", "40.000", "--odometer", "1200", *target)
        assert fuel.returncode == 0 and "volume 40.000 L" in fuel.stdout, fuel.stdout + fuel.stderr
        # Loyalty points: a lot that expires in 30 days and one that never does.
        assert cardgate("earn", "--demo-card", "2", "--points", "120", "--valid-days", "30",
                        *target).returncode == 0
        assert cardgate("earn", "--demo-card", "2", "--points", "30", *target).returncode == 0
        spent = cardgate("redeem", "--demo-card", "2", "--points", "100", *target)
        assert spent.returncode == 0 and "the card has 50" in spent.stdout, spent.stdout + spent.stderr
        too_many = cardgate("redeem", "--demo-card", "2", "--points", "51", *target)
        assert too_many.returncode == 3 and "INSUFFICIENT_POINTS" in too_many.stdout
        points = cardgate("points", "--demo-card", "2", *target)
        assert "50 points" in points.stdout and "20 expire after" in points.stdout, points.stdout
        everything = "".join(gateway.output) + balance.stdout + pay.stdout + refund.stdout
    finally:
        assert gateway.stop() == 0
    everything += "".join(gateway.output)
    for pan in pans:
        assert pan not in everything, "a full card number was printed"
        assert f"{pan[:6]}******{pan[-4:]}" in everything
    wrapped = [data_dir / w.path for w in kek.ALL_WRAPPED if w != kek.SIGNER_KEY]
    secrets = [data_dir / "demo-cards.wrapped", kek.default_file(data_dir), *wrapped,
               *(data_dir / "pki" / "clients").glob("*.key.wrapped")]
    assert len(secrets) == 11
    assert not list(data_dir.rglob("*.key"))          # no key in the data directory bare
    for secret in secrets:
        assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600, secret
    # A second start keeps the existing program instead of creating another.
    gateway = GatewayProcess(data_dir)
    assert gateway.stop() == 0
    assert "Created the demo program" not in "".join(gateway.output)
    assert read_demo_pans(data_dir) == pans
    audit = cardgate("audit", "--data-dir", str(data_dir))
    assert audit.returncode == 0 and "audit passed" in audit.stdout


def test_the_documented_demo_program_is_the_one_the_demo_creates():
    assert json.loads(DEMO_PROGRAM_FILE.read_text()) == DEMO_PROGRAM


@pytest.mark.slow
def test_loyalty_from_the_command_line_sale_statement_member_and_reports(tmp_path):
    data_dir = tmp_path / "data"
    gateway = GatewayProcess(data_dir)
    try:
        target = ("--target", gateway.address, "--data-dir", str(data_dir))
        # 40 L of diesel at the demo station: 2 a litre, welcome 50 (x2 at weekends).
        fuel = cardgate("pay", "--demo-card", "1", "--amount", "64.00", "--product", "19",
                        "--litres", "40.000", *target)
        assert fuel.returncode == 0, fuel.stdout + fuel.stderr
        assert "points: 2 points per litre at Demo Station" in fuel.stdout, fuel.stdout
        sale = cardgate("sale", "--demo-card", "1", "--amount", "10.00", "--points", "50", *target)
        assert sale.returncode == 0, sale.stdout + sale.stderr
        assert "discount 0.20 EUR: 2 % member discount" in sale.stdout, sale.stdout
        assert "50 points paid 0.50 EUR" in sale.stdout and "to pay by cash: 9.30 EUR" in sale.stdout
        statement = cardgate("statement", "--demo-card", "1", *target)
        assert "-50 points: redeemed at Demo Station" in statement.stdout, statement.stdout
        member = cardgate("member", "--demo-card", "1", "--birthday", "05-14", *target)
        assert member.returncode == 0, member.stdout + member.stderr
        assert "tier (base), 89 points" in member.stdout and "42650 more to Silver" in member.stdout
        assert cardgate("program", "--file", str(DEMO_PROGRAM_FILE), *target).returncode == 0
        today = datetime.datetime.now(datetime.timezone.utc).date()
        period = ("--from", str(today - datetime.timedelta(days=1)),
                  "--to", str(today + datetime.timedelta(days=1)))
        chart, table = tmp_path / "sales.png", tmp_path / "sales.csv"
        figures = cardgate("analytics", *period, "--chart", str(chart), "--csv", str(table), *target)
        # 64.00, and 9.80 (10.00 less 2 %, 0.50 of it paid with points)
        assert "1 active cards, 2 sales of 72.52 EUR" in figures.stdout, figures.stdout + figures.stderr
        # (a product counts its line's own price, before the member's discount)
        assert "product 19 diesel: 1 sales of 64.00 EUR, 40.000 L" in figures.stdout, figures.stdout
        assert chart.read_bytes()[:4] == b"\x89PNG" and "day," in table.read_text()
        plain = cardgate("analytics", *period, "--range", "1", *target)
        assert plain.returncode == 0 and "sales by local day" in plain.stdout, plain.stderr
        settled = cardgate("settlement", *period, *target)
        assert settled.returncode == 0 and "partner 1 Demo Fuel: issued 139" in settled.stdout, settled.stdout
        bad = cardgate("program", "--file", str(tmp_path / "missing.json"), *target)
        assert bad.returncode == 2
    finally:
        assert gateway.stop() == 0


@pytest.mark.slow
def test_transactions_exported_as_csv_and_json_lines(tmp_path):
    data_dir = tmp_path / "data"
    gateway = GatewayProcess(data_dir)
    try:
        target = ("--target", gateway.address, "--data-dir", str(data_dir))
        fuel = cardgate("pay", "--demo-card", "4", "--amount", "80.00", "--product", "19",
                        "--litres", "40.000", "--odometer", "1200", "--driver", "D-7",
                        "--vehicle", "KR 77", *target)
        assert fuel.returncode == 0, fuel.stdout + fuel.stderr
        assert cardgate("pay", "--demo-card", "3", "--amount", "26.00", *target).returncode == 3
        assert cardgate("pay", "--demo-card", "1", "--amount", "1.25", *target).returncode == 0
        out = tmp_path / "month.csv"
        export = cardgate("transactions", "--out", str(out), *target)
        assert export.returncode == 0, export.stderr
        rows = list(csv.DictReader(out.open()))
        assert f"{len(rows)} transactions written" in export.stderr
        assert [r["operation"] for r in rows][-3:] == ["PURCHASE"] * 3
        assert {r["operation"] for r in rows[:-3]} == {"LOAD"}        # the demo's own loads
        rows = rows[-3:]
        pans = read_demo_pans(data_dir)
        fleet = rows[0]
        assert fleet["masked_pan"] == pans[3][:6] + "******" + pans[3][-4:]
        assert (fleet["products"], fleet["litres"], fleet["odometer_km"], fleet["driver_id"],
                fleet["vehicle_id"]) == ("19:40.000:80.00", "40.000", "1200", "D-7", "KR 77")
        # the demo program's 2 % member discount comes off
        assert (fleet["amount"], fleet["approved"], fleet["discount"], fleet["currency"]) == \
            ("80.00", "78.40", "1.60", "EUR")
        assert rows[1]["result"] == "DECLINED_INSUFFICIENT_FUNDS" and rows[1]["approved"] == "0.00"
        assert all(pan not in out.read_text() for pan in pans)
        declined = cardgate("transactions", "--result", "declined", "--format", "jsonl", *target)
        assert declined.returncode == 0, declined.stderr
        lines = [json.loads(line) for line in declined.stdout.splitlines()]
        assert [line["result_code"] for line in lines] == ["RESULT_CODE_DECLINED_INSUFFICIENT_FUNDS"]
        one_card = cardgate("transactions", "--demo-card", "1", *target)
        assert [row["amount"] for row in csv.DictReader(one_card.stdout.splitlines())][-1] == "1.25"
        assert {row["masked_pan"][-4:] for row in csv.DictReader(one_card.stdout.splitlines())} == \
            {pans[0][-4:]}
        bad = cardgate("transactions", "--from", "yesterday", *target)
        assert bad.returncode != 0 and "not a time" in bad.stderr
    finally:
        assert gateway.stop() == 0


def test_every_rpc_has_a_cli_verb():
    from cardgate.gateway.api.registration import SERVICES
    from cardgate.gateway.cli import rpc_verbs
    methods = {m.name for s in SERVICES for m in s.methods}
    generated = {method for _, method in rpc_verbs.VERBS.values()}
    assert methods == generated | rpc_verbs.HAND_MADE and not generated & rpc_verbs.HAND_MADE
    for verb in rpc_verbs.VERBS:
        assert cardgate(verb, "--help").returncode == 0


@pytest.mark.slow
def test_the_generated_verbs_run_each_rpc_with_money_as_money(tmp_path):
    data_dir = tmp_path / "data"
    gateway = GatewayProcess(data_dir)
    pans = read_demo_pans(data_dir)
    target = ("--target", gateway.address, "--data-dir", str(data_dir))

    def run(*args, code=0):
        done = cardgate(*args, *target)
        assert done.returncode == code, (args, done.stdout, done.stderr)
        return done.stdout

    try:
        out = run("create-card-range", "--range-id", "2", "--iin-prefix", "627799",
                  "--pan-length", "16", "--currency", "EUR", "--name", "Cafe gifts")
        assert "result code: RESULT_CODE_APPROVED" in out
        issued = json.loads(run("issue-cards", "--range-id", "2", "--count", "2",
                                "--expiry-yyyymm", "209912", "--json"))
        assert len(issued["cards"]) == 2 and all("******" in c["masked_pan"] for c in issued["cards"])
        new, spare = make_pan(501, "627799"), make_pan(502, "627799")
        gifts = json.loads(run("issue-gift-cards", "--range-id", "2", "--cards-json", json.dumps(
            [{"pan": new, "expiry_yyyymm": 209912}, {"pan": spare, "expiry_yyyymm": 209912}]),
            "--json"))
        assert [c["result_code"] for c in gifts["cards"]] == ["RESULT_CODE_APPROVED"] * 2
        run("set-acceptance", "--range-id", "2", "--merchant-ids", "demo-merchant")
        hold = "0192a3b4-c5d6-7e8f-9a0b-1c2d3e4f5a6b"
        out = run("preauthorize", "--demo-card", "1", "--amount", "30.00", "--request-id", hold)
        assert "approved: 30.00 EUR" in out
        out = run("complete", "--demo-card", "1", "--hold-id", hold, "--amount", "12.40")
        assert "approved: 12.16 EUR" in out     # 12.40 less the 2 % member discount
        other = "0192a3b4-c5d6-7e8f-9a0b-1c2d3e4f5a6c"
        run("preauthorize", "--demo-card", "2", "--amount", "5.00", "--request-id", other)
        run("void", "--hold-id", other)
        assert "not known" not in run("balance", "--demo-card", "1")
        run("sell-package", "--demo-card", "2", "--units", "10", "--valid-until-s", "4102444800")
        out = run("use-units", "--demo-card", "2", "--units", "3")
        assert "7 units" in out
        assert "7 subscription units left" in cardgate("balance", "--demo-card", "2", *target).stdout
        run("forecourt-batch", "--request-json", json.dumps({"operations": [{"load": {
            "request_id": "0192a3b4-c5d6-7e8f-9a0b-1c2d3e4f5a70", "pan": pans[2],
            "amount": {"amount_minor": "100", "currency": "EUR"}}}]}))
        run("set-card-stage", "--pan", new, "--stage", "personalized")
        run("set-pin", "--demo-card", "3", "--pin", "4321")
        out = run("adjust", "--demo-card", "3", "--amount", "1.00", "--direction", "credit",
                  "--reason", "goodwill")
        assert "EUR" in out and "minor" not in out
        run("set-card-status", "--demo-card", "3", "--status", "blocked")
        assert "blocked" in run("pay", "--demo-card", "3", "--amount", "1.00", code=3)
        run("set-card-status", "--demo-card", "3", "--status", "active")
        run("clear", "--pan", new, "--reason", "correction")
        run("define-partner", "--partner-id", "5", "--name", "Cafe")
        run("define-product", "--product-code", "42", "--kind", "other", "--name", "cake")
        run("define-outlet", "--merchant-id", "cafe", "--outlet-id", "c1", "--partner-id", "5")
        run("set-profile", "--profile-id", "9", "--non-fuel-allowed", "--limits-json",
            json.dumps([{"period": "LIMIT_PERIOD_DAY", "measure": "LIMIT_MEASURE_MONEY", "max": "5000"}]))
        run("set-contract", "--contract-id", "3", "--currency", "EUR", "--credit-limit-minor", "100000")
        run("assign-card", "--pan", spare, "--contract-id", "3", "--profile-id", "9")
        assert "contract id: 3" in run("fleet-usage", "--pan", spare)
        # post-paid: it pays on the contract's credit at once; the contract's invoice
        assert "approved" in run("pay", "--pan", spare, "--amount", "7.25")
        today = datetime.datetime.now(datetime.timezone.utc).date()
        out = run("invoice", "--contract", "3", "--from", str(today), "--until",
                  str(today + datetime.timedelta(days=1)), "--csv", str(tmp_path / "inv.csv"),
                  "--pdf", str(tmp_path / "inv.pdf"))
        assert "charged 7.25 EUR" in out and "total 7.25 EUR" in out, out
        assert (tmp_path / "inv.pdf").read_bytes()[:5] == b"%PDF-"
        assert "summary,total,,,,7.25" in (tmp_path / "inv.csv").read_text()
        run("flagged")
        run("earn", "--demo-card", "1", "--points", "40")
        out = run("adjust-points", "--demo-card", "1", "--points", "5", "--direction", "debit",
                  "--reason", "correction")
        assert "points" in out
        run("transfer-points", "--demo-card", "1", "--to-pan", pans[1], "--points", "3",
            "--as", "demo-operator")           # (at a terminal it wants the PIN)
        points_hold = "0192a3b4-c5d6-7e8f-9a0b-1c2d3e4f5a71"
        run("reserve-points", "--demo-card", "1", "--points", "4", "--request-id", points_hold)
        run("confirm-points", "--demo-card", "1", "--hold-id", points_hold, "--points", "2")
        second = "0192a3b4-c5d6-7e8f-9a0b-1c2d3e4f5a72"
        run("reserve-points", "--demo-card", "1", "--points", "1", "--request-id", second)
        run("release-points", "--demo-card", "1", "--hold-id", second)
        run("expiring-points", "--within-days", "30")
        run("replace-card", "--demo-card", "2", "--new-pan", new, code=3)   # not a card of its range
        assert "APPROVED" in run("deactivate", "--pan", new, "--reason", "card_retired")   # at zero
        refused = cardgate("set-card-status", "--demo-card", "1", "--status", "bogus", *target)
        assert refused.returncode == 2 and "invalid choice" in refused.stderr
        as_json = json.loads(run("fleet-usage", "--pan", spare, "--json"))
        assert as_json["contract_id"] == 3
        unknown = run("reverse", "--original-request-id", "0192a3b4-c5d6-7e8f-9a0b-1c2d3e4f5a99")
        assert "is not known here" in unknown and "approved" not in unknown
    finally:
        assert gateway.stop() == 0


def test_webhooks_refuses_a_bad_configuration_before_anything_runs(tmp_path):
    (tmp_path / "short.secret").write_bytes(b"short")
    for config, problem in (({"endpoints": []}, "at least one"),
                            ({"endpoints": [{"name": "x", "url": "http://plain", "secret_file": "short.secret"}]},
                             "https"),
                            ({"endpoints": [{"name": "x", "url": "https://a", "secret_file": "short.secret"}]},
                             "16 bytes")):
        path = tmp_path / "bad.json"
        path.write_text(json.dumps(config))
        done = cardgate("webhooks", "--config", str(path))
        assert done.returncode == 2 and problem in done.stderr, done.stderr


@pytest.mark.parametrize("listen", ["0.0.0.0:50999", "[::]:50999", "192.0.2.1:50999"])
def test_serving_without_tls_off_loopback_is_refused(tmp_path, listen):
    result = cardgate("serve", "--insecure", "--data-dir", str(tmp_path / "d"), "--listen", listen)
    assert result.returncode == 2
    assert "only for loopback" in result.stderr and listen in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "d").exists()


@pytest.mark.slow
def test_audit_names_a_tampered_balance(tmp_path):
    data_dir = tmp_path / "data"
    GatewayProcess(data_dir).stop()
    env = lmdb.open(str(data_dir / "ledger"), max_dbs=8)
    book = env.open_db(ledger.DB_NAMES[ledger.DB_BOOK])
    with env.begin(write=True) as txn:
        key = records.account_key(1, records.Slot.CARD_VALUE)
        value = bytearray(txn.get(key, db=book))
        value[0:8] = (123_45).to_bytes(8, "little", signed=True)   # balance_minor
        txn.put(key, bytes(value), db=book)
    env.close()
    audit = cardgate("audit", "--data-dir", str(data_dir))
    assert audit.returncode == 1
    assert "AUDIT FAILED" in audit.stdout
    assert "card 1" in audit.stdout and "balance 12345" in audit.stdout
    assert "EUR: account balances sum to" in audit.stdout


def test_audit_of_a_missing_store_says_so(tmp_path):
    audit = cardgate("audit", "--data-dir", str(tmp_path / "nothing"))
    assert audit.returncode == 2
    assert "no cardgate store" in audit.stderr


@pytest.mark.slow
def test_a_second_gateway_on_a_busy_port_says_so(tmp_path):
    first = GatewayProcess(tmp_path / "one")
    try:
        second = cardgate("serve", "--data-dir", str(tmp_path / "two"), "--listen", first.address)
        assert second.returncode == 2
        assert f"cannot listen on {first.address}" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        first.stop()


@pytest.mark.slow
def test_pki_issue_writes_a_working_terminal_certificate(tmp_path):
    data_dir = tmp_path / "data"
    gateway = GatewayProcess(data_dir)
    try:
        out = tmp_path / "certs"
        issued = cardgate("pki", "issue", "--data-dir", str(data_dir), "--role", "terminal",
                          "--name", "pump-controller-7", "--merchant", "demo-merchant",
                          "--outlet", "station-12", "--out", str(out))
        assert issued.returncode == 0, issued.stderr
        assert "terminal 'pump-controller-7' of merchant demo-merchant outlet station-12" in issued.stdout
        assert stat.S_IMODE(os.stat(out / "pump-controller-7.key").st_mode) == 0o600
        balance = cardgate("balance", "--demo-card", "2", "--data-dir", str(data_dir),
                           "--target", gateway.address, "--cert-dir", str(out),
                           "--as", "pump-controller-7")
        assert balance.returncode == 0 and "balance 50.00 EUR" in balance.stdout, balance.stderr
        bad = cardgate("pki", "issue", "--data-dir", str(data_dir), "--role", "terminal",
                       "--name", "x", "--out", str(out))
        assert bad.returncode == 2 and "merchant must be" in bad.stderr
    finally:
        gateway.stop()
