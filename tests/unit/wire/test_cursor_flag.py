"""
SERVER_STATUS_CURSOR_EXISTS opens a cursor only for an execute that asked for one.

MariaDB sets the flag on the result sets a compound statement (C{BEGIN NOT ATOMIC ... OPEN cur1
... SELECT ... END}) sends through C{COM_STMT_EXECUTE} while its own SQL cursor is open; the rows
follow at once (seen with C{main.type_decimal --ps-protocol} through the proxy).
"""

from __future__ import annotations

import pytest

from obproxy_tx.testing import DEFAULT_CAPABILITIES
from obproxy_tx.wire.connection import Phase
from obproxy_tx.wire.constants import Capability, ColumnType, ServerStatus
from obproxy_tx.wire.packets import BinaryRow, ColumnCount, ComStmtExecute, EOFPacket, OKPacket
from tests.unit.wire.test_connection import AUTOCOMMIT, DEPRECATE, MORE, C, S, column, logged_in
from tests.unit.wire.test_connection import prepared as prepare


@pytest.mark.parametrize("capabilities", [DEFAULT_CAPABILITIES, DEPRECATE])
def test_cursor_flag_without_cursor_request_streams_rows(capabilities: Capability) -> None:
    """An execute without cursor flags reads the rows and more results despite the flag."""
    pair = logged_in(capabilities)
    prepare(pair, params=0)
    pair.send(C, ComStmtExecute(1))
    flagged = AUTOCOMMIT | ServerStatus.SERVER_STATUS_CURSOR_EXISTS
    for _ in range(2):
        pair.send(S, ColumnCount(1), column(b"a", ColumnType.MYSQL_TYPE_LONGLONG))
        pair.send(S, EOFPacket(status_flags=flagged))  # omitted on the wire under DEPRECATE_EOF
        assert pair.phase() is Phase.RESULT_ROWS
        assert len(pair.send(S, BinaryRow((1,)))) == 1
        pair.send(S, pair.server.end_of_rows(flagged | MORE))
        assert pair.phase() is Phase.RESULT_PENDING
    pair.send(S, OKPacket(status_flags=AUTOCOMMIT))
    assert pair.phase() is Phase.COMMAND_IDLE
