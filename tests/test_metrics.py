"""Operator monitoring: a scenario against a live gateway, its /metrics endpoint scraped
and read with prometheus-client's own parser; the counters say what the scenario did.
Health follows the store: NOT_SERVING while it cannot commit, SERVING once it can."""
import contextlib
import os
import pathlib
import subprocess
import sys
import time
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from cardgate.gateway.ops import top
from cardgate.v1 import authorization_pb2, common_pb2, fleet_pb2, forecourt_pb2, forecourt_pb2_grpc

from conftest import LiveGateway
from helpers import create_range, eur, issue, load, make_pan, new_id, purchase


def scrape(gw) -> dict:
    """{(sample name, frozenset of labels): value} of the gateway's exposition."""
    text = urllib.request.urlopen(f"http://{gw.gateway.metrics_server.address}/metrics",
                                  timeout=10).read().decode()
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0)


@pytest.fixture
def gw(tmp_path):
    gateway = LiveGateway(tmp_path / "data", metrics_listen="127.0.0.1:0")
    yield gateway
    gateway.close()


def test_the_counters_say_what_the_scenario_did(gw):
    create_range(gw)
    card, other = make_pan(1), make_pan(2)
    issue(gw, [card, other])
    assert load(gw, card, 30_00).result_code == common_pb2.RESULT_CODE_APPROVED
    for _ in range(3):
        assert purchase(gw, card, 5_00).result_code == common_pb2.RESULT_CODE_APPROVED
    for _ in range(2):
        assert purchase(gw, card, 100_00).result_code == common_pb2.RESULT_CODE_DECLINED_INSUFFICIENT_FUNDS
    assert purchase(gw, other, 1_00).result_code == common_pb2.RESULT_CODE_DECLINED_CARD_NOT_ACTIVE
    with pytest.raises(grpc.RpcError):
        purchase(gw, card, -5)                                   # refused: INVALID_ARGUMENT
    held = gw.auth.PreAuthorize(authorization_pb2.PreAuthorizeRequest(
        request_id=new_id(), pan=card, amount=eur(2_00))).authorization
    assert held.result_code == common_pb2.RESULT_CODE_APPROVED
    batch = forecourt_pb2_grpc.ForecourtServiceStub(gw.channel).AuthorizeBatch(
        forecourt_pb2.AuthorizeBatchRequest(operations=[
            forecourt_pb2.ForecourtOperation(purchase=authorization_pb2.PurchaseRequest(
                request_id=new_id(), pan=card, amount=eur(amount))) for amount in (1_00, 500_00)]))
    assert [r.authorization.result_code for r in batch.results] == [
        common_pb2.RESULT_CODE_APPROVED, common_pb2.RESULT_CODE_DECLINED_INSUFFICIENT_FUNDS]

    samples = scrape(gw)
    requests = "cardgate_requests_total"
    assert value(samples, requests, rpc="Purchase", operation="Purchase", result="RESULT_CODE_APPROVED") == 3
    assert value(samples, requests, rpc="Purchase", operation="Purchase",
                 result="RESULT_CODE_DECLINED_INSUFFICIENT_FUNDS") == 2
    assert value(samples, requests, rpc="Purchase", operation="Purchase",
                 result="RESULT_CODE_DECLINED_CARD_NOT_ACTIVE") == 1
    assert value(samples, requests, rpc="Purchase", operation="Purchase", result="INVALID_ARGUMENT") == 1
    assert value(samples, requests, rpc="LoadValue", operation="LoadValue", result="RESULT_CODE_APPROVED") == 1
    assert value(samples, requests, rpc="AuthorizeBatch", operation="purchase",
                 result="RESULT_CODE_APPROVED") == 1
    assert value(samples, requests, rpc="AuthorizeBatch", operation="purchase",
                 result="RESULT_CODE_DECLINED_INSUFFICIENT_FUNDS") == 1
    assert sum(v for (name, labels), v in samples.items()
               if name == requests and dict(labels)["rpc"] == "Purchase") == 7
    assert value(samples, "cardgate_declines_total", reason="DECLINED_INSUFFICIENT_FUNDS") == 3
    assert value(samples, "cardgate_declines_total", reason="DECLINED_CARD_NOT_ACTIVE") == 1
    assert value(samples, "cardgate_request_seconds_count", rpc="Purchase") == 7
    assert value(samples, "cardgate_holds_outstanding") == 1
    assert value(samples, "cardgate_store_commit_ok") == 1
    assert value(samples, "cardgate_batch_requests_count") >= 1
    assert value(samples, "cardgate_batch_requests_sum") >= 11          # every request committed
    assert value(samples, "cardgate_commit_seconds_count") == value(samples, "cardgate_batch_requests_count")
    assert value(samples, "cardgate_store_file_bytes") > 0
    assert 0 < value(samples, "cardgate_store_map_used_ratio") < 1
    assert value(samples, "cardgate_writer_queue_depth") == 0
    # Bounded labels: no card number, masked or not, anywhere in the exposition.
    assert not any(card[-4:] in str(labels) for _, labels in samples)


