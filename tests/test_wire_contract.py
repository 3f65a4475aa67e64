"""The core's outcome numbers and the wire contract's agree, and every outcome has words."""
from cardgate.fastcore.records import Result
from cardgate.gateway.api.authorization import RESULT_MESSAGES
from cardgate.v1 import common_pb2


def test_every_core_result_is_a_wire_result_code_with_a_message():
    for result in Result:
        if result.name.startswith("REJECTED_"):
            continue                          # protocol faults: gRPC status codes instead
        assert common_pb2.ResultCode.Value(f"RESULT_CODE_{result.name}") == result, result
        assert result in RESULT_MESSAGES, result
    wire = {v.number for v in common_pb2.ResultCode.DESCRIPTOR.values} - {0}
    assert wire == {r.value for r in Result if not r.name.startswith("REJECTED_")}
