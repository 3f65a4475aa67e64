"""The demo program created on first start, so that a new gateway answers at once.

It defines card range 1 (EUR gift cards), registers a few bearer gift cards and loads
them, and makes the last one a fleet card: a product catalog (diesel, petrol, shop), the
demo outlet ("Demo Station", partner 1) in region "demo-north", and restriction profile
1 (diesel only, odometer required, 100 L a day) on that card. Range 1 is in loyalty
program 1 (DEMO_PROGRAM: tiers, discounts, bonuses, earn rules), so every sale earns. The full demo card numbers go to DEMO_CARDS_FILE in
the data directory, wrapped by the KEK like every key (kek.py), never to the screen; the
CLI's --demo-card N reads them from there.
"""
import pathlib
import secrets

from google.protobuf import json_format

from cardgate.fastcore.records import Op, Result
from cardgate.gateway.fleet.sales import FleetOperations
from cardgate.gateway.loyalty import config as loyalty_config
from cardgate.gateway.request_ids import new_request_id
from cardgate.gateway.security import kek
from cardgate.gateway.security.pan import luhn_check_digit, mask
from cardgate.gateway.store.writer import yyyymm_of
from cardgate.v1 import common_pb2, fleet_pb2, loyalty_pb2

DEMO_RANGE_ID = 1
DEMO_IIN = "627700"
DEMO_PAN_LENGTH = 16
DEMO_CURRENCY = "EUR"
DEMO_OFFLINE_FLOOR_MINOR = 50_00   # terminals may approve demo cards offline up to 50.00
DEMO_LOADS_MINOR = (100_00, 50_00, 25_00, 500_00)   # the last one is the fleet card
DEMO_PRODUCTS = ((1, fleet_pb2.PRODUCT_KIND_FUEL, "petrol 95"),
                 (19, fleet_pb2.PRODUCT_KIND_FUEL, "diesel"),
                 (200, fleet_pb2.PRODUCT_KIND_OTHER, "shop"))
DEMO_DIESEL = 19
DEMO_FLEET_PROFILE_ID = 1
DEMO_CARDS_FILE = "demo-cards.wrapped"
DEMO_CARDS_PURPOSE = b"cardgate demo card numbers"
DEMO_MERCHANT_ID = "demo-merchant"
DEMO_OUTLET_ID = "demo-outlet-1"
DEMO_CLIENTS = (("demo-terminal", "terminal"), ("demo-bureau", "bureau"),
                ("demo-operator", "operator"))
DEMO_PARTNER_ID = 1
# The demo's loyalty program, in the JSON form `cardgate program set --file` reads:
# cardgate.v1.SetProgramRequest (without request_id) plus "rules" (EarnRule messages).
DEMO_PROGRAM = {
    "programId": 1, "expiryKind": "POINTS_EXPIRY_KIND_MONTH_END_AFTER", "expiryN": 12,
    "rangeIds": [DEMO_RANGE_ID], "pointValueMillis": 1000,
    "tiers": [{"name": "Silver", "minimum": "50000", "multiplierPermille": 1250},
              {"name": "Gold", "minimum": "200000", "multiplierPermille": 1500}],
    "discounts": [{"minimumSpendMinor": "0", "discountBp": 200},
                  {"minimumSpendMinor": "100000", "discountBp": 500}],
    "welcomePoints": "50", "birthdayPoints": "100", "birthdayWindowDays": 3,
    "rules": [
        {"ruleId": 1, "kind": "EARN_RULE_KIND_PER_AMOUNT", "points": "1", "per": "100"},
        {"ruleId": 2, "kind": "EARN_RULE_KIND_PER_VOLUME", "points": "2", "per": "1000",
         "productCodes": [19],
         "outlets": [{"merchantId": DEMO_MERCHANT_ID, "outletId": DEMO_OUTLET_ID}]},
        {"ruleId": 3, "kind": "EARN_RULE_KIND_MULTIPLIER", "points": "2000", "days": [6, 7]},
    ],
}


def clients_dir(data_dir) -> pathlib.Path:
    """Where the demo's client certificates go, and where the CLI looks by default."""
    return pathlib.Path(data_dir) / "pki" / "clients"


def ensure_demo_certificates(pki, data_dir) -> list[str]:
    """Issue the demo's client certificates (one per role) unless they exist."""
    made = []
    for name, role in DEMO_CLIENTS:
        if not (clients_dir(data_dir) / f"{name}.crt").exists():
            binding = dict(merchant_id=DEMO_MERCHANT_ID, outlet_id=DEMO_OUTLET_ID) \
                if role == "terminal" else {}
            pki.issue(role, name, clients_dir(data_dir), **binding)
            made.append(name)
    return made


def random_pan(prefix: str, length: int) -> str:
    body = prefix + "".join(secrets.choice("0123456789") for _ in range(length - len(prefix) - 1))
    return body + str(luhn_check_digit(body))


