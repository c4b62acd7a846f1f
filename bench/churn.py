"""
Connection churn: connect, C{SELECT 1}, quit, as fast as K client processes
can, straight to the database and through the proxy, in the same run.

    python bench/churn.py [--backends mariadb,seekdb] [--clients 4] [--seconds 5]
                          [--rounds 2] [--targets direct,proxy] [--python EXE]
                          [-o NAME=VALUE ...]

It starts the servers with the test bed (C{OBPROXY_TESTBED_DIR}, default
C{/tmp/tb-p4}) and the proxy as C{twistd -n obproxy -c <conf>} in its own
process (C{PYTHONPATH} = the checkout; C{-o} items go to its command line,
e.g. C{-o enable_session_pool_for_no_sharding=false} for the proxy without
its server session pool). Each client process loops over: TCP connect, read
the greeting, log in with C{mysql_native_password}, C{SELECT 1}, C{COM_QUIT},
close (the test bed's tiny blocking client, so the client's own CPU is small).
Targets alternate within each round so machine drift hits all alike.

It prints, per backend and target: connections per second, the proxy's and
the database's CPU microseconds per connection (utime + stime from
C{/proc/<pid>/stat}, the figure that holds on a small shared machine), and the
rate's ratio to the direct one. The numbers are printed, never asserted.
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

ROOT = Path(__file__).resolve().parent.parent
RUN_TWISTD = "import sys; sys.argv[0] = 'twistd'; from twisted.scripts.twistd import run; run()"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

sys.path.insert(0, str(ROOT))


def cpu_seconds(pid: int) -> float:
    """
    User + system CPU seconds of one process (its reaped children included).
    """
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / CLOCK_TICKS


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def verifier(password: str) -> str:
    if not password:
        return ""
    return "*" + hashlib.sha1(hashlib.sha1(password.encode()).digest()).hexdigest().upper()


def wait_for_port(process: subprocess.Popen[bytes], port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the proxy exited with status {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"the proxy did not listen on port {port} in {timeout}s")


class Proxy:
    """
    C{twistd -n obproxy} in its own process in front of one server.
    """

    def __init__(
        self, python: str, server: Any, workdir: Path, options: List[str], name: str
    ) -> None:
        self.port = free_port()
        native = server.accounts["native"]
        kind = "oceanbase" if server.kind.startswith("seekdb") else "mysql"
        conf = workdir / f"{name}.yaml"
        conf.write_text(
            f"""
listen_port: {self.port}
local_bound_ip: 127.0.0.1
clusters:
  - name: churn
    type: {kind}
    servers: ["{server.host}:{server.port}"]
    users:
      - {{name: {native.user}, tenant: sys, verifier: '{verifier(native.password)}'}}
