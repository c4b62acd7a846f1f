# obproxy_tx: developer and CI commands.
#
#   make run            start the example MySQL-protocol server on 127.0.0.1:3307 (TLS offered)
#   make test           install everything (apt + pip), lint, run the whole test suite
#   make testbed-up     start real MariaDB and seekdb servers for tests (kept running)
#   make testbed-down   stop them
#
# CI runs `bash .ci/run`, which is `make test`.

PYTHON ?= python3
PORT ?= 3307
# Extra arguments for pytest, e.g. make test PYTEST_ARGS='-k golden -x'
PYTEST_ARGS ?=
# Whole-suite cap (seconds); CI's own limit is 90 minutes, the suite should take a few.
PYTEST_TIMEOUT ?= 3000

TESTBED_DIR = $(or $(OBPROXY_TESTBED_DIR),.testbed)
PYTEST_FLAGS = -ra -p no:cacheprovider --durations=15 -o faulthandler_timeout=600
TYPED_TEST_CODE = tests/testbed tests/golden tests/conftest.py

.PHONY: test install install-system install-python lint pytest run certs \
        testbed-up testbed-down testbed-status golden

test: install lint pytest

install: install-system install-python

install-system:
	bash scripts/install-system-deps.sh

install-python:
	$(PYTHON) -m pip install --disable-pip-version-check -q -e '.[test,dev]' \
	    --config-settings editable_mode=compat

lint:
	$(PYTHON) -m ruff check obproxy_tx tests
	$(PYTHON) -m mypy
	$(PYTHON) -m mypy --explicit-package-bases $(TYPED_TEST_CODE)

# Real servers are required here: a server that cannot start fails the run instead of skipping.
pytest:
	OBPROXY_REQUIRE_SERVERS=1 timeout --kill-after=60 $(PYTEST_TIMEOUT) \
	    $(PYTHON) -m pytest $(PYTEST_FLAGS) $(PYTEST_ARGS)

certs:
	@$(PYTHON) -m tests.testbed certs

# Installs the Python dependencies first if they are missing (a fresh clone).
run:
	@$(PYTHON) -c 'import twisted, attrs, OpenSSL, cryptography' 2>/dev/null || $(MAKE) install-python
	@test -f examples/server.py || { echo "examples/server.py does not exist yet" >&2; exit 1; }
	@$(PYTHON) -m tests.testbed certs >/dev/null
	PYTHONPATH=. $(PYTHON) examples/server.py --port $(PORT) \
	    --tls-cert $(TESTBED_DIR)/certs/server-cert.pem --tls-key $(TESTBED_DIR)/certs/server-key.pem

testbed-up:
	$(PYTHON) -m tests.testbed all start

testbed-down:
	$(PYTHON) -m tests.testbed all stop

testbed-status:
	$(PYTHON) -m tests.testbed all status

golden:
	$(PYTHON) -m tests.golden.capture
