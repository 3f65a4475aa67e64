"""Replication, measured in one run beside the single node: durable authorizations/s,
p50 and p99 of a single node and of a replicated primary (its batches published to a
three-replica JetStream stream before each commit), on the unary and the forecourt batch
paths; then failover: the primary of a two-node group SIGKILLed again and again, the time
from each kill to the first approval on the new primary.

    python -m benchmarks.replication [--duration-s 8] [--batch 100] [--kills 10]

Goals (issue 18): the replicated primary keeps >= 0.8 of the single node's throughput on
the forecourt batch path; failover <= 5 s from the kill to the first approval (median and
worst). Everything runs on this machine: the clients, the NATS servers, the nodes.
"""
import argparse
import shutil
import statistics
import sys
import tempfile
import time
import types

import grpc

from benchmarks.loadgen import (drive, issue_client_certificates, pan_of, prepare_cards,
                                sample_messages, start_gateway)
from benchmarks.nats_cluster import NatsCluster
from cardgate.gateway.cli.channels import open_channel
from cardgate.gateway.cli.demo import clients_dir
from cardgate.gateway.request_ids import new_request_id
from cardgate.gateway.security.pki import Pki
from cardgate.gateway.store.store import Store
from cardgate.v1 import authorization_pb2, authorization_pb2_grpc, common_pb2

GOAL_RATIO_BATCH = 0.8
GOAL_FAILOVER_S = 5.0
LEASE_TTL_S = 1.5


def fresh_data_dir(root, name):
    """A data directory with its keys, CA and the benchmark's client certificates."""
    data = f"{root}/{name}"
    Store(data).close()
    Pki(data).ensure()
    issue_client_certificates(data)
    return data


def copy_node(root, source, name):
    shutil.copytree(f"{root}/{source}", f"{root}/{name}")
    shutil.copy(f"{root}/{source}.kek", f"{root}/{name}.kek")
    return f"{root}/{name}"


def replicated_options(cluster, node_id, group):
    return ("--replicate", ",".join(cluster.servers), "--node-id", node_id,
            "--lease-ttl-s", str(LEASE_TTL_S), "--group", group, "--metrics-listen", "off")


def throughput(args, data, serve_options, batch):
    proc, address = start_gateway(data, serve_options=serve_options)
    try:
        wait_until_writing(address, data)
        prepare_cards(address, args.cards, data)
        run = types.SimpleNamespace(**{**vars(args), "batch": batch, "stream": 0, "workers": 1})
        request, _ = sample_messages(batch)
        return drive(address, "gateway", run, request.ByteSize(), data)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def wait_until_writing(address, data, timeout_s=60):
    """Until the node takes writes (a replicated one: once it holds the lease)."""
    with open_channel(address, clients_dir(data), "bench-terminal") as channel:
        stub = authorization_pb2_grpc.AuthorizationServiceStub(channel)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                stub.LoadValue(authorization_pb2.LoadValueRequest(
                    request_id=new_request_id(), pan=pan_of(0),
                    amount=common_pb2.Money(amount_minor=1, currency="EUR")), timeout=5)
                return
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE:
                    return                     # answered (the card is not issued yet)
            time.sleep(0.1)
    raise RuntimeError("the node never took writes")


def failover_times(args, root, cluster):
    """Kill the primary of a two-node group args.kills times; the seconds from each kill to
    the first approval on the other node."""
    a = fresh_data_dir(root, "fa")
    b = copy_node(root, "fa", "fb")
    procs = {"fa": start_gateway(a, serve_options=replicated_options(cluster, "fa", "FAILOVER"))}
    wait_until_writing(procs["fa"][1], a)
    procs["fb"] = start_gateway(b, serve_options=replicated_options(cluster, "fb", "FAILOVER"))
    prepare_cards(procs["fa"][1], 10, a)
    times, primary = [], "fa"
    try:
        for _ in range(args.kills):
            other = "fb" if primary == "fa" else "fa"
            time.sleep(LEASE_TTL_S)                 # the other has caught up and follows
            killed_at = time.monotonic()
            procs[primary][0].kill()
            procs[primary][0].wait(timeout=30)
            first_approval(procs[other][1], f"{root}/{other}")
            times.append(time.monotonic() - killed_at)
            data = f"{root}/{primary}"
            procs[primary] = start_gateway(
                data, serve_options=replicated_options(cluster, primary, "FAILOVER"))
            primary = other
    finally:
        for proc, _ in procs.values():
            proc.terminate()
            proc.wait(timeout=30)
    return times


def first_approval(address, data, timeout_s=60):
    with open_channel(address, clients_dir(data), "bench-terminal", own_connection=True) as channel:
        stub = authorization_pb2_grpc.AuthorizationServiceStub(channel)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                answer = stub.LoadValue(authorization_pb2.LoadValueRequest(
                    request_id=new_request_id(), pan=pan_of(1),
                    amount=common_pb2.Money(amount_minor=1, currency="EUR")), timeout=2)
                if answer.authorization.result_code == common_pb2.RESULT_CODE_APPROVED:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.02)
    raise RuntimeError("no approval on the new primary")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=2, help="client processes")
    parser.add_argument("--concurrency", type=int, default=8, help="calls in flight per process")
    parser.add_argument("--duration-s", type=float, default=8.0)
    parser.add_argument("--cards", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=100, help="purchases per AuthorizeBatch")
    parser.add_argument("--kills", type=int, default=10)
    args = parser.parse_args(argv)
    root = tempfile.mkdtemp(prefix="cardgate-replication-")
    cluster = NatsCluster(f"{root}/nats")
    try:
        rows = []
        for path, batch in (("unary Purchase", 0), (f"AuthorizeBatch of {args.batch}", args.batch)):
            single = throughput(args, fresh_data_dir(root, f"s{batch}"),
                                ("--metrics-listen", "off"), batch)
            replicated = throughput(args, fresh_data_dir(root, f"r{batch}"),
                                    replicated_options(cluster, f"r{batch}", f"BENCH{batch}"), batch)
            rows.append((path, single, replicated))
        kills = failover_times(args, root, cluster)
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(f"clients: {args.processes} processes x {args.concurrency} in flight, "
          f"{args.duration_s:.0f} s each; NATS: 3 nodes, stream of 3 replicas; all on this "
          "machine")
    print(f"{'path':<24}{'single auths/s':>16}{'p50/p99 ms':>14}{'replicated':>14}"
          f"{'p50/p99 ms':>14}{'ratio':>8}")
    for path, (s_rate, s50, s99, s_err), (r_rate, r50, r99, r_err) in rows:
        print(f"{path:<24}{s_rate:>16,.0f}{f'{s50:.1f}/{s99:.1f}':>14}{r_rate:>14,.0f}"
              f"{f'{r50:.1f}/{r99:.1f}':>14}{r_rate / s_rate:>8.2f}"
              + (f"  errors {s_err}/{r_err}" if s_err or r_err else ""))
    print(f"goal: replicated >= {GOAL_RATIO_BATCH} of single on the batch path")
    print(f"failover over {len(kills)} kills (lease {LEASE_TTL_S} s): median "
          f"{statistics.median(kills):.2f} s, worst {max(kills):.2f} s "
          f"(goal <= {GOAL_FAILOVER_S} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