"""
        )
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        command = [python, "-c", RUN_TWISTD, "-n", "--pidfile=", "-l", str(workdir / f"{name}.log")]
        command += ["obproxy", "-c", str(conf)]
        for option in options:
            command += ["-o", option]
        self.process = subprocess.Popen(
            command,
            cwd=str(workdir),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(workdir / f"{name}.err", "w"),  # noqa: SIM115
        )
        wait_for_port(self.process, self.port)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _client(
    host: str, port: int, user: str, password: str, database: str, stop_at: float, out: Any
) -> None:
    """
    One client process: connect / SELECT 1 / quit until C{stop_at}; sends its count to C{out}.
    """
    from tests.testbed.wireclient import connect

    done = failed = 0
    while time.time() < stop_at:
        try:
            client = connect(host, port, timeout=10)
            try:
                client.login(user, password, database)
                client.query("SELECT 1")
            finally:
                client.close()
            done += 1
        except Exception:
            failed += 1
            time.sleep(0.01)
    out.send((done, failed))
    out.close()


def run_load(
    target: Tuple[str, int], account: Tuple[str, str, str], clients: int, seconds: float
) -> Tuple[int, int, float]:
    """
    Churn against C{target} from C{clients} processes for C{seconds}.

    @return: (connections made, failures, elapsed seconds).
    """
    context = multiprocessing.get_context("fork")
    start = time.time() + 0.2
    stop_at = start + seconds
    pipes = []
    processes = []
    for _ in range(clients):
        parent, child = context.Pipe(duplex=False)
        process = context.Process(
            target=_client, args=(target[0], target[1], *account, stop_at, child)
        )
        process.start()
        child.close()
        pipes.append(parent)
        processes.append(process)
    done = failed = 0
    for pipe in pipes:
        made, lost = pipe.recv()
        done += made
        failed += lost
    for process in processes:
        process.join()
    return done, failed, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="mariadb,seekdb")
    parser.add_argument("--clients", type=int, default=4, help="client processes")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--targets", default="direct,proxy")
    parser.add_argument("--python", default=sys.executable, help="interpreter for the proxy")
    parser.add_argument("--keep", action="store_true", help="keep the proxies' logs")
    parser.add_argument(
        "-o", dest="options", action="append", default=[], help="proxy config item NAME=VALUE"
    )
    args = parser.parse_args()
    os.environ.setdefault("OBPROXY_TESTBED_DIR", "/tmp/tb-p4")
    from tests.testbed import start

    targets = args.targets.split(",")
    workdir = Path(tempfile.mkdtemp(prefix="churn-"))
    results: Dict[Tuple[str, str], List[Tuple[int, int, float, float, float]]] = {}
    proxies: Dict[str, Proxy] = {}
    try:
        servers = {kind: start(kind) for kind in args.backends.split(",")}
        for kind, server in servers.items():
            if "proxy" in targets:
                proxies[kind] = Proxy(args.python, server, workdir, args.options, f"proxy-{kind}")
        for _round in range(args.rounds):
            for kind, server in servers.items():
                native = server.accounts["native"]
                account = (native.user, native.password, server.database)
                for target in targets:
                    if target == "direct":
                        address = (server.host, server.port)
                        proxy_pid = None
                    else:
                        address = ("127.0.0.1", proxies[kind].port)
                        proxy_pid = proxies[kind].process.pid
                    db_before = cpu_seconds(server.pid)
                    proxy_before = cpu_seconds(proxy_pid) if proxy_pid else 0.0
                    done, failed, seconds = run_load(address, account, args.clients, args.seconds)
                    db_cpu = cpu_seconds(server.pid) - db_before
                    proxy_cpu = (cpu_seconds(proxy_pid) - proxy_before) if proxy_pid else 0.0
                    results.setdefault((kind, target), []).append(
                        (done, failed, seconds, proxy_cpu, db_cpu)
                    )
    finally:
        for proxy in proxies.values():
            proxy.stop()
    print(
        f"connection churn (connect, SELECT 1, quit), {args.clients} client processes, "
        f"{args.rounds} x {args.seconds:g}s"
    )
    header = (
        f"{'backend':<8} {'target':<7} {'conn/s':>8} {'vs direct':>9} {'proxy µs/conn':>14} "
        f"{'db µs/conn':>11} {'failed':>6}"
    )
    print(header)
    for kind in args.backends.split(","):
        direct_rate = None
        for target in targets:
            runs = results.get((kind, target), [])
            done = sum(r[0] for r in runs)
            failed = sum(r[1] for r in runs)
            seconds = sum(r[2] for r in runs)
            rate = done / seconds if seconds else 0.0
            if target == "direct":
                direct_rate = rate
            proxy_us = sum(r[3] for r in runs) / done * 1e6 if done else 0.0
            db_us = sum(r[4] for r in runs) / done * 1e6 if done else 0.0
            ratio = f"{rate / direct_rate:.2f}x" if direct_rate else "-"
            shown_proxy = f"{proxy_us:.0f}" if target != "direct" else "-"
            print(
                f"{kind:<8} {target:<7} {rate:>8.0f} {ratio:>9} {shown_proxy:>14} "
                f"{db_us:>11.0f} {failed:>6}"
            )
    if args.keep:
        print(f"logs in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
