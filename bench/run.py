"""Benchmarks for condor-annexd, against the embedded moto server on this machine.

    python bench/run.py            # the full run (minutes; docs/benchmarks.md records one)
    python bench/run.py --quick    # small sizes, seconds; the test suite runs this

Prints one JSON line per metric ({"metric", "value", "unit"}) as it goes, then a table, then
the comparison with the figures committed in docs/benchmarks.md for the same mode (full or
quick): which metrics moved, better or worse, beyond the noise (bench/compare.py says how).
API calls are counted exactly: for the daemon and the CLI as HTTP requests through a counting
proxy in front of moto (retries included), for the lease function with botocore event hooks on
its clients.  Counts are deterministic; times depend on the machine.
"""
from __future__ import annotations

import argparse
import compileall
import concurrent.futures
import contextlib
import re
import signal
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Iterator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from annexd.rpc import protocol  # noqa: E402
from annexd.state.journal import Journal  # noqa: E402
from annexd.launch import SPOT_FLEET  # noqa: E402
from annexd.state.lifecycle import RequestState  # noqa: E402
from annexd.launch.plan import AnnexPlan  # noqa: E402
from annexd_lambda import lease  # noqa: E402
from localaws import fixtures  # noqa: E402
from localaws.eventbridge import LambdaContext  # noqa: E402
from localaws.faultproxy import FaultProxy  # noqa: E402
from localaws.moto_server import MotoServer  # noqa: E402
from localaws.pool import BUCKET, REGION, AnnexDaemon, LocalPool, script  # noqa: E402
from condor_annex import client  # noqa: E402
import compare  # noqa: E402  (bench/compare.py)

EXAMPLE = os.path.join(ROOT, "examples", "spot-fleet.json")
RESULTS: list[dict[str, Any]] = []


def record(metric: str, value: float | int | None, unit: str, note: str = "") -> None:
    """Keep a result, and print its JSON line at once: a run that dies later keeps it."""
    RESULTS.append({"metric": metric, "value": value, "unit": unit, "note": note})
    print(json.dumps({"metric": metric, "value": value, "unit": unit}), flush=True)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