def test_throttling_is_counted_by_reason_a_batch_is_one_request_and_business_is_counted(tmp_path):
    # The terminal: 22 requests at once, then (practically) none; a card: 4 a minute.
    gw = LiveGateway(tmp_path / "data", metrics_listen="127.0.0.1:0", terminal_rate_per_s=0.01,
                     terminal_burst=22, card_per_minute_max=4)
    try:
        create_range(gw)
        gw.fleet.DefineProduct(fleet_pb2.DefineProductRequest(
            request_id=new_id(), product_code=19, kind=fleet_pb2.PRODUCT_KIND_FUEL, name="diesel"))
        cards = [make_pan(i) for i in range(1, 21)]
        issue(gw, cards)
        for pan in cards:
            assert load(gw, pan, 10_00).result_code == common_pb2.RESULT_CODE_APPROVED   # 20 requests
        # A forecourt batch of 20 operations is one request of the terminal (the 21st).
        batch = forecourt_pb2_grpc.ForecourtServiceStub(gw.channel).AuthorizeBatch(
            forecourt_pb2.AuthorizeBatchRequest(operations=[
                forecourt_pb2.ForecourtOperation(purchase=authorization_pb2.PurchaseRequest(
                    request_id=new_id(), pan=pan, lines=[common_pb2.ProductLine(
                        product_code=19, volume_ml=2_000, unit_price_minor=1_50)]))
                for pan in cards]))
        assert [r.authorization.result_code for r in batch.results] == [common_pb2.RESULT_CODE_APPROVED] * 20
        # One card past its velocity of 4 a minute (a load and a sale so far), inside a
        # batch (the 22nd request): that operation alone.
        batch = forecourt_pb2_grpc.ForecourtServiceStub(gw.channel).AuthorizeBatch(
            forecourt_pb2.AuthorizeBatchRequest(operations=[
                forecourt_pb2.ForecourtOperation(purchase=authorization_pb2.PurchaseRequest(
                    request_id=new_id(), pan=cards[0], amount=eur(10))) for _ in range(3)]))
        assert [r.error.code for r in batch.results].count(grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]) == 1
        with pytest.raises(grpc.RpcError) as refused:                   # the burst of 22 is spent
            purchase(gw, cards[1], 10)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        samples = scrape(gw)
        assert value(samples, "cardgate_throttled_total", reason="velocity") == 1
        assert value(samples, "cardgate_throttled_total", reason="rate") == 1
        assert value(samples, "cardgate_throttled_total", reason="admission") == 0
        assert value(samples, "cardgate_money_authorized_minor_total", currency="EUR") == 20 * 3_00 + 2 * 10
        assert value(samples, "cardgate_volume_ml_total", product="19") == 20 * 2_000
        reading = top.scrape(gw.gateway.metrics_server.address)
        assert reading.throttled["velocity"] == 1 and reading.throttled["rate"] == 1
    finally:
        gw.close()


