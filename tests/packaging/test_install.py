"""
Packaging (issue 7): the sdist and the wheel build, and C{pip install} of the wheel into a clean
virtualenv (no system site-packages, not editable) gives a working C{twistd obproxy}.

The wheel is built from the sdist (C{python -m build}'s default), so a file the sdist leaves
out is missing from the install too. The virtualenv gets its dependencies from the package
index like any user's, and the proxy is run from a directory outside the checkout, so nothing
of the checkout is on its path: the plugin must come from the installed wheel
(C{twisted/plugins/obproxy_plugin.py}).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import venv
from pathlib import Path
from typing import Iterator

import pytest

from obproxy_tx import __version__

ROOT = Path(__file__).resolve().parents[2]
# Building (isolated, setuptools from the index), then installing the dependencies.
TIMEOUT = 300


def _run(*argv: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 0, f"{argv} failed ({result.returncode}):\n{result.stdout}"
    return result.stdout


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """
    The sdist and the wheel, built by C{python -m build} from a copy of the checkout's tracked
    files (C{git ls-files}), so that a stray local file cannot make the build pass.
    """
    tree = tmp_path_factory.mktemp("tree")
    files = _run("git", "ls-files", "-z", cwd=ROOT).split("\0")
    for name in filter(None, files):
        source = ROOT / name
        if source.is_file():
            target = tree / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
    out = tmp_path_factory.mktemp("dist")
    _run(sys.executable, "-m", "build", "--outdir", out, tree, cwd=tree)
    return out


@pytest.fixture(scope="module")
def installed(dists: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """
    A clean virtualenv with the wheel installed (not editable); returns its C{bin} directory.
    """
    env_dir = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(with_pip=True, system_site_packages=False, clear=True).create(env_dir)
    bin_dir = env_dir / "bin"
    (wheel,) = dists.glob("*.whl")
    _run(
        bin_dir / "python",
        "-m",
        "pip",
        "install",
        "-q",
        "--disable-pip-version-check",
        wheel,
        cwd=env_dir,
    )
    return bin_dir


def _outside_env(bin_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return env


def test_sdist_and_wheel_carry_the_version(dists: Path) -> None:
    """
    Both distributions are built and named with L{obproxy_tx.__version__}, the one place the
    version is written.
    """
    names = sorted(p.name for p in dists.iterdir())
    assert f"obproxy_tx-{__version__}.tar.gz" in names, names
    assert any(n.startswith(f"obproxy_tx-{__version__}-") and n.endswith(".whl") for n in names)


def test_installed_package_is_not_the_checkout(installed: Path, tmp_path: Path) -> None:
    """
    The virtualenv imports obproxy_tx from its own site-packages, with the installed version.
    """
    out = _run(
        installed / "python",
        "-c",
        "import obproxy_tx, twisted.plugins.obproxy_plugin as p;"
        "print(obproxy_tx.__version__); print(obproxy_tx.__file__); print(p.__file__)",
        cwd=tmp_path,
        env=_outside_env(installed),
    )
    version, package, plugin = out.split()
    assert version == __version__
    for path in (package, plugin):
        assert path.startswith(str(installed.parent)), path
        assert not path.startswith(str(ROOT)), path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def proxy(installed: Path, tmp_path: Path) -> Iterator[int]:
    """
    C{twistd -n obproxy} of the virtualenv listening on a free port; stopped with SIGTERM.
    """
    port = _free_port()
    process = subprocess.Popen(
        [
            str(installed / "twistd"),
            "-n",
            "--pidfile=",
            "obproxy",
            "-p",
            str(port),
            "-r",
            "127.0.0.1:1",
        ],
        cwd=tmp_path,
        env=_outside_env(installed),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.communicate()[0]
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "twistd obproxy did not listen within 60 s"
                time.sleep(0.2)
        yield port
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_twistd_obproxy_help(installed: Path, tmp_path: Path) -> None:
    """
    C{twistd --help} lists the obproxy subcommand and C{twistd obproxy --help} its options.
    """
    env = _outside_env(installed)
    listing = _run(installed / "twistd", "--help", cwd=tmp_path, env=env)
    assert "obproxy" in listing
    options = _run(installed / "twistd", "obproxy", "--help", cwd=tmp_path, env=env)
    assert "--listen-port" in options


def test_twistd_obproxy_greets_clients(proxy: int) -> None:
    """
    The installed C{twistd obproxy} accepts a client and sends the MySQL handshake (protocol
    version 10) before it needs any backend.
    """
    with socket.create_connection(("127.0.0.1", proxy), timeout=10) as s:
        data = b""
        while len(data) < 5:
            chunk = s.recv(1024)
            assert chunk, "connection closed before the greeting"
            data += chunk
    assert data[3] == 0, data[:8]  # sequence id
    assert data[4] == 10, data[:8]  # protocol version


def test_changelog_draft() -> None:
    """
    towncrier renders the news fragments (C{newsfragments/}) into a draft of the next release's
    notes without changing CHANGELOG.md.
    """
    before = (ROOT / "CHANGELOG.md").read_bytes()
    out = _run(sys.executable, "-m", "towncrier", "build", "--draft", "--version", "99.0", cwd=ROOT)
    assert "## obproxy_tx 99.0" in out
    assert (ROOT / "CHANGELOG.md").read_bytes() == before
