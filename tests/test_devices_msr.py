"""The MSR206 client against the simulator, over a real pseudo-terminal with pyserial:
every command, and every status code the encoder answers."""
import os

import pytest

from cardgate.devices.msr import ESC, FS, Msr206, MsrError
from cardgate.devices.msr_simulator import MsrSimulator

TRACK1 = "B6277001234567890^DOE/JANE^29121200000"
TRACK2 = "6277001234567890=29121200000"


@pytest.fixture
def encoder():
    simulator = MsrSimulator()
    msr = Msr206(simulator.path, timeout_s=2)
    yield msr, simulator
    msr.close()
    simulator.close()


def test_communication_model_firmware_and_settings(encoder):
    msr, simulator = encoder
    msr.reset()
    msr.test()
    assert msr.model() == "3"
    assert msr.firmware() == "REVH1.03"
    msr.set_lo_co()
    assert simulator.coercivity == "lo"
    msr.set_hi_co()
    assert simulator.coercivity == "hi"
    msr.set_bpi(2, 210)
    with pytest.raises(MsrError, match="not a setting"):
        msr.set_bpi(2, 100)


def test_written_tracks_read_back_with_their_sentinels_and_erase_per_track(encoder):
    msr, simulator = encoder
    msr.write_iso(TRACK1, TRACK2)
    assert msr.read_iso() == (f"%{TRACK1}?", f";{TRACK2}?", "")
    msr.erase((1,))
    assert msr.read_iso() == ("", f";{TRACK2}?", "")
    msr.erase((2, 3))
    with pytest.raises(MsrError) as blank:
        msr.read_iso()                          # a blank card: read error
    assert blank.value.status == 0x31


def test_every_status_code(encoder):
    msr, simulator = encoder
    msr.write_iso(TRACK1, TRACK2)               # 30: ok (the calls above raise otherwise)
    with pytest.raises(MsrError) as too_long:
        msr.write_iso(TRACK1 * 3, TRACK2)       # the stripe cannot hold it: 31
    assert too_long.value.status == 0x31 and "read/write error" in str(too_long.value)
    with pytest.raises(MsrError) as bad_set:
        msr.write_iso(TRACK1, "62770A")         # a letter on track 2: 31
    assert bad_set.value.status == 0x31
    simulator.fail_next_swipe = True
    with pytest.raises(MsrError) as swipe:
        msr.write_iso(TRACK1, TRACK2)           # 39: card swipe error in write mode
    assert swipe.value.status == 0x39 and "swipe" in str(swipe.value)
    msr.port.write(ESC + b"w" + ESC + b"x" + b"?" + FS)      # 32: not the write frame
    with pytest.raises(MsrError) as malformed:
        msr._status("raw write")
    assert malformed.value.status == 0x32
    msr.port.write(ESC + b"Q")                   # 34: no such command
    with pytest.raises(MsrError) as invalid:
        msr._status("raw command")
    assert invalid.value.status == 0x34 and "invalid command" in str(invalid.value)
    assert simulator.tracks[1] == f"%{TRACK1}?" and simulator.writes == 1   # failures wrote nothing


def test_a_silent_port_times_out_with_a_clear_error():
    master, slave = os.openpty()
    try:
        msr = Msr206(os.ttyname(slave), timeout_s=0.2)
        with pytest.raises(MsrError, match="no answer"):
            msr.test()
        msr.close()
    finally:
        os.close(master)
        os.close(slave)
