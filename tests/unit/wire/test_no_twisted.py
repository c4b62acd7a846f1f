"""
The sans-IO codec must work without Twisted (rule 1 of the house style).
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys
import textwrap
from pathlib import Path

import obproxy_tx.wire

ROOT = Path(__file__).resolve().parents[3]


def _wire_modules() -> list[str]:
    return sorted(
        f"obproxy_tx.wire.{info.name}" for info in pkgutil.iter_modules(obproxy_tx.wire.__path__)
    )


def test_wire_modules_listed() -> None:
    """The codec modules are all found (so the subprocess test checks them)."""
    modules = _wire_modules()
    for name in ("codec", "compression", "constants", "errors", "framing", "packets"):
        assert f"obproxy_tx.wire.{name}" in modules
    assert "obproxy_tx.wire.scramble" in modules
    assert "obproxy_tx.wire.values" in modules


def test_wire_imports_and_works_without_twisted() -> None:
    """Every obproxy_tx.wire module imports, and a packet round-trips, with twisted blocked."""
    script = textwrap.dedent(
        f"""
        import importlib, sys
        sys.modules["twisted"] = None
        for name in {_wire_modules()!r}:
            importlib.import_module(name)
        from obproxy_tx.wire.constants import Capability
        from obproxy_tx.wire.framing import PacketFramer
        from obproxy_tx.wire.compression import CompressedFramer
        from obproxy_tx.wire.packets import ComQuery, decode_command
        from obproxy_tx.wire import scramble
        caps = Capability.CLIENT_PROTOCOL_41
        data = PacketFramer().frame(ComQuery(b"select 1").encode(caps))
        (packet,) = PacketFramer().receive_data(data)
        assert decode_command(packet.payload, caps) == ComQuery(b"select 1")
        sender, receiver = CompressedFramer(), CompressedFramer()
        assert receiver.receive_data(sender.frame(b"x" * 100))[0].payload == b"x" * 100
        verifier = scramble.native_password_verifier(b"pw")
        s = scramble.generate_scramble()
        answer = scramble.native_password_response(b"pw", s)
        assert scramble.check_native_password(s, answer, verifier) is not None
        assert not any(m == "twisted" or m.startswith("twisted.") for m in sys.modules
                       if sys.modules[m] is not None)
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
