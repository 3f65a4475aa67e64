"""ISO 8583 purchases/s, p50 and p99 beside gRPC unary purchases, and beside a bare TLS
echo of the same framed messages (the limit), in one run on this machine.

    python -m benchmarks.iso8583 [--processes 2] [--concurrency 8] [--duration-s 8]
                                 [--cards 2000]

The gateway runs with --iso8583-listen; the ISO clients keep --concurrency messages in
flight on one TLS connection per process (answers matched by STAN), with a terminal's
certificate. The echo server frames and answers the same bytes with the gateway's own
TLS certificate. Goals (issue 19): ISO 8583 >= 1.0 of gRPC unary, >= 0.8 of the echo.
"""
import argparse
import asyncio
import multiprocessing
import os
import signal
import ssl
import sys
import tempfile
import time

from benchmarks.loadgen import (WARMUP_S, drive, issue_client_certificates, pan_of,
                                prepare_cards, start_gateway)
from benchmarks.nats_cluster import free_ports
from cardgate.gateway.cli.channels import client_key_pem
from cardgate.gateway.cli.demo import clients_dir
from cardgate.gateway.iso8583 import codec, framing
from cardgate.gateway.security.pki import Pki

GOAL_RATIO_GRPC = 1.0
GOAL_RATIO_ECHO = 0.8


def client_context(data_dir) -> ssl.SSLContext:
    """The terminal's TLS context; its key, kept wrapped in the data directory, is opened
    with the KEK and handed to OpenSSL through a private temporary file."""
    certs = clients_dir(data_dir)
    context = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    with tempfile.NamedTemporaryFile(suffix=".pem") as key:
        key.write(client_key_pem(certs, "bench-terminal"))
        key.flush()
        context.load_cert_chain(str(certs / "bench-terminal.crt"), key.name)
    return context


async def iso_client(port, data_dir, index, cards, concurrency, duration_s):
    """(latencies of answers after the warm-up, errors, CPU seconds this client process
    used in the measured window) of one connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_context(data_dir),
                                                   server_hostname="localhost")
    waiting, latencies, errors = {}, [], [0]
    when = time.strftime("%m%d%H%M%S", time.gmtime())
    stans = iter(range(1, 1_000_000))
    start_at = time.monotonic() + WARMUP_S
    stop_at = start_at + duration_s

    async def read():
        while (data := await framing.read_message(reader)) is not None:
            answer = codec.decode(data)
            future = waiting.pop(answer["11"], None)
            if future is not None:
                future.set_result(answer.get("39", "00"))    # (the echo has none)

    async def one_at_a_time(seed):
        n = seed
        while time.monotonic() < stop_at:
            stan = f"{next(stans):06d}"
            n += concurrency
            message = codec.encode({"t": "0200", "2": pan_of(n % cards), "3": "000000",
                                    "4": "000000000001", "7": when, "11": stan,
                                    "41": f"BENCH{index:03d}", "49": "978"})
            future = waiting[stan] = asyncio.get_running_loop().create_future()
            sent = time.monotonic()
            writer.write(framing.frame(message))
            code = await future
            if code not in ("00", "000"):
                errors[0] += 1
            elif sent >= start_at:
                latencies.append(time.monotonic() - sent)

    async def cpu_in_window():
        await asyncio.sleep(start_at - time.monotonic())
        began = time.process_time()
        await asyncio.sleep(stop_at - time.monotonic())
        return time.process_time() - began

    reading = asyncio.create_task(read())
    cpu = asyncio.create_task(cpu_in_window())
    await asyncio.gather(*(one_at_a_time(seed) for seed in range(concurrency)))
    writer.close()
    reading.cancel()
    return latencies, errors[0], await cpu


def client_process(port, data_dir, index, args, out):
    out.put(asyncio.run(iso_client(port, data_dir, index, args.cards, args.concurrency,
                                   args.duration_s)))


def drive_iso(port, data_dir, args):
    """(messages/s, p50 ms, p99 ms, errors, the clients' CPU in cores) of --processes
    ISO clients."""
    out = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=client_process, args=(port, data_dir, i, args, out))
             for i in range(args.processes)]
    for p in procs:
        p.start()
    latencies, errors, cpu_s = [], 0, 0.0
    for _ in procs:
        lat, err, cpu = out.get(timeout=args.duration_s + WARMUP_S + 120)
        latencies.extend(lat)
        errors += err
        cpu_s += cpu
    for p in procs:
        p.join()
    latencies.sort()
    return (len(latencies) / args.duration_s, latencies[len(latencies) // 2] * 1e3,
            latencies[int(len(latencies) * 0.99)] * 1e3, errors, cpu_s / args.duration_s)


def echo_server(data_dir, port, ready):
    """A bare TLS echo of framed messages, with the gateway's certificate, answering each
    message as it comes (what the ISO listener does, less the core)."""
    async def serve(reader, writer):
        while (data := await framing.read_message(reader)) is not None:
            writer.write(framing.frame(data[:2] + b"1" + data[3:]))   # 0200 -> 0210
    async def main():
        server = await asyncio.start_server(serve, "127.0.0.1", port,
                                            ssl=Pki(data_dir).tls_server_context())
        ready.set()
        async with server:
            await server.serve_forever()
    asyncio.run(main())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--duration-s", type=float, default=8.0)
    parser.add_argument("--cards", type=int, default=2000)
    args = parser.parse_args(argv)
    args.batch, args.stream, args.workers = 0, 0, 1
    with tempfile.TemporaryDirectory(prefix="cardgate-iso-bench-") as root:
        data_dir = f"{root}/data"
        iso_port, echo_port = free_ports(2)
        gateway, address = start_gateway(data_dir, serve_options=(
            "--iso8583-listen", f"127.0.0.1:{iso_port}"))
        try:
            issue_client_certificates(data_dir)
            prepare_cards(address, args.cards, data_dir)
            grpc_figures = drive(address, "gateway", args, 0, data_dir)
            iso_figures = drive_iso(iso_port, data_dir, args)
        finally:
            gateway.send_signal(signal.SIGTERM)
            gateway.wait(30)
        ready = multiprocessing.Event()
        echo = multiprocessing.Process(target=echo_server, args=(data_dir, echo_port, ready),
                                       daemon=True)
        echo.start()
        ready.wait(30)
        try:
            echo_figures = drive_iso(echo_port, data_dir, args)
        finally:
            echo.terminate()
    print(f"clients: {args.processes} processes x {args.concurrency} in flight, "
          f"{args.duration_s:g} s each, all on this machine")
    print(f"{'path':<28}{'purchases/s':>12}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
          f"{'client CPU':>12}")
    for name, (rate, p50, p99, errors, *cpu) in (("gRPC unary Purchase", grpc_figures),
                                                 ("ISO 8583 0200 over TLS", iso_figures),
                                                 ("bare TLS echo (limit)", echo_figures)):
        print(f"{name:<28}{rate:>12,.0f}{p50:>9.1f}{p99:>9.1f}{errors:>8}" +
              (f"{cpu[0]:>7.2f} cores" if cpu else f"{'':>12}"))
    print(f"(the machine has {os.cpu_count()} cores; the ISO clients' CPU is what the host "
          "and its core could not use)")
    print(f"ISO / gRPC unary: {iso_figures[0] / grpc_figures[0]:.2f} (goal >= {GOAL_RATIO_GRPC}); "
          f"ISO / echo: {iso_figures[0] / echo_figures[0]:.2f} (goal >= {GOAL_RATIO_ECHO})")


if __name__ == "__main__":
    sys.exit(main())
