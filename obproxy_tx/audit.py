"""
What happens to every request relayed to a server, once it is answered:
counted by command and timed (L{RequestStats<obproxy_tx.session.stats.RequestStats>},
read by the Prometheus metrics), and written to the slow-query log and the
audit log when those are on.

Both logs are off by default (C{slow_query_log_file}, C{audit_log_file} empty)
and write one JSON object a line, so that they can be read by the tools that
read JSON logs. A line says who (C{user}, the client's address, C{cs_id}), ran
what (the command, the statement text with passwords replaced by C{***}), where
(the server and C{ss_id}), when (C{time}, seconds since the epoch, at the end of
the answer), how long (C{seconds}) and how it ended (C{ok} or C{error}). The
slow-query log gets the requests taking at least C{slow_query_time_threshold};
the audit log all of them.

The files rotate with C{twisted.python.logfile.LogFile}: at
C{query_log_rotate_size} bytes the file becomes C{file.1} (the older ones
C{file.2}, ...), and C{query_log_max_files} of them are kept. Lines are
written synchronously, as twistd writes its own log, so each is in the file
when the request's answer reaches the client.

Which requests: those the proxy relays to a server and that end with an
answer (C{COM_QUERY}, C{COM_STMT_*}, ...). Commands the proxy answers itself
(admin commands, C{COM_PING}) and requests lost with their server session are
not in these logs (the twistd log reports the losses).
"""

from __future__ import annotations

import json
import os
import re
import time
from bisect import bisect_left
from typing import Any, Callable, Dict

from twisted.python.logfile import LogFile

from obproxy_tx.logs import Logger
from obproxy_tx.session.stats import LATENCY_BUCKETS, RequestStats, command_name

__all__ = ["QueryLog", "RequestLog", "redact_statement"]

_log = Logger()

# Password literals a statement may carry: IDENTIFIED BY 'x', PASSWORD('x'),
# SET PASSWORD ... = 'x', MASTER_PASSWORD = 'x', IDENTIFIED ... AS 'hash'.
_QUOTED = r"(?:'(?:[^'\\]|\\.|'')*'|\"(?:[^\"\\]|\\.|\"\")*\")"
_SECRETS = re.compile(
    r"(?P<lead>\bIDENTIFIED\s+(?:WITH\s+\S+\s+)?(?:BY|AS)\s+(?:PASSWORD\s*\(?\s*)?"
    r"|\bPASSWORD\s*\(\s*"
    r"|\bSET\s+PASSWORD\b[^=]*=\s*(?:PASSWORD\s*\(\s*)?"
    r"|\b(?:MASTER_PASSWORD|PASSWORD)\s*=\s*)" + _QUOTED,
    re.IGNORECASE,
)


def redact_statement(text: str) -> str:
    """
    The statement with every password literal replaced by C{'***'}, so that
    a log line never holds a password (C{CREATE USER ... IDENTIFIED BY 'x'},
    C{SET PASSWORD = PASSWORD('x')}, C{CHANGE MASTER TO MASTER_PASSWORD='x'}).

    @param text: the statement.
    @return: the statement to log.
    """
    if "'" not in text and '"' not in text:
        return text
    return _SECRETS.sub(lambda found: found.group("lead") + "'***'", text)


class QueryLog:
    """
    One JSON-lines file that rotates (the slow-query or the audit log).

    @ivar path: the file, as configured.
    """

    def __init__(self, path: str, rotate_size: int, max_files: int) -> None:
        """
        @param path: the file (relative: to the working directory).
        @param rotate_size: bytes at which the file is rotated.
        @param max_files: rotated files kept (0: all).
        @raise OSError: the file cannot be opened.
        """
        self.path = path
        full = os.path.abspath(path)
        self._file = LogFile(
            os.path.basename(full),
            os.path.dirname(full),
            rotateLength=rotate_size,
            maxRotatedFiles=max_files or None,
        )

    def write(self, record: Dict[str, Any]) -> None:
        """
        Append one line.

        @param record: the line's fields (JSON-serialisable).
        """
        self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._file.flush()

    def close(self) -> None:
        """
        Close the file.
        """
        self._file.close()