class Bench:
    """One moto server, a counting proxy in front of it, and a pool whose daemon uses it."""

    def __init__(self, workdir: str):
        self.workdir = workdir
        self.moto = MotoServer(log_path=os.path.join(workdir, "moto.log")).start()
        self.proxy = FaultProxy(self.moto.url, upstream_timeout=1800).start()
        self.clients = {name: fixtures.client(name, self.moto.url, REGION)
                        for name in ("ec2", "events", "s3", "lambda", "iam")}
        fixtures.create_bucket(self.clients["s3"], BUCKET, REGION)
        self.lease_arn = fixtures.deploy_lease_function(self.clients["iam"],
                                                        self.clients["lambda"])
        fixtures.create_join_resources(self.clients["ec2"], self.clients["iam"], self.moto.seed)
        self.pool = LocalPool(os.path.join(workdir, "pool")).write(
            self.proxy.url, secret="bench-secret",
            extra=f"ANNEX_DEFAULT_LEASE_FUNCTION_ARN = {self.lease_arn}\n"
                  "ANNEXD_MAX_CLIENTS = 256\n"
                  # moto creates a fleet's instances before it answers (AWS does not):
                  # 10,000 of them take minutes there.
                  "ANNEXD_AWS_TIMEOUT_SECONDS = 1800")
        self.clients["ec2"].describe_instances()  # warm moto's EC2 backend

    def annex(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([script("condor_annex"), "-public", self.pool.access_key_file,
                               "-secret", self.pool.secret_key_file, *args],
                              env=self.pool.env(), capture_output=True, text=True, timeout=3600)

    def create(self, name: str, count: int) -> subprocess.CompletedProcess:
        return self.annex("-annex-name", name, "-count", str(count), "-lease-duration", "3600",
                          EXAMPLE)

    def reset(self) -> None:
        """Forget everything in moto (its calls slow down with every instance it keeps, even
        terminated ones), then recreate the bucket, the lease function and the instances'
        profile and security group."""
        self.moto.reset()
        fixtures.create_bucket(self.clients["s3"], BUCKET, REGION)
        self.lease_arn = fixtures.deploy_lease_function(self.clients["iam"],
                                                        self.clients["lambda"])
        fixtures.create_join_resources(self.clients["ec2"], self.clients["iam"], self.moto.seed)

    def close(self) -> None:
        self.proxy.stop()
        self.moto.stop()


def timed(work: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = work()
    return time.perf_counter() - started, result


def api_calls_per_annex(bench: Bench, sizes: list[int]) -> None:
    """Calls of one create in steady state: after a first create, which also checks the
    lease function (the daemon then trusts it for ANNEXD_FUNCTION_CHECK_SECONDS)."""
    first = bench.create("calls-first", 1)
    assert first.returncode == 0, first.stderr
    counts = {}
    for size in sizes:
        bench.proxy.clear()
        result = bench.create(f"calls-{size}", size)
        assert result.returncode == 0, result.stderr
        counts[size] = sum(bench.proxy.seen.values())
        record(f"api_calls_per_annex[{size}]", counts[size], "calls",
               f"create of a {size}-instance annex")
    record("api_calls_growth", max(counts.values()) - min(counts.values()), "calls",
           f"difference between the annexes of {min(sizes)} and {max(sizes)} instances: "
           "should be 0")


def create_overhead_ratio(bench: Bench, runs: int) -> None:
    with open(EXAMPLE, encoding="utf-8") as handle:
        example = json.load(handle)
    ec2, events, s3, lambda_ = (bench.clients[n] for n in ("ec2", "events", "s3", "lambda"))

    def direct(index: int) -> None:
        name = f"direct-{index}"
        config = SPOT_FLEET.build(example, annex_id=name, client_token=f"{name}_x",
                                  count=1, instance_tags={}).request
        lambda_.get_function(FunctionName=bench.lease_arn)
        try:
            events.describe_rule(Name=name)
        except events.exceptions.ResourceNotFoundException:
            pass
        s3.put_object(Bucket=BUCKET, Key=f"config-{name}.tar.gz", Body=b"x" * 1024)
        events.put_rule(Name=name, ScheduleExpression="rate(5 minutes)")
        events.put_targets(Rule=name, Targets=[{"Id": name, "Arn": bench.lease_arn,
                                                "Input": "{}"}])
        ec2.request_spot_fleet(SpotFleetRequestConfig=config)

    direct_times = [timed(lambda i=i: direct(i))[0] for i in range(runs)]
    ours = []
    for index in range(runs):
        elapsed, result = timed(lambda i=index: bench.create(f"e2e-{i}", 1))
        assert result.returncode == 0, result.stderr
        ours.append(elapsed)
    record("create_ms_p50", round(statistics.median(ours) * 1000, 1), "ms",
           "condor_annex create, end to end (CLI process + daemon + AWS)")
    record("direct_sequence_ms_p50", round(statistics.median(direct_times) * 1000, 1), "ms",
           "the same AWS calls issued directly with boto3")
    record("create_overhead_ratio", round(statistics.median(ours) /
                                          statistics.median(direct_times), 2), "ratio")


def cli_start(bench: Bench, runs: int, awscli: str | None) -> None:
    def cold(command: list[str]) -> float:
        return statistics.median(timed(lambda: subprocess.run(
            command, env=bench.pool.env(), capture_output=True))[0] for _ in range(runs))

    help_s = cold([script("condor_annex"), "-help"])
    status_s = cold([script("condor_annex"), "-status", "-public", bench.pool.access_key_file,
                     "-secret", bench.pool.secret_key_file])
    record("cli_start_ms", round(help_s * 1000, 1), "ms", "condor_annex -help")
    record("cli_status_ms", round(status_s * 1000, 1), "ms", "condor_annex -status")
    if awscli:
        aws_s = cold([awscli, "--version"])
        record("awscli_start_ms", round(aws_s * 1000, 1), "ms", "aws --version")
        record("cli_vs_awscli_ratio", round(help_s / aws_s, 2), "ratio")
    else:
        record("cli_vs_awscli_ratio", None, "ratio", "awscli not installed (pass --awscli)")


def concurrent_creates(bench: Bench, clients: int) -> None:
    def one(index: int) -> tuple[float, bool]:
        elapsed, result = timed(lambda: bench.create(f"burst-{index}", 1))
        return elapsed, result.returncode == 0 and result.stdout.startswith("sfr-")

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=clients) as pool:
        outcomes = list(pool.map(one, range(clients)))
    wall = time.perf_counter() - started
    times = [elapsed for elapsed, ok in outcomes if ok]
    fleets = {f["SpotFleetRequestId"] for f in bench.clients["ec2"].describe_spot_fleet_requests()[
        "SpotFleetRequestConfigs"] if any(t["Value"].startswith("burst-")
                                          for t in f.get("Tags", []))}
    record("concurrent_creates_per_s", round(len(times) / wall, 2), "creates/s",
           f"{clients} simultaneous condor_annex")
    record("create_p50_ms", round(percentile(times, 0.5) * 1000, 1), "ms")
    record("create_p99_ms", round(percentile(times, 0.99) * 1000, 1), "ms")
    record("lost_requests", clients - len(fleets), "requests", "no fleet afterwards")


class Counter:
    def __init__(self, *clients: Any):
        self.calls = 0
        for service_client in clients:
            service_client.meta.events.register("before-call.*.*", self._count)

    def _count(self, **_: Any) -> None:
        self.calls += 1


def lease_enforcement(bench: Bench, sizes: list[int]) -> None:
    with open(EXAMPLE, encoding="utf-8") as handle:
        example = json.load(handle)
    for size in sizes:
        name, token = f"lease-{size}", f"lease-{size}_t"
        config = SPOT_FLEET.build(example, annex_id=name, client_token=token,
                                  count=size, instance_tags={}).request
        bench.clients["ec2"].request_spot_fleet(SpotFleetRequestConfig=config)
        event = {"AnnexID": name, "AnnexType": "spot-fleet", "S3BucketName": BUCKET,
                 "LeaseExpiration": 2_000_000_000, "ClientToken": token}
        # The lease as the daemon makes it: the function confirms each expired event there.
        bench.clients["events"].put_rule(Name=name, ScheduleExpression="rate(5 minutes)",
                                         Description=lease.rule_description(name, token))
        bench.clients["events"].put_targets(Rule=name, Targets=[
            {"Id": name, "Arn": bench.lease_arn, "Input": json.dumps(event)}])
        clients = lease.Clients(*(fixtures.client(n, bench.moto.url, REGION)
                                  for n in ("ec2", "events", "s3")))
        counter = Counter(clients.ec2, clients.events, clients.s3)
        context = LambdaContext(bench.lease_arn)
        lease.handler(event, context, now=lambda: 1_000_000_000, clients=clients)
        if size == sizes[0]:
            record("lease_noop_calls", counter.calls, "calls", "unexpired lease")
        elapsed, _ = timed(lambda: lease.handler(event, context, now=lambda: 3_000_000_000,
                                                 clients=clients))
        record(f"lease_enforce_calls[{size}]", counter.calls, "calls",
               f"expired lease, {size} instances")
        record(f"lease_enforce_ms[{size}]", round(elapsed * 1000, 1), "ms")


def big_annex(bench: Bench, size: int, status_too: bool) -> None:
    """Create calls (and -status calls, with ``status_too``) for one annex of ``size``
    instances, in steady state (after a first create)."""
    first = bench.create("before-wide", 1)
    assert first.returncode == 0, first.stderr
    bench.proxy.clear()
    result = bench.create("wide", size)
    assert result.returncode == 0, result.stderr
    record(f"api_calls_per_annex[{size}]", sum(bench.proxy.seen.values()), "calls",
           f"create of a {size}-instance annex")
    if status_too:
        status_calls(bench, size)


def status_calls(bench: Bench, size: int) -> None:
    bench.proxy.clear()
    elapsed, result = timed(lambda: bench.annex("-status", "-json", "-annex-name", "wide"))
    assert result.returncode == 0, result.stderr
    [annex] = json.loads(result.stdout)
    assert annex["instances"] == {"running": size}, annex
    record(f"status_calls[{size}]", sum(bench.proxy.seen.values()), "calls",
           f"-status of a {size}-instance annex")
    record(f"status_ms[{size}]", round(elapsed * 1000, 1), "ms")


def _fake_rows(journal_path: str, count: int, state: str) -> None:
    journal = Journal(journal_path)
    with open(EXAMPLE, encoding="utf-8") as handle:
        example = json.load(handle)
    for index in range(count):
        name = f"j{index}"
        config = SPOT_FLEET.build(example, annex_id=name, client_token=f"{name}_t",
                                  count=1, instance_tags={}).request
        plan = AnnexPlan(annex_id=name, annex_type="spot-fleet", owner_uid=1000,
                         region=REGION, lease_function_arn="arn:aws:lambda:us-east-1:"
                         "123456789012:function:f", lease_end=4_000_000_000, bucket=BUCKET,
                         client_token=f"{name}_t", rule_schedule="rate(5 minutes)",
                         launch_request=config)
        request_id = journal.begin(plan, daemon_credentials=False)
        if state != RequestState.CREATING:
            journal.transition(request_id, RequestState(state))
    journal.close()


def daemon_memory_and_recovery(bench: Bench, count: int) -> None:
    for state, metric in (("active", "daemon_rss_mib"), ("creating", "recovery_ms")):
        pool = LocalPool(os.path.join(bench.workdir, f"journal-{state}")).write(
            bench.proxy.url, secret="bench-secret")
        _fake_rows(pool.journal_file, count, state)
        elapsed, daemon = timed(lambda: AnnexDaemon(pool).start())
        try:
            if metric == "daemon_rss_mib":
                with open(f"/proc/{daemon.process.pid}/status", encoding="ascii") as status:
                    rss_kib = next(int(line.split()[1]) for line in status
                                   if line.startswith("VmRSS:"))
                record(metric, round(rss_kib / 1024, 1), "MiB",
                       f"condor_annexd with {count} annexes in its journal")
            else:
                record(metric, round(elapsed * 1000, 1), "ms",
                       f"start-up with {count} unfinished requests to recover (users' keys: "
                       "parked) until the first answer")
        finally:
            daemon.stop()


#: The create message's fleet field (named ``spot_fleet_config`` before the launch kinds), so
#: that the same benchmark measures the code before and after a change.
FLEET_FIELD = "fleet_config" if "fleet_config" in protocol._CREATE_ANNEX["properties"] \
    else "spot_fleet_config"


def socket_create(bench: Bench, pool: LocalPool, name: str) -> dict[str, Any]:
    """One create straight over the daemon's socket: what the CLI sends, without its process
    start, so that what is measured is the daemon."""
    with open(EXAMPLE, encoding="utf-8") as handle:
        example = json.load(handle)
    with open(pool.access_key_file, encoding="ascii") as key, \
            open(pool.secret_key_file, encoding="ascii") as secret:
        credentials = {"access_key_id": key.read().strip(),
                       "secret_access_key": secret.read().strip()}
    reply = client.call(pool.socket_path, {
        "version": protocol.VERSION, "command": "create", "credentials": credentials,
        "annex": {"name": name, "lease_duration": 3600, "count": 1, "region": REGION,
                  "lease_function_arn": bench.lease_arn, "config_source": EXAMPLE,
                  FLEET_FIELD: example}})
    assert reply["ok"], reply
    return reply


def side_pool(bench: Bench, label: str) -> LocalPool:
    """A pool (and journal) of its own, on the same counting proxy."""
    return LocalPool(os.path.join(bench.workdir, label)).write(
        bench.proxy.url, secret="bench-secret",
        extra=f"ANNEX_DEFAULT_LEASE_FUNCTION_ARN = {bench.lease_arn}\n"
              "ANNEXD_MAX_CLIENTS = 256")


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        return round(next(int(line.split()[1]) for line in status
                          if line.startswith("VmRSS:")) / 1024, 1)


def overhead_ms(bench: Bench, pool: LocalPool, runs: int, prefix: str) -> float:
    """Median daemon-side time of ``runs`` creates, one after the other: request sent to reply
    read, minus the time the calls spent in the proxy and moto."""
    overheads = []
    for index in range(runs):
        bench.proxy.clear()
        elapsed, _ = timed(lambda i=index: socket_create(bench, pool, f"{prefix}-{i}"))
        overheads.append((elapsed - bench.proxy.busy_seconds) * 1000)
    return round(statistics.median(overheads), 1)


def daemon_overhead(bench: Bench, runs: int) -> None:
    """Daemon-side time per create (:func:`overhead_ms`), and the fsyncs per create, counted
    by strace."""
    pool = side_pool(bench, "overhead")
    with AnnexDaemon(pool) as daemon:
        socket_create(bench, pool, "warm-0")  # first clients, first imports
        record("daemon_overhead_ms", overhead_ms(bench, pool, runs, "lean"), "ms",
               "create: request to reply, minus the time inside AWS calls (p50)")
        fsyncs = count_fsyncs(daemon.process.pid, lambda: [
            socket_create(bench, pool, f"synced-{i}") for i in range(10)])
        record("fsyncs_per_create", None if fsyncs is None else round(fsyncs / 10, 1),
               "fsyncs", "fsync + fdatasync by the daemon per create (strace)")


def count_fsyncs(pid: int, work: Callable[[], Any]) -> int | None:
    strace = shutil.which("strace")
    if strace is None:
        return None
    with tempfile.NamedTemporaryFile("r", suffix=".strace") as out:
        tracer = subprocess.Popen([strace, "-f", "-c", "-e", "trace=fsync,fdatasync", "-o",
                                   out.name, "-p", str(pid)], stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # attached to every thread
        work()
        tracer.send_signal(signal.SIGINT)
        tracer.wait(timeout=30)
        text = out.read()
    counts = [int(m.group(1)) for m in re.finditer(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+"
                                                   r"(?:\d+\s+)?f(?:data)?sync$", text, re.M)]
    return sum(counts)


def many_annexes(bench: Bench, sizes: tuple[int, ...], rss_points: tuple[int, int],
                 overhead_runs: int) -> None:
    """-status calls and time with 1 and with many annexes; daemon memory after 10 and after
    1,000 creates; and the daemon's time per create (:func:`overhead_ms`) with the most
    annexes of ``sizes`` live, against ``daemon_overhead_ms`` with one."""
    pool = side_pool(bench, "many")
    made = 0
    with AnnexDaemon(pool) as daemon:
        def grow(to: int) -> None:
            nonlocal made
            with concurrent.futures.ThreadPoolExecutor(max_workers=8) as workers:
                list(workers.map(lambda i: socket_create(bench, pool, f"m{i}"),
                                 range(made, to)))
            made = to

        for target in sorted({*sizes, *rss_points}):
            grow(target)
            if target in rss_points:
                record(f"daemon_rss_mib[{target} creates]", rss_mib(daemon.process.pid), "MiB",
                       f"condor_annexd after {target} creates")
            if target in sizes:
                bench.proxy.clear()
                elapsed, result = timed(lambda: subprocess.run(
                    [script("condor_annex"), "-status", "-json", "-public",
                     pool.access_key_file, "-secret", pool.secret_key_file],
                    env=pool.env(), capture_output=True, text=True, timeout=3600))
                assert result.returncode == 0, result.stderr
                shown = json.loads(result.stdout)
                assert len(shown) == target and all(
                    a["instances"] == {"running": 1} for a in shown), shown[:3]
                record(f"status_calls[{target} annexes]", sum(bench.proxy.seen.values()),
                       "calls", f"-status of {target} annexes of 1 instance")
                record(f"status_ms[{target} annexes]", round(elapsed * 1000, 1), "ms")
            if target == max(sizes):
                record(f"daemon_overhead_ms[{target} annexes]",
                       overhead_ms(bench, pool, overhead_runs, "crowd"), "ms",
                       f"as daemon_overhead_ms, with {target} live annexes in the journal")
                made += overhead_runs


@contextlib.contextmanager
def running(daemon: AnnexDaemon) -> Iterator[AnnexDaemon]:
    """The daemon, stopped afterwards -- killed if it will not stop (say, still waiting on a
    call moto dropped), so that the results so far are still printed."""
    daemon.start()
    try:
        yield daemon
    finally:
        try:
            daemon.stop(timeout=120)
        except subprocess.TimeoutExpired:
            daemon.process.kill()
            record("daemon_stop_failed", None, "", "the daemon did not stop within 120 s")


#: The measurements, by name, in the order a run makes them (--only picks some).
PHASES = ("api_calls_per_annex", "create_overhead_ratio", "cli_start", "concurrent_creates",
          "lease_enforcement", "daemon_overhead", "many_annexes", "big_annex",
          "daemon_memory_and_recovery")
ONLY: set[str] = set(PHASES)


def phase(measure: Callable[..., None], *args: Any) -> None:
    """Run one measurement (if it was asked for); a failure is recorded, and the others
    still run."""
    if measure.__name__ not in ONLY:
        return
    try:
        measure(*args)
    except Exception as error:  # report, don't lose the rest of the run
        record(f"{measure.__name__}_failed", None, "", " ".join(str(error).split())[:300])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for the test suite")
    parser.add_argument("--awscli", default=shutil.which("aws"), help="path of `aws`")
    parser.add_argument("--big", type=int, default=10000,
                        help="instances of the big annex (full run; default 10000)")
    parser.add_argument("--figures", default=compare.FIGURES,
                        help="the committed figures to compare with (default "
                             "docs/benchmarks.md; '' for none)")
    parser.add_argument("--only", default=",".join(PHASES),
                        help="these measurements only, comma-separated (default: all of "
                             f"{', '.join(PHASES)})")
    args = parser.parse_args()
    quick = args.quick
    ONLY.intersection_update(args.only.split(","))
    if unknown := set(args.only.split(",")) - set(PHASES):
        parser.error(f"--only: no measurement {', '.join(sorted(unknown))}")
    # Byte-compile the project first, as an installation is: where the environment says
    # PYTHONDONTWRITEBYTECODE, every command would otherwise compile its modules again.
    compileall.compile_dir(ROOT, quiet=1, rx=re.compile(r"/\.venv|/\.git"))
    workdir = tempfile.mkdtemp(prefix="annex-bench-")
    bench = Bench(workdir)
    try:
        with running(AnnexDaemon(bench.pool)):
            phase(api_calls_per_annex, bench, [1, 100])
            phase(create_overhead_ratio, bench, 3 if quick else 15)
            phase(cli_start, bench, 3 if quick else 10, args.awscli)
            phase(concurrent_creates, bench, 10 if quick else 100)
            phase(lease_enforcement, bench, [1, 100] if quick else [1, 100, 1000])
            phase(daemon_overhead, bench, 5 if quick else 30)
            bench.reset()
            phase(many_annexes, bench, (1, 20) if quick else (1, 100, 200),
                  (10, 30) if quick else (10, 1000), 5 if quick else 30)
            bench.reset()
            # -status of 10,000 instances is minutes of moto's serialising (AWS: seconds):
            # the full run counts that create's calls; the quick run also a status's.
            phase(big_annex, bench, 200 if quick else args.big, quick)
        phase(daemon_memory_and_recovery, bench, 100 if quick else 1000)
    finally:
        bench.close()
        shutil.rmtree(workdir, ignore_errors=True)
    width = max(len(r["metric"]) for r in RESULTS)
    for r in RESULTS:
        print(f"{r['metric']:<{width}}  {str(r['value']):>10} {r['unit']:<10} {r['note']}")
    if args.figures:
        mode = "quick" if quick else "full"
        figures = compare.committed(mode, args.figures)
        if figures is None:
            print(f"\n{args.figures} has no committed {mode} run to compare with")
        else:
            now = {r["metric"]: (r["value"], r["unit"]) for r in RESULTS}
            print("\n" + compare.report(
                compare.moved(compare.figures_of(figures), now, partial=ONLY != set(PHASES)),
                f"the committed {mode} run ({figures['when']})"))
    return 1 if any(r["metric"].endswith("_failed") for r in RESULTS) else 0


if __name__ == "__main__":
    sys.exit(main())
