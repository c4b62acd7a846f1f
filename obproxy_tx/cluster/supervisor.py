"""
The parent process of a proxy with several workers (C{work_thread_num} > 1).

C{twistd obproxy} then listens on the SQL port itself but never accepts: the
L{WorkerSupervisor} hands the listening socket to N worker processes
(L{obproxy_tx.cluster.worker}), which all accept from it. Why a shared socket
rather than C{SO_REUSEPORT} (one socket per worker, bound to the same port):

  - the parent owns the port for the proxy's whole life, so a listen error
    (port taken, address not local) stops start-up once, with the usual
    one-line message, and C{listen_port: 0} means one port for all workers;
  - connections waiting in the accept queue survive a worker's crash: with
    C{SO_REUSEPORT} the kernel drops those queued on the dead worker's socket;
  - it works for UNIX socket listen endpoints too, and Twisted supports it
    directly (C{spawnProcess(childFDs=...)} and C{adoptStreamPort}).

Its cost is that every worker is woken for each connection; a worker accepts
one connection per wake-up, so that bursts spread over the workers.

The supervisor also:

  - restarts a worker that dies (after a delay growing with quick deaths);
  - relays the workers' log events into C{twistd}'s log, labelled with the
    worker's number;
  - is the hub of the channel: each worker has a socket pair to it, over
    which the parent's L{Router} asks workers about their sessions and
    workers ask the router about everyone's, peers included;
  - keeps the configuration current with C{ALTER PROXYCONFIG}, for workers
    it restarts;
  - stops the workers (C{SIGTERM}, then C{SIGKILL} after a grace period)
    when the proxy stops: each worker drains its sessions first
    (L{obproxy_tx.session.drain}), so the grace period is
    C{graceful_shutdown_timeout} plus L{_STOP_MARGIN};
  - forwards a configuration reload (C{SIGHUP}, L{obproxy_tx.reload}) to
    every worker, which reads the configuration again the same way.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import signal
import socket
import sys
from functools import partial
from typing import Any, Dict, List

from twisted.application.service import Service
from twisted.internet import defer, error
from twisted.internet.protocol import Factory, ProcessProtocol, Protocol
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from obproxy_tx import logs
from obproxy_tx.cluster.protocol import SCOPE_WORKER, ChannelProtocol
from obproxy_tx.cluster.router import LinkMember, NodeRequests, PeerMember, Router, call_timeout
from obproxy_tx.cluster.worker import LINK_FD, LISTEN_FD
from obproxy_tx.config import ProxyConfig, set_item
from obproxy_tx.reload import ConfigSource

__all__ = ["WorkerSupervisor"]

_RESTART_DELAY = 0.5
"""Seconds before restarting a worker that died after running a while."""
_MAX_RESTART_DELAY = 30.0
"""The longest wait between restarts of a worker that keeps dying at once."""
_QUICK_DEATH = 10.0
"""A worker that dies sooner than this after starting doubles its next delay."""
_STOP_MARGIN = 10.0
"""Seconds a worker has after C{SIGTERM} beyond C{graceful_shutdown_timeout}
(its drain's deadline) to close its sessions and exit, before C{SIGKILL}."""


def stop_grace(config: ProxyConfig) -> float:
    """
    How long a stopping worker may take after C{SIGTERM} before C{SIGKILL}:
    its drain (C{graceful_shutdown_timeout}) plus L{_STOP_MARGIN}.
    """
    return float(config.graceful_shutdown_timeout) + _STOP_MARGIN


_WORKER_CODE = "from obproxy_tx.cluster.worker import main; main()"
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class _Given(Factory):
    def __init__(self, protocol: Protocol) -> None:
        self._protocol = protocol

    def buildProtocol(self, addr: Any) -> Protocol:  # noqa: N802
        return self._protocol


class _NeverServed(Factory):
    """
    The parent's factory for the SQL port: the parent stops reading the port
    as soon as it listens, so a connection never reaches it; should one
    arrive anyway, it is closed rather than served by a process without
    sessions.
    """

    noisy = False

    def buildProtocol(self, addr: Any) -> None:  # noqa: N802
        return None


class _WorkerProcess(ProcessProtocol):
    """
    One running worker process, as its parent sees it.
    """

    _log = Logger()

    def __init__(self, supervisor: WorkerSupervisor, worker: int, link: ChannelProtocol) -> None:
        self.supervisor = supervisor
        self.worker = worker
        self.link = link
        self.started = supervisor.reactor.seconds()
        self.ended: defer.Deferred[None] = defer.Deferred()
        self._out = b""
        self._err = b""

    @property
    def pid(self) -> int | None:
        """The process id (C{None} once it ended)."""
        transport = self.transport
        return getattr(transport, "pid", None) if transport is not None else None

    def childDataReceived(self, fd: int, data: bytes) -> None:  # noqa: N802
        """
        Log what the worker wrote: its log events (fd 1), or anything else
        (fd 2).
        """
        if fd == 1:
            self._out = self._lines(self._out + data, self._event)
        elif fd == 2:
            self._err = self._lines(self._err + data, self._stderr)

    @staticmethod
    def _lines(buffered: bytes, each: Any) -> bytes:
        *lines, rest = buffered.split(b"\n")
        for line in lines:
            if line.strip():
                each(line)
        return rest

    def _event(self, line: bytes) -> None:
        try:
            record = json.loads(line)
            level = LogLevel.levelWithName(str(record.get("level", "info")))
            text = str(record["text"])
            namespace = str(record.get("namespace", ""))
        except (ValueError, KeyError, TypeError, AttributeError):
            self._stderr(line)
            return
        self.supervisor._log.emit(
            level,
            "{text}",
            text=text,
            log_system=f"worker {self.worker}: {namespace}#{level.name}",
        )

    def _stderr(self, line: bytes) -> None:
        self._log.warn(
            "worker {worker}: {line}",
            worker=self.worker,
            line=line.decode("utf-8", "replace"),
            log_system=f"worker {self.worker}",
        )

    def processEnded(self, reason: Failure) -> None:  # noqa: N802
        """
        Tell the supervisor (which restarts the worker unless stopping).
        """
        for buffered, each in ((self._out, self._event), (self._err, self._stderr)):
            if buffered.strip():
                each(buffered)
        self._out = self._err = b""
        self.supervisor._ended(self, reason)
        self.ended.callback(None)


class WorkerSupervisor(Service):
    """
    Starts, watches and stops the worker processes, and routes the channel
    between them and the peer nodes (see the module docstring).

    It takes the session manager's place in the
    L{ProxyService<obproxy_tx.tap.ProxyService>}: it starts once the SQL port
    listens (C{when_listening} of its parent service).

    @ivar config: the configuration, kept current with C{ALTER PROXYCONFIG}
        (restarted workers get this one).
    @ivar count: how many workers.
    @ivar router: the hub of the channel.
    @ivar processes: the running workers, by number.
    """

    _log = Logger()

    def __init__(
        self,
        config: ProxyConfig,
        reactor: Any,
        peers: List[PeerMember] | None = None,
        executable: str | None = None,
        *,
        config_source: ConfigSource | None = None,
    ) -> None:
        """
        @param config: the configuration (C{work_thread_num} workers).
        @param reactor: the reactor to spawn and listen with.
        @param peers: the other proxy nodes.
        @param executable: the interpreter workers run on (this one by default).
        @param config_source: where the configuration came from, for workers
            to read it again on C{SIGHUP} (L{obproxy_tx.reload}).
        """
        self.setName("workers")
        self.config = config
        self.reactor = reactor
        self.count = config.work_thread_num
        self.processes: Dict[int, _WorkerProcess] = {}
        self._links: Dict[int, ChannelProtocol] = {}
        self._executable = executable or sys.executable
        timeout = call_timeout(config)
        members = [
            LinkMember(f"worker {k}", partial(self._link, k), SCOPE_WORKER, reactor, timeout)
            for k in range(self.count)
        ]
        self.router = Router(config, members, peers or [], on_config=self._config_changed)
        self._port: Any = None
        self._family = socket.AF_INET
        self._stopping = False
        self._restarts: Dict[int, Any] = {}
        self._delays: Dict[int, float] = {}
        self.config_source = config_source

    def listener_factory(self) -> Factory:
        """
        The factory the parent listens with: never used (see L{_NeverServed}).
        """
        return _NeverServed()

    def _link(self, worker: int) -> defer.Deferred[ChannelProtocol]:
        link = self._links.get(worker)
        if link is None:
            return defer.fail(error.ConnectionClosed(f"worker {worker} is not running"))
        return defer.succeed(link)

    def _config_changed(self, name: str, text: str) -> None:
        self.config = set_item(self.config, name, text, origin="ALTER PROXYCONFIG")

    def reconfigure(self, new_config: ProxyConfig) -> None:
        """
        Run with C{new_config} from now on (a C{SIGHUP} reload in the parent,
        L{obproxy_tx.reload}): workers started later get it, and every running
        worker is sent C{SIGHUP} to read the configuration again itself (each
        applies it to its own session manager, keeping its sessions).

        @param new_config: the checked configuration, restart-only items as running.
        """
        self.config = new_config
        # The parent's own log level (its log is where the workers' lines go too).
        logs.apply_config(new_config)
        for process in list(self.processes.values()):
            _signal(process, "HUP")

    # -- service --------------------------------------------------------------------------

    def startService(self) -> None:  # noqa: N802
        """
        Start the workers once the parent service listens.
        """
        super().startService()
        self._stopping = False
        waiting = self.parent.when_listening()  # type: ignore[union-attr]
        # A listen error is the parent service's to report.
        waiting.addCallbacks(self._listening, lambda failure: None)

    def _listening(self, port: Any) -> None:
        if self._stopping:
            return
        if not isinstance(port.factory, _NeverServed):
            # A wrapping endpoint (TLS): the workers would adopt the bare
            # socket and serve clients without it. tap refuses these first.
            self._log.error(
                "{endpoint!r} cannot be shared with worker processes; no worker started",
                endpoint=self.config.listen_endpoint,
            )
            return
        # The parent keeps the socket open for the workers but never accepts.
        port.stopReading()
        self._port = port
        self._family = getattr(port, "addressFamily", socket.AF_INET)
        for worker in range(self.count):
            self._spawn(worker)

    def _spawn(self, worker: int) -> None:
        self._restarts.pop(worker, None)
        if self._stopping or self._port is None:
            return
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        # The worker is born with SIGHUP blocked (a spawned process inherits the
        # signal mask) and unblocks it once it handles it: a reload forwarded
        # while it starts waits for it instead of killing it (SIGHUP's default).
        blocked = _block_sighup()
        try:
            ours.setblocking(False)
            link = ChannelProtocol(
                handler=NodeRequests(self.router, worker),
                on_lost=partial(self._link_lost, worker),
            )
            self.reactor.adoptStreamConnection(ours.fileno(), socket.AF_UNIX, _Given(link))
            process = _WorkerProcess(self, worker, link)
            env = dict(os.environ)
            # The workers import this very package, wherever it was found.
            env["PYTHONPATH"] = os.pathsep.join(
                filter(None, [_PACKAGE_ROOT, env.get("PYTHONPATH")])
            )
            self.reactor.spawnProcess(
                process,
                self._executable,
                [self._executable, "-c", _WORKER_CODE],
                env=env,
                childFDs={
                    0: "w",
                    1: "r",
                    2: "r",
                    LISTEN_FD: self._port.fileno(),
                    LINK_FD: theirs.fileno(),
                },
            )
        finally:
            _unblock_sighup(blocked)
            ours.close()
            theirs.close()
        self._links[worker] = link
        self.processes[worker] = process
        spec = {
            "config": self.config,
            "worker": worker,
            "family": int(self._family),
            "config_source": self.config_source,
        }
        transport: Any = process.transport
        transport.write(pickle.dumps(spec))
        transport.closeStdin()
        self._log.info("worker {worker} started (pid {pid})", worker=worker, pid=process.pid)

    def _link_lost(self, worker: int, link: ChannelProtocol) -> None:
        if self._links.get(worker) is link:
            del self._links[worker]

    def _ended(self, process: _WorkerProcess, reason: Failure) -> None:
        worker = process.worker
        if self.processes.get(worker) is process:
            del self.processes[worker]
        link = process.link
        if link.transport is not None:
            link.transport.loseConnection()
        if self._stopping:
            self._log.info("worker {worker} stopped: {reason}", worker=worker, reason=_exit(reason))
            return
        lived = self.reactor.seconds() - process.started
        delay = self._delays.get(worker, _RESTART_DELAY)
        delay = min(delay * 2, _MAX_RESTART_DELAY) if lived < _QUICK_DEATH else _RESTART_DELAY
        self._delays[worker] = delay
        self._log.error(
            "worker {worker} died after {lived:.1f}s: {reason}; restarting it in {delay}s",
            worker=worker,
            lived=lived,
            reason=_exit(reason),
            delay=delay,
        )
        self._restarts[worker] = self.reactor.callLater(delay, self._spawn, worker)

    def stopService(self) -> defer.Deferred[None]:  # noqa: N802
        """
        Stop every worker: C{SIGTERM} (a worker stops accepting, drains its
        sessions and exits), then C{SIGKILL} for any still running after
        L{stop_grace}.
        """
        super().stopService()
        self._stopping = True
        for call in self._restarts.values():
            if call.active():
                call.cancel()
        self._restarts.clear()
        self.router.close()
        waiting = []
        for process in list(self.processes.values()):
            waiting.append(process.ended)
            _signal(process, "TERM")
        if not waiting:
            return defer.succeed(None)
        killer = self.reactor.callLater(stop_grace(self.config), self._kill_all)
        done = defer.DeferredList(waiting)

        def finished(_: object) -> None:
            if killer.active():
                killer.cancel()

        return done.addCallback(finished)

    def hurry(self) -> None:
        """
        Tell every stopping worker to close its sessions now (a second stop
        signal to the parent): a second C{SIGTERM}, which a draining worker
        takes so.
        """
        if not self._stopping:
            return
        for process in list(self.processes.values()):
            _signal(process, "TERM")

    def _kill_all(self) -> None:
        for process in list(self.processes.values()):
            self._log.warn(
                "worker {worker} did not stop in {grace}s: killing it",
                worker=process.worker,
                grace=stop_grace(self.config),
            )
            _signal(process, "KILL")


def _block_sighup() -> bool:
    """
    Block C{SIGHUP} in this thread, if it can be.

    @return: whether it was blocked here (to unblock it again).
    """
    hup = getattr(signal, "SIGHUP", None)
    if hup is None or not hasattr(signal, "pthread_sigmask"):
        return False
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {hup})
    return hup not in previous


def _unblock_sighup(blocked: bool) -> None:
    if blocked:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})


def _signal(process: _WorkerProcess, name: str) -> None:
    transport: Any = process.transport
    with contextlib.suppress(error.ProcessExitedAlready):
        transport.signalProcess(name)


def _exit(reason: Failure) -> str:
    value = reason.value
    status = getattr(value, "exitCode", None)
    signal = getattr(value, "signal", None)
    if signal is not None:
        return f"killed by signal {signal}"
    if status is not None:
        return f"exit status {status}"
    return reason.getErrorMessage()
