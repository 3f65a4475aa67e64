"""Time zones over gRPC: a card range, a loyalty program and a fleet profile name an IANA
zone; the gateway compiles it from tzdata and the core keeps it; a name that is not a
zone, or a zone beside a UTC offset, is refused naming the field, and nothing changes."""
from cardgate.gateway import zones
from cardgate.v1 import common_pb2, fleet_pb2, issuing_pb2, loyalty_pb2, loyalty_pb2_grpc

from helpers import invalid_changing_nothing, new_id

R = common_pb2


def test_configuration_names_iana_zones_and_bad_names_are_refused(live_gateway):
    gw = live_gateway
    store = gw.gateway.store
    created = gw.issuing.CreateCardRange(issuing_pb2.CreateCardRangeRequest(
        request_id=new_id(), range_id=7, iin_prefix="627700", pan_length=16, currency="PLN",
        name="Warsaw cards", time_zone="Europe/Warsaw"))
    assert created.result_code == R.RESULT_CODE_APPROVED, created
    card_range = store.read_range(7)
    assert (card_range.zone_id, card_range.utc_offset_min) == (zones.zone_id("Europe/Warsaw"), 0)
    loyalty = loyalty_pb2_grpc.LoyaltyServiceStub(gw.open("operator-1"))
    program = loyalty.SetProgram(loyalty_pb2.SetProgramRequest(
        request_id=new_id(), program_id=1, range_ids=[7], time_zone="Europe/Warsaw",
        expiry_kind=loyalty_pb2.POINTS_EXPIRY_KIND_NEVER))
    assert program.result_code == R.RESULT_CODE_APPROVED, program
    assert store.read_program(1)[0].zone_id == zones.zone_id("Europe/Warsaw")
    profile = gw.fleet.SetRestrictionProfile(fleet_pb2.SetRestrictionProfileRequest(
        request_id=new_id(), profile_id=1, minute_from=360, minute_to=1320,
        time_zone="America/New_York"))
    assert profile.result_code == R.RESULT_CODE_APPROVED, profile
    for bad in ("Mars/Olympus_Mons", "../../etc/passwd", "Europe/"):
        invalid_changing_nothing(store, lambda: gw.fleet.SetRestrictionProfile(
            fleet_pb2.SetRestrictionProfileRequest(request_id=new_id(), profile_id=2,
                                                   time_zone=bad)), "time_zone")
    invalid_changing_nothing(store, lambda: gw.issuing.CreateCardRange(
        issuing_pb2.CreateCardRangeRequest(request_id=new_id(), range_id=8, iin_prefix="627701",
                                           pan_length=16, currency="PLN", time_zone="UTC",
                                           utc_offset_min=60)), "time_zone")
    # the zone's table sent again with other configuration is an idempotent retry
    again = loyalty.SetProgram(loyalty_pb2.SetProgramRequest(
        request_id=new_id(), program_id=1, range_ids=[7], time_zone="Europe/Warsaw",
        expiry_kind=loyalty_pb2.POINTS_EXPIRY_KIND_NEVER, pending_days=2))
    assert again.result_code == R.RESULT_CODE_APPROVED, again