def test_health_is_not_serving_while_the_store_cannot_commit_and_serving_after(gw):
    create_range(gw)
    card = make_pan(1)
    issue(gw, [card])
    load(gw, card, 10_00)
    health = health_pb2_grpc.HealthStub(gw.channel)

    def status():
        return health.Check(health_pb2.HealthCheckRequest(service="")).status

    assert status() == health_pb2.HealthCheckResponse.SERVING
    writer = gw.gateway.writer
    writer._commit_state(False)           # what a refused commit does (map or disk full)
    assert status() == health_pb2.HealthCheckResponse.NOT_SERVING
    assert value(scrape(gw), "cardgate_store_commit_ok") == 0
    # Nothing is sent while it is down; the writer's probe finds the store takes commits.
    for _ in range(50):
        if status() == health_pb2.HealthCheckResponse.SERVING:
            break
        time.sleep(0.1)
    assert status() == health_pb2.HealthCheckResponse.SERVING
    samples = scrape(gw)
    assert value(samples, "cardgate_store_commit_ok") == 1
    assert value(samples, "cardgate_background_work_total", kind="probe") >= 1
    assert purchase(gw, card, 1_00).result_code == common_pb2.RESULT_CODE_APPROVED


@contextlib.contextmanager
def small_filesystem(path, size_mib):
    """A tmpfs of its own, as a disk that can fill up; skipped where mounting is not allowed."""
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mib}m", "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def wait_for(check, timeout_s=15):
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.mark.slow
def test_a_full_disk_refuses_requests_clearly_loses_nothing_and_serves_again_once_freed(tmp_path):
    with small_filesystem(tmp_path / "disk", 24) as disk:
        gw = LiveGateway(disk / "data", metrics_listen="127.0.0.1:0")
        try:
            create_range(gw)
            card = make_pan(1)
            issue(gw, [card])
            health = health_pb2_grpc.HealthStub(gw.channel)

            def status():
                return health.Check(health_pb2.HealthCheckRequest(service="")).status

            # Fill the disk but for a little, then load until the store cannot commit.
            filler = disk / "filler"
            free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
            with open(filler, "wb") as f:
                f.write(b"\0" * (free - 256 * 1024))
            approved, refused = [], None
            for _ in range(5000):
                rid = new_id()
                try:
                    reply = load(gw, card, 1, request_id=rid)
                except grpc.RpcError as exc:
                    refused = (rid, exc)
                    break
                assert reply.result_code == common_pb2.RESULT_CODE_APPROVED
                approved.append(rid)
            assert refused is not None, "the disk never filled"
            rid, exc = refused
            assert exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED)
            # A full tmpfs answers LMDB's writes with ENOSPC, or a short write LMDB calls EIO.
            assert "No space left on device" in exc.details() or "Input/output error" in exc.details()
            assert "retry with the same request_id" in exc.details()
            assert status() == health_pb2.HealthCheckResponse.NOT_SERVING
            assert health.Check(health_pb2.HealthCheckRequest(service="cardgate.liveness")).status == \
                health_pb2.HealthCheckResponse.SERVING             # alive, not ready
            assert value(scrape(gw), "cardgate_store_commit_ok") == 0

            # Space freed: the probe sees it, health comes back, the refused request is retried.
            filler.unlink()
            wait_for(lambda: status() == health_pb2.HealthCheckResponse.SERVING)
            assert load(gw, card, 1, request_id=rid).result_code == common_pb2.RESULT_CODE_APPROVED
            assert load(gw, card, 1, request_id=approved[0]).result_code == common_pb2.RESULT_CODE_APPROVED
            assert gw.auth.GetBalance(authorization_pb2.GetBalanceRequest(pan=card)).balance.balance_minor \
                == len(approved) + 1                               # every acknowledged load, once
        finally:
            gw.close()