def read_demo_pans(data_dir) -> list[str]:
    path = pathlib.Path(data_dir) / DEMO_CARDS_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: start 'cardgate serve' once with this "
                                "data directory to create the demo cards")
    text = kek.read_wrapped(kek.of_data_dir(data_dir), path, DEMO_CARDS_PURPOSE)
    return [line.split()[0] for line in text.decode().splitlines() if line.strip()]


def ensure_demo(operations, data_dir, clock) -> list[str] | None:
    """Create the demo program unless the store already has card range 1.

    Returns the masked PANs of newly created cards, or None when nothing was done.
    """
    if operations.store.read_range(DEMO_RANGE_ID) is not None:
        return None
    reply = operations.create_range(new_request_id(), DEMO_RANGE_ID, DEMO_IIN, DEMO_PAN_LENGTH,
                                    DEMO_CURRENCY, "Demo gift cards",
                                    offline_floor_minor=DEMO_OFFLINE_FLOOR_MINOR)
    assert reply.result == Result.APPROVED, reply
    year, month = divmod(yyyymm_of(clock()), 100)
    expiry = (year + 3) * 100 + month
    pans = [random_pan(DEMO_IIN, DEMO_PAN_LENGTH) for _ in DEMO_LOADS_MINOR]
    operations.issue_gift_cards(new_request_id(), DEMO_RANGE_ID, [(p, expiry) for p in pans])
    for pan, amount in zip(pans, DEMO_LOADS_MINOR):
        request_id = new_request_id()
        operations.submit_one(operations.pack_money(Op.LOAD, request_id, pan, amount, DEMO_CURRENCY),
                              request_id)
    _demo_fleet(FleetOperations(operations), pans[-1])
    for reply in set_program(operations, DEMO_PROGRAM):
        assert reply.result == Result.APPROVED, reply
    labels = ["gift card"] * (len(pans) - 1) + ["fleet card: diesel only, odometer, 100 L a day"]
    kek.write_wrapped(kek.of_data_dir(data_dir), pathlib.Path(data_dir) / DEMO_CARDS_FILE, "".join(
        f"{pan} demo card {i} ({label})\n" for i, (pan, label) in enumerate(zip(pans, labels), 1)
    ).encode(), DEMO_CARDS_PURPOSE)
    return [mask(p) for p in pans]


def _demo_fleet(fleet, pan):
    for code, kind, name in DEMO_PRODUCTS:
        fleet.define_product(fleet_pb2.DefineProductRequest(
            request_id=new_request_id(), product_code=code, kind=kind, name=name))
    reply = fleet.ops.define_partner(new_request_id(), DEMO_PARTNER_ID, "Demo Fuel")
    assert reply.result == Result.APPROVED, reply
    fleet.define_outlet(fleet_pb2.DefineOutletRequest(
        request_id=new_request_id(), merchant_id=DEMO_MERCHANT_ID, outlet_id=DEMO_OUTLET_ID,
        region="demo-north", partner_id=DEMO_PARTNER_ID, display_name="Demo Station"))
    fleet.set_profile(fleet_pb2.SetRestrictionProfileRequest(
        request_id=new_request_id(), profile_id=DEMO_FLEET_PROFILE_ID,
        allowed_fuel_codes=[DEMO_DIESEL], restrict_fuels=True,
        required_prompts=[common_pb2.PROMPT_ODOMETER],
        limits=[common_pb2.Limit(period=common_pb2.LIMIT_PERIOD_DAY,
                                 measure=common_pb2.LIMIT_MEASURE_VOLUME, max=100_000)]))
    reply = fleet.assign_card(fleet_pb2.AssignCardRequest(
        request_id=new_request_id(), pan=pan, profile_id=DEMO_FLEET_PROFILE_ID))
    assert reply.result == Result.APPROVED, reply


def program_messages(config: dict):
    """(SetProgramRequest, SetEarnRulesRequest) of a program's JSON configuration (see
    DEMO_PROGRAM); raises json_format.ParseError naming what is wrong."""
    config = dict(config)
    rules = config.pop("rules", [])
    program = json_format.ParseDict(config, loyalty_pb2.SetProgramRequest())
    program.request_id = program.request_id or new_request_id()
    earn = json_format.ParseDict({"programId": program.program_id, "rules": rules},
                                 loyalty_pb2.SetEarnRulesRequest())
    earn.request_id = new_request_id()
    return program, earn


def set_program(operations, config: dict):
    """Apply a program's JSON configuration in-process (the demo); the CLI's
    `program set` sends the same messages over gRPC."""
    program, earn = program_messages(config)
    return [operations.set_config(Op.SET_PROGRAM, program.request_id,
                                  loyalty_config.program_payload(program)),
            operations.set_config(Op.SET_RULES, earn.request_id, loyalty_config.rules_payload(earn),
                                  earn.program_id)]
