"""
A worker process, as the parent (L{obproxy_tx.cluster.supervisor}) starts
it: C{python -c "from obproxy_tx.cluster.worker import main; main()"} with

  - fd 0: the worker's spec (a pickled dict: the configuration, the worker's
    number, the listening socket's address family), then end of file;
  - fd 1: where the worker writes its log events, one JSON object per line,
    which the parent logs through C{twistd}'s log with the worker's number;
  - fd 2: anything else the process prints (a crash before logging starts),
    which the parent logs as warnings;
  - fd 3 (L{LISTEN_FD}): the SQL port's listening socket, owned by the
    parent, from which every worker accepts;
  - fd 4 (L{LINK_FD}): this worker's end of a UNIX socket pair to the parent,
    the channel (L{obproxy_tx.cluster.protocol}) over which the parent asks
    about this worker's sessions and this worker about everyone's.

The worker serves clients exactly as a one-process proxy does, with its own
L{SessionManager<obproxy_tx.session.manager.SessionManager>} whose C{cs_id}s
carry the worker's number. It stops on C{SIGTERM} or C{SIGINT}: it stops
accepting and drains its sessions (L{obproxy_tx.session.drain}; a second
such signal closes them at once); and by
itself when the parent goes away (the link closes). On C{SIGHUP}, which the
parent forwards, it reads the configuration again as the parent did at start
(the spec's C{config_source}, L{obproxy_tx.reload}) and applies it to its
session manager. The parent starts it with C{SIGHUP} blocked; it unblocks it
once it handles it.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import socket
import sys
import threading
from typing import IO, Any, Dict

from twisted.internet import defer
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import (
    ILogObserver,
    Logger,
    formatEvent,
    globalLogBeginner,
)
from zope.interface import implementer

__all__ = ["LINK_FD", "LISTEN_FD", "ParentLogObserver", "adopt_listening", "main", "run"]

LISTEN_FD = 3
LINK_FD = 4

_log = Logger()


@implementer(ILogObserver)
class ParentLogObserver:
    """
    Writes each log event as one JSON line (level, namespace, text with any
    traceback) for the parent to log: the parent's log (C{twistd}'s) is the
    one place an operator reads.
    """

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def __call__(self, event: Dict[str, Any]) -> None:
        """
        Write one event.
        """
        text = formatEvent(event)
        failure = event.get("log_failure")
        if failure is not None:
            try:
                text = f"{text}\n{failure.getTraceback()}"
            except Exception:  # noqa: BLE001 (a log line must never fail)
                text = f"{text}\n{failure!r}"
        level = event.get("log_level")
        record = {
            "level": getattr(level, "name", "info"),
            "namespace": str(event.get("log_namespace", "")),
            "text": text,
        }
        line = json.dumps(record) + "\n"
        with self._lock:
            try:
                self._stream.write(line)
                self._stream.flush()
            except (OSError, ValueError):
                pass  # the parent is gone; the link's loss stops this worker


def _fair(port_class: type) -> type:
    """
    A subclass of a listening port class that accepts one connection per
    readiness event. Every worker is woken for each new connection on the
    shared socket; Twisted's own port would accept up to a hundred at once,
    so a burst of connections (a benchmark's threads starting together)
    would all land on the first worker to wake.
    """

    class FairPort(port_class):
        @property
        def numberAccepts(self) -> int:  # noqa: N802 (Twisted's name)
            return 1

        @numberAccepts.setter
        def numberAccepts(self, value: int) -> None:  # noqa: N802
            pass

    FairPort.__name__ = f"Fair{port_class.__name__}"
    return FairPort


def adopt_listening(reactor: Any, fd: int, family: int, factory: Any) -> Any:
    """
    Accept connections from a listening socket the parent owns.

    @param fd: the socket (this process's copy; the caller closes it after).
    @param family: its address family.
    @param factory: the client-facing protocol factory.
    @return: the listening port.
    """
    os.set_blocking(fd, False)
    port = reactor.adoptStreamPort(fd, family, factory)
    port.__class__ = _fair(type(port))
    return port


class _Given(Factory):
    """Builds one given protocol (an adopted connection has exactly one)."""

    def __init__(self, protocol: Protocol) -> None:
        self._protocol = protocol

    def buildProtocol(self, addr: Any) -> Protocol:  # noqa: N802
        return self._protocol


def run(spec: Dict[str, Any], reactor: Any) -> None:
    """
    Serve as worker C{spec["worker"]} until stopped.

    @param spec: what the parent sent (see the module docstring).
    @param reactor: the reactor to run.
    """
    from obproxy_tx.cluster.local import LocalSessions
    from obproxy_tx.cluster.protocol import ChannelProtocol
    from obproxy_tx.cluster.router import WorkerView, call_timeout
    from obproxy_tx.session.manager import SessionManager

    config = spec["config"]
    worker = int(spec["worker"])
    manager = SessionManager(config, reactor, worker=worker)

    def parent_gone(protocol: Any) -> None:
        if reactor.running:
            _log.info("worker {worker}: the parent is gone; stopping", worker=worker)
            reactor.stop()

    link = ChannelProtocol(handler=LocalSessions(manager), on_lost=parent_gone)
    os.set_blocking(LINK_FD, False)
    reactor.adoptStreamConnection(LINK_FD, socket.AF_UNIX, _Given(link))
    os.close(LINK_FD)
    manager.cluster = WorkerView(link, reactor, call_timeout(config))
    port = adopt_listening(reactor, LISTEN_FD, int(spec["family"]), manager.listener_factory())
    os.close(LISTEN_FD)
    manager.startService()
    _handle_sighup(reactor, manager, spec.get("config_source"))

    def stop() -> Any:
        # Stop accepting (this process's copy of the socket only), then drain the sessions.
        stopping = defer.maybeDeferred(port.stopListening)
        draining = stopping.addBoth(lambda _: manager.stopService())
        _hurry_on_second_stop(reactor, manager)
        return draining

    reactor.addSystemEventTrigger("before", "shutdown", stop)
    _log.info(
        "worker {worker} (pid {pid}) accepting on {address}",
        worker=worker,
        pid=os.getpid(),
        address=port.getHost(),
    )
    reactor.run()


def _handle_sighup(reactor: Any, manager: Any, source: Any) -> None:
    """
    Reload the configuration into C{manager} on C{SIGHUP} (from C{source},
    a L{ConfigSource<obproxy_tx.reload.ConfigSource>}; without one, the
    signal is only logged), then let the signal in: one that came while the
    worker started was held (see the module docstring) and arrives now.
    """
    hup = getattr(signal, "SIGHUP", None)
    if hup is None:
        return

    def reload() -> None:
        if source is None:
            _log.warn("SIGHUP: no configuration source to read again; nothing changed")
            return
        from obproxy_tx.reload import reload_config

        reload_config(manager, source)

    def handler(signum: int, frame: Any) -> None:
        # Only hand over to the reactor here, as Twisted does with SIGTERM.
        reactor.callFromThread(reload)

    signal.signal(hup, handler)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {hup})


def _hurry_on_second_stop(reactor: Any, manager: Any) -> None:
    """
    While draining, a second C{SIGTERM} (the parent's, when it got a second
    stop signal itself) or C{SIGINT} closes every session at once.
    """

    def hurry() -> None:
        drain = getattr(manager, "drain", None)
        if drain is not None:
            drain.hurry()

    def handler(signum: int, frame: Any) -> None:
        reactor.callFromThread(hurry)

    for name in ("SIGTERM", "SIGINT"):
        number = getattr(signal, name, None)
        if number is not None:
            signal.signal(number, handler)


def main() -> None:
    """
    The worker process's entry point (see the module docstring).
    """
    with os.fdopen(0, "rb") as spec_file:
        spec = pickle.load(spec_file)  # noqa: S301 (from the parent, over a pipe only it holds)
    from obproxy_tx.reactor import install_default

    reactor = install_default()

    globalLogBeginner.beginLoggingTo(
        [ParentLogObserver(sys.stdout)], discardBuffer=True, redirectStandardIO=False
    )
    run(spec, reactor)
