#!/usr/bin/env bash
# Install what `make bench` needs beyond the test bed (scripts/install-system-deps.sh), when missing:
#   sysbench     the OLTP and connection-churn clients (Debian package)
#   haproxy      the C L4 proxy the benchmark compares with (Debian package; its own service
#                is kept from starting: the benchmark runs its own HAProxy)
#   matplotlib   for bench/results/latest.png (pip, into $PYTHON's environment)
# and with BENCH_PYPY=1 also
#   pypy3, pypy3-venv   Debian's PyPy (Python 3.9) and the venv/ensurepip support Debian splits off
#   a PyPy virtual environment in $BENCH_PYPY_VENV (default ~/.cache/obproxy_tx/bench-pypy) holding
#   the proxy's runtime dependencies, read from setup.cfg's install_requires.
# Runs apt-get as root, otherwise through sudo -n, or says what to install.
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
BENCH_PYPY=${BENCH_PYPY:-0}
VENV=${BENCH_PYPY_VENV:-$HOME/.cache/obproxy_tx/bench-pypy}

# shellcheck source=scripts/apt-helper.sh
. scripts/apt-helper.sh

need=()
have sysbench || need+=(sysbench)
have haproxy || need+=(haproxy)
have mariadb || need+=(mariadb-client)
if [ "$BENCH_PYPY" = 1 ]; then
    have pypy3 || need+=(pypy3)
    # ensurepip's wheels: without them `pypy3 -m venv` makes an environment with no pip.
    [ -e /usr/share/doc/pypy3-venv ] || need+=(pypy3-venv)
fi

if [ ${#need[@]} -gt 0 ]; then
    apt_install install-bench-deps "${need[@]}"
else
    echo "install-bench-deps: sysbench, haproxy and the mariadb client are present"
fi

if ! "$PYTHON" -c 'import matplotlib' 2>/dev/null; then
    echo "install-bench-deps: pip install matplotlib (for the plot)"
    "$PYTHON" -m pip install --disable-pip-version-check -q matplotlib
fi

if [ "$BENCH_PYPY" = 1 ]; then
    if [ ! -x "$VENV/bin/pypy3" ]; then
        echo "install-bench-deps: making a PyPy environment in $VENV"
        mkdir -p "$(dirname "$VENV")"
        pypy3 -m venv "$VENV"
    fi
    # The runtime dependencies, as setup.cfg lists them (the proxy itself runs from the checkout).
    mapfile -t requirements < <("$PYTHON" - <<'EOF'
import configparser
config = configparser.ConfigParser()
config.read("setup.cfg")
for line in config["options"]["install_requires"].splitlines():
    if line.strip() and not line.strip().startswith("#"):
        print(line.strip())
EOF
    )
    if ! PYTHONPATH=. "$VENV/bin/pypy3" -c 'import obproxy_tx.tap' 2>/dev/null; then
        echo "install-bench-deps: pip install ${requirements[*]} for PyPy"
        # cryptography and cffi from wheels only: a newer cryptography than the last with PyPy 3.9
        # wheels would be built from source, which needs a Rust toolchain. PyYAML builds from its
        # source (pure Python without libyaml).
        "$VENV/bin/pypy3" -m pip install --disable-pip-version-check -q \
            --only-binary cryptography,cffi "${requirements[@]}"
    fi
    PYTHONPATH=. "$VENV/bin/pypy3" -c 'import obproxy_tx.tap, sys; print("install-bench-deps: PyPy ready:", sys.version.splitlines()[-1])'
fi
