"""
Golden packets: exact bytes recorded from real servers, for codec tests.

C{tests/golden/<server>/<name>.hex} files are written by C{python -m tests.golden.capture} (see
there for what each file holds).  Format: lines starting with C{#} are comments (the first ones
name the server, its version, the statement and the capabilities the client sent; C{# key: value}
lines become L{GoldenFile.meta}); every other non-blank line is one packet:

    <direction> <sequence id> <payload in hex>

where direction is C{<} for server to client and C{>} for client to server, and the payload is
the packet's payload without the 4-byte header (multi-chunk packets never occur here).

Use L{load} (or L{available}) from tests::

    golden = load("mariadb", "ok_after_login")
    (packet,) = golden.server_packets()
    OKPacket.decode(packet.payload, golden.capabilities)
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Tuple

import attrs

#: The directory holding the C{<server>/} folders.
GOLDEN_DIR = Path(__file__).resolve().parent

#: Servers with recorded files.
SERVERS = ("mariadb", "seekdb")


@attrs.frozen
class GoldenPacket:
    """
    One recorded packet.

    @ivar direction: C{"<"} from the server, C{">"} from the client.
    @ivar seq: its sequence id.
    @ivar payload: its payload (no header).
    """

    direction: str
    seq: int
    payload: bytes

    @property
    def frame(self) -> bytes:
        """
        The packet as it was on the wire: 3-byte length, sequence id, payload.
        """
        return len(self.payload).to_bytes(3, "little") + bytes([self.seq]) + self.payload


@attrs.frozen
class GoldenFile:
    """
    A recorded exchange.

    @ivar server: the server folder (C{"mariadb"} or C{"seekdb"}).
    @ivar name: the file name without C{.hex}.
    @ivar meta: the C{# key: value} comment lines (C{server}, C{version}, C{what},
        C{client_capabilities}, ...).
    @ivar packets: every packet in order.
    """

    server: str
    name: str
    meta: Dict[str, str]
    packets: Tuple[GoldenPacket, ...]

    @property
    def capabilities(self) -> int:
        """
        The capability flags the client sent in its handshake response (what the server saw).
        """
        return int(self.meta.get("client_capabilities", "0"), 16)

    @property
    def server_capabilities(self) -> int:
        """
        The capability flags the server offered in its handshake.
        """
        return int(self.meta.get("server_capabilities", "0"), 16)

    def server_packets(self) -> List[GoldenPacket]:
        """
        The packets the server sent, in order.
        """
        return [p for p in self.packets if p.direction == "<"]

    def client_packets(self) -> List[GoldenPacket]:
        """
        The packets the client (the capture script) sent, in order.
        """
        return [p for p in self.packets if p.direction == ">"]

    def wire_bytes(self, direction: str = "<") -> bytes:
        """
        The framed bytes of every packet in one direction, concatenated.
        """
        return b"".join(p.frame for p in self.packets if p.direction == direction)


def parse(text: str, server: str = "", name: str = "") -> GoldenFile:
    """
    Parse the text of a C{.hex} file.

    @raise ValueError: on a malformed line.
    """
    meta: Dict[str, str] = {}
    packets: List[GoldenPacket] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            key, sep, value = line[1:].strip().partition(": ")
            if sep and key and " " not in key:
                meta.setdefault(key, value)
            continue
        parts = line.split()
        if len(parts) not in (2, 3) or parts[0] not in ("<", ">"):
            raise ValueError(f"{server}/{name}.hex line {number}: cannot parse {line[:40]!r}")
        payload = bytes.fromhex(parts[2]) if len(parts) == 3 else b""
        packets.append(GoldenPacket(parts[0], int(parts[1]), payload))
    return GoldenFile(server, name, meta, tuple(packets))


def load(server: str, name: str) -> GoldenFile:
    """
    Load C{tests/golden/<server>/<name>.hex}.

    @raise FileNotFoundError: if it was not recorded.
    """
    path = GOLDEN_DIR / server / f"{name}.hex"
    return parse(path.read_text(), server, name)


def available(server: str) -> List[str]:
    """
    The names recorded for C{server}, sorted.
    """
    return sorted(p.stem for p in (GOLDEN_DIR / server).glob("*.hex"))
