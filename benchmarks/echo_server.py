"""A bare grpcio unary echo server: the ceiling a gRPC gateway in Python can reach here.

    python -m benchmarks.echo_server --response-bytes N [--kind sync|aio] [--data-dir D]

It answers every call of /bench.Echo/Call with N fixed bytes, with the same thread
pool and message options as the gateway, and prints its address when ready. With
--data-dir it serves mutual TLS with that gateway data directory's server certificate,
like the gateway itself.
"""
import argparse
import asyncio
import concurrent.futures
import signal
import sys

import grpc

from cardgate.gateway import limits
from cardgate.gateway.api.server import GRPC_OPTIONS
from cardgate.gateway.security.pki import Pki

METHOD = "/bench.Echo/Call"


def _handler(response):
    def call(request, context):
        return response

    def stream(requests, context):
        for _ in requests:
            yield response
    return grpc.method_handlers_generic_handler("bench.Echo", {
        "Call": grpc.unary_unary_rpc_method_handler(call),
        "Stream": grpc.stream_stream_rpc_method_handler(stream)})


def _bind(server, data_dir):
    if data_dir is None:
        return server.add_insecure_port("127.0.0.1:0")
    key, cert, ca = Pki(data_dir).server_credentials_material()
    return server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca, require_client_auth=True))


def serve_sync(response, data_dir):
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=limits.SERVER_THREADS),
                         options=GRPC_OPTIONS)
    server.add_generic_rpc_handlers((_handler(response),))
    port = _bind(server, data_dir)
    server.start()
    print(f"echo listening on 127.0.0.1:{port}", flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    server.stop(0)


async def serve_aio(response, data_dir):
    server = grpc.aio.server(options=GRPC_OPTIONS)

    async def call(request, context):
        return response

    async def stream(requests, context):
        async for _ in requests:
            yield response
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench.Echo", {
        "Call": grpc.unary_unary_rpc_method_handler(call),
        "Stream": grpc.stream_stream_rpc_method_handler(stream)}),))
    port = _bind(server, data_dir)
    await server.start()
    print(f"echo listening on 127.0.0.1:{port}", flush=True)
    await server.wait_for_termination()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--response-bytes", type=int, required=True)
    parser.add_argument("--kind", choices=("sync", "aio"), default="sync")
    parser.add_argument("--data-dir", default=None, help="serve mutual TLS with this gateway's PKI")
    args = parser.parse_args(argv)
    response = b"\x01" * args.response_bytes
    if args.kind == "sync":
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        serve_sync(response, args.data_dir)
    else:
        asyncio.run(serve_aio(response, args.data_dir))


if __name__ == "__main__":
    sys.exit(main())