def _open(path: str, rotate_size: int, max_files: int, what: str) -> QueryLog | None:
    if not path:
        return None
    try:
        return QueryLog(path, rotate_size, max_files)
    except OSError as e:
        # The proxy goes on without that log: one line says why.
        _log.error("cannot open the {what} {path}: {error}", what=what, path=path, error=e)
        return None


class RequestLog:
    """
    Hears of every request answered by a server (L{finished}, one call from
    the client session) and counts, times and logs it.

    @ivar stats: the requests by command (read by L{obproxy_tx.metrics}).
    @ivar slow: the slow-query log while one is configured.
    @ivar audit: the audit log while one is configured.
    """

    def __init__(self, config: Callable[[], Any], seconds: Callable[[], float]) -> None:
        """
        @param config: returns the current configuration (the items are read
            again whenever it is replaced, e.g. by C{ALTER PROXYCONFIG}).
        @param seconds: the reactor's clock (C{reactor.seconds}).
        """
        self.stats = RequestStats()
        self._entries = self.stats.by_class
        self.slow: QueryLog | None = None
        self.audit: QueryLog | None = None
        self._config = config
        self._seconds = seconds
        self._followed: Any = None
        self._threshold = 0.0
        self._files: tuple[Any, ...] = ()

    def _follow(self, config: Any) -> None:
        """
        Open, keep or close the logs for a new configuration.
        """
        self._followed = config
        self._threshold = float(config.slow_query_time_threshold)
        files = (
            config.slow_query_log_file,
            config.audit_log_file,
            config.query_log_rotate_size,
            config.query_log_max_files,
        )
        if files == self._files:
            return
        self.close()
        self._followed = config
        self._files = files
        size, kept = config.query_log_rotate_size, config.query_log_max_files
        self.slow = _open(config.slow_query_log_file, size, kept, "slow-query log")
        self.audit = _open(config.audit_log_file, size, kept, "audit log")

    def finished(self, session: Any, ss: Any, command: Any, failed: bool) -> None:
        """
        A request of C{session} got its whole answer from C{ss}.

        @param session: the client session (its C{last_command_at} is when
            the proxy read the request).
        @param ss: the server session that answered.
        @param command: the request.
        @param failed: whether the answer was an error.
        """
        # Per request (the hot path): what RequestStats.add does, inlined.
        seconds = self._seconds() - session.last_command_at
        entry = self._entries.get(command.__class__)
        if entry is None:
            entry = self.stats.entry_for(command.__class__)
        entry[0] += 1
        if failed:
            entry[1] += 1
        entry[2] += seconds
        entry[3 + bisect_left(LATENCY_BUCKETS, seconds)] += 1
        config = self._config()
        if config is not self._followed:
            self._follow(config)
        slow = self.slow if seconds >= self._threshold else None
        if slow is None and self.audit is None:
            return
        record = _record(session, ss, command, failed, seconds)
        if slow is not None:
            slow.write(record)
        if self.audit is not None:
            self.audit.write(record)

    def close(self) -> None:
        """
        Close the log files (the proxy stops, or they changed).
        """
        for log in (self.slow, self.audit):
            if log is not None:
                log.close()
        self.slow = self.audit = None
        # Opened again, as configured, at the next request.
        self._followed = None
        self._files = ()


def _record(session: Any, ss: Any, command: Any, failed: bool, seconds: float) -> Dict[str, Any]:
    login = session.login
    query = getattr(command, "query", None)
    if query is None:
        # COM_STMT_EXECUTE and its kin: the prepared statement's text (the
        # command sent holds the server's statement id).
        statement_id = getattr(command, "statement_id", None)
        statement = None
        if statement_id is not None:
            for client_id, known_as in ss.statements.items():
                if known_as == statement_id:
                    statement = session.statements.get(client_id)
                    break
        query = getattr(statement, "sql", None)
    text = None
    if query is not None:
        text = redact_statement(
            query.decode("utf-8", "replace") if isinstance(query, bytes) else str(query)
        )
    return {
        "time": round(time.time(), 6),
        "cs_id": session.cs_id,
        "user": login.full_name if login is not None else None,
        "client": f"{session.peer}:{session.peer_port}",
        "database": session.state.database,
        "server": ss.server.address,
        "ss_id": ss.ss_id,
        "command": command_name(command.__class__),
        "statement": text,
        "seconds": round(seconds, 6),
        "result": "error" if failed else "ok",
    }