def test_serve_shows_where_its_metrics_are_and_a_taken_port_is_said_plainly(tmp_path):
    from gateway_process import GatewayProcess

    first = GatewayProcess(tmp_path / "one")
    try:
        wait_for(lambda: any("Metrics for Prometheus on" in line for line in first.output))
        line = next(line for line in first.output if "Metrics for Prometheus on" in line)
        address = line.split("http://")[1].split("/metrics")[0]
        text = urllib.request.urlopen(f"http://{address}/metrics", timeout=10).read().decode()
        assert "cardgate_store_commit_ok 1.0" in text
        taken = subprocess.run([sys.executable, "-m", "cardgate.gateway.cli.main", "serve", "--no-demo",
                                "--data-dir", str(tmp_path / "two"), "--listen", "127.0.0.1:0",
                                "--metrics-listen", address], capture_output=True, text=True, timeout=60,
                               stdin=subprocess.DEVNULL)
        assert taken.returncode == 2 and "Address already in use" in taken.stderr, taken.stderr
        assert "Traceback" not in taken.stderr
    finally:
        first.stop()


def test_top_shows_the_scenario_live_in_a_terminal_and_ends_on_ctrl_c(gw):
    import pty
    import re
    import select
    import signal

    create_range(gw)
    card = make_pan(1)
    issue(gw, [card])
    load(gw, card, 20_00)
    for _ in range(4):
        purchase(gw, card, 1_00)
    for _ in range(3):
        purchase(gw, card, 900_00)                            # insufficient funds
    inherited = [line for line in pathlib.Path("/proc/self/status").read_text().splitlines()
                 if line.startswith(("SigBlk", "SigIgn"))]
    pid, fd = pty.fork()
    if pid == 0:                                              # the child: cardgate top in a terminal
        # As a shell starts it: Ctrl-C's signal neither ignored nor blocked, whatever
        # this test process (its gRPC and NATS threads) had.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        os.environ.update(COLUMNS="100", LINES="30", TERM="xterm-256color")
        os.execv(sys.executable, [sys.executable, "-m", "cardgate.gateway.cli.main", "top", "--metrics",
                                  gw.gateway.metrics_server.address, "--interval", "0.3"])
    screen, deadline = b"", time.monotonic() + 30
    frame = ""
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                try:
                    screen += os.read(fd, 65536)
                except OSError:
                    break
            frame = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.decode("utf-8", "replace"))
            if "insufficient funds" in frame and "requests 10" in frame:
                break
        # 10 requests: the range, the issue, the load, 4 purchases (6 approved), 3 declined.
        assert "approved 6" in frame and "declined 3" in frame, frame[-3000:]
        assert "insufficient funds" in frame and re.search(r"p99 \d+\.\d ms", frame), frame[-3000:]
        assert "req/s" in frame and "committing" in frame
        os.write(fd, b"\x03")                                 # Ctrl-C, through the terminal
        deadline = time.monotonic() + 10
        after = b""
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            try:
                if select.select([fd], [], [], 0.1)[0]:
                    after += os.read(fd, 65536)
            except OSError:
                pass
        assert done and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, \
            (status, inherited, after[-2000:].decode("utf-8", "replace"))
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(fd)


def test_top_reads_quantiles_from_histogram_buckets():
    from cardgate.gateway.ops.top import quantile, sparkline

    buckets = {0.001: 50, 0.002: 90, 0.005: 99, 0.01: 100, float("inf"): 100}
    assert quantile(buckets, 0.5) == pytest.approx(0.001)
    assert quantile(buckets, 0.7) == pytest.approx(0.0015)
    assert quantile(buckets, 0.99) == pytest.approx(0.005)
    assert quantile({0.001: 0, float("inf"): 0}, 0.5) is None
    assert quantile({0.001: 0, float("inf"): 4}, 0.5) == 0.001        # past the last bound
    assert sparkline([0, 5, 10]) == "▁▅█" and sparkline([0, 0]) == "▁▁"


