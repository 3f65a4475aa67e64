"""A flooding terminal, run as its own process by test_fair_admission: `concurrency`
calls at once (purchases, which wait for their commit, and balance reads), again and
again for `seconds`, on one client certificate over `connections` connections of its
own. Prints how many calls ended with each status code, and the first details of each,
as JSON."""
import asyncio
import collections
import json
import sys
import time
import uuid

import grpc

from cardgate.gateway.cli.channels import client_credentials
from cardgate.v1 import authorization_pb2, authorization_pb2_grpc, common_pb2


async def flood(address, cert_dir, name, pan, concurrency, seconds, connections):
    codes, details = collections.Counter(), {}
    credentials = client_credentials(cert_dir, name)
    channels = [grpc.aio.secure_channel(address, credentials,
                                        options=[("grpc.use_local_subchannel_pool", 1)])
                for _ in range(connections)]
    stubs = [authorization_pb2_grpc.AuthorizationServiceStub(c) for c in channels]
    deadline = time.monotonic() + seconds

    async def one(n):
        stub = stubs[n % connections]
        while time.monotonic() < deadline:
            try:
                if n % 2:
                    await stub.GetBalance(authorization_pb2.GetBalanceRequest(pan=pan), timeout=30)
                else:
                    await stub.Purchase(authorization_pb2.PurchaseRequest(
                        request_id=str(uuid.uuid4()), pan=pan,
                        amount=common_pb2.Money(amount_minor=1, currency="EUR")), timeout=30)
                codes["OK"] += 1
            except grpc.aio.AioRpcError as exc:
                codes[exc.code().name] += 1
                details.setdefault(exc.code().name, exc.details())
    try:
        await asyncio.gather(*(one(n) for n in range(concurrency)))
    finally:
        for channel in channels:
            await channel.close()
    return {"codes": codes, "details": details}


if __name__ == "__main__":
    address, cert_dir, name, pan, concurrency, seconds, connections = sys.argv[1:8]
    print("flooding", flush=True)
    result = asyncio.run(flood(address, cert_dir, name, pan, int(concurrency), float(seconds),
                               int(connections)))
    print(json.dumps(result), flush=True)