def test_the_grafana_dashboard_and_the_scrape_config_name_what_the_gateway_exposes(gw):
    import json
    import pathlib
    import re

    from cardgate.gateway.cli.main import METRICS_LISTEN_DEFAULT

    create_range(gw)
    card = make_pan(1)
    issue(gw, [card])
    load(gw, card, 1_00)
    purchase(gw, card, 5_00)                                  # a decline, so declines exist
    gw.fleet.DefineProduct(fleet_pb2.DefineProductRequest(      # a fuel sale: money, litres
        request_id=new_id(), product_code=19, kind=fleet_pb2.PRODUCT_KIND_FUEL, name="diesel"))
    assert gw.auth.Purchase(authorization_pb2.PurchaseRequest(
        request_id=new_id(), pan=card, lines=[common_pb2.ProductLine(
            product_code=19, volume_ml=500, unit_price_minor=1_00)])).authorization.result_code == \
        common_pb2.RESULT_CODE_APPROVED
    exposed = {name for name, _ in scrape(gw)}
    families = {re.sub(r"_(total|bucket|count|sum|created)$", "", n) for n in exposed}
    deploy = pathlib.Path(__file__).parent.parent / "deploy"
    board = json.loads((deploy / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for panel in board["panels"] for t in panel["targets"]]
    used = {name for expr in exprs for name in re.findall(r"\bcardgate_[a-z_]+", expr)}
    assert used and used <= exposed, used - exposed           # every name exists, as written
    assert {re.sub(r"_(total|bucket|count|sum)$", "", n) for n in used} == \
        {f for f in families if f.startswith("cardgate_")}    # and every family has a panel
    scrape_config = (deploy / "prometheus.yml").read_text()
    job = re.search(r"job_name:\s*(\S+)", scrape_config).group(1)
    assert all(f'job="{job}"' in expr for expr in exprs)
    assert re.search(r"metrics_path:\s*/metrics", scrape_config)
    assert f'"{METRICS_LISTEN_DEFAULT}"' in scrape_config


@pytest.mark.slow
def test_a_full_map_refuses_with_resource_exhausted_and_a_bigger_map_serves_everything(tmp_path):
    data_dir = tmp_path / "data"
    gw = LiveGateway(data_dir, metrics_listen="127.0.0.1:0", map_size_bytes=1 << 20)
    approved = []
    try:
        create_range(gw)
        card = make_pan(1)
        issue(gw, [card])
        health = health_pb2_grpc.HealthStub(gw.channel)
        for _ in range(20_000):
            rid = new_id()
            try:
                assert load(gw, card, 1, request_id=rid).result_code == common_pb2.RESULT_CODE_APPROVED
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, exc.details()
                assert "store is full" in exc.details() and "retry with the same request_id" in exc.details()
                break
            approved.append(rid)
        else:
            pytest.fail("the map never filled")
        assert health.Check(health_pb2.HealthCheckRequest(service="")).status == \
            health_pb2.HealthCheckResponse.NOT_SERVING
        time.sleep(1.5)                                   # probes do not make room that is not there
        assert health.Check(health_pb2.HealthCheckRequest(service="")).status == \
            health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        gw.close()
    # The operator grows the map (a restart with a bigger one): everything acknowledged is there.
    gw = LiveGateway(data_dir, metrics_listen="127.0.0.1:0", map_size_bytes=64 << 20)
    try:
        assert health_pb2_grpc.HealthStub(gw.channel).Check(health_pb2.HealthCheckRequest(service="")).status == \
            health_pb2.HealthCheckResponse.SERVING
        assert gw.auth.GetBalance(authorization_pb2.GetBalanceRequest(pan=card)).balance.balance_minor == \
            len(approved)
        assert load(gw, card, 1, request_id=rid).result_code == common_pb2.RESULT_CODE_APPROVED
    finally:
        gw.close()
