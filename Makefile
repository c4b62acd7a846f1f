# obproxy_tx: developer and CI commands.
#
#   make run            start a local seekdb and the proxy in front of it on port 2883
#   make run-example    start the framework's example MySQL server on 127.0.0.1:3307
#   make run-replication  the proxy in front of a MariaDB primary -> replica pair (read/write split)
#   make test           install everything (apt + pip), lint, build the docs, run the whole test suite
#   make docs           the docs site (Sphinx + MyST + pydoctor) in docs/_build/html, warnings are errors
#   make testbed-up     start real MariaDB and seekdb servers for tests (kept running)
#   make testbed-down   stop them
#   make bench          the side-by-side benchmark (docs/performance.md); BENCH_PYPY=1 adds PyPy
#   make soak           the soak test with faults for SOAK_MINUTES (30) minutes (docs/operations.md)
#   make fuzz           the atheris fuzz targets for FUZZ_SECONDS in all (default 60; fuzz/run.py)
#
# CI runs `bash .ci/run`, which is `make test`.

PYTHON ?= python3
PORT ?= 3307
PROXY_PORT ?= 2883
# Extra arguments for pytest, e.g. make test PYTEST_ARGS='-k golden -x'
PYTEST_ARGS ?=
# Whole-suite cap (seconds); CI's own limit is 90 minutes, the suite should take a few.
PYTEST_TIMEOUT ?= 3000

TESTBED_DIR = $(or $(OBPROXY_TESTBED_DIR),.testbed)
PYTEST_FLAGS = -ra -p no:cacheprovider --durations=15 -o faulthandler_timeout=600
TYPED_TEST_CODE = tests/testbed tests/golden tests/conftest.py
TYPED_EXTRA = twisted/plugins/obproxy_plugin.py examples/embedded_proxy.py docs/gen_config_reference.py \
    docs/conf.py docs/_ext/obproxy_docs.py

.PHONY: test install install-system install-python lint docs pytest run run-replication run-example certs \
        testbed-up testbed-down testbed-status golden bench fuzz soak

test: install lint docs pytest fuzz

install: install-system install-python

install-system:
	bash scripts/install-system-deps.sh

install-python:
	$(PYTHON) -m pip install --disable-pip-version-check -q -e '.[test,dev,docs]' \
	    --config-settings editable_mode=compat

lint:
	$(PYTHON) -m ruff check obproxy_tx tests twisted/plugins examples docs bench fuzz
	$(PYTHON) -m ruff format --check obproxy_tx tests twisted/plugins examples docs/gen_config_reference.py docs/conf.py docs/_ext bench fuzz
	$(PYTHON) -m mypy
	$(PYTHON) -m mypy $(TYPED_EXTRA)
	$(PYTHON) -m mypy bench
	$(PYTHON) -m mypy fuzz
	$(PYTHON) -m mypy --explicit-package-bases $(TYPED_TEST_CODE)

# The docs site: warnings (Sphinx's, MyST's and pydoctor's on the docstrings) are errors.
docs:
	$(PYTHON) -m sphinx -W --keep-going -q -b html docs docs/_build/html

# Real servers are required here: a server that cannot start fails the run instead of skipping.
pytest:
	OBPROXY_REQUIRE_SERVERS=1 timeout --kill-after=60 $(PYTEST_TIMEOUT) \
	    $(PYTHON) -m pytest $(PYTEST_FLAGS) $(PYTEST_ARGS)

certs:
	@$(PYTHON) -m tests.testbed certs

# The proxy on port $(PROXY_PORT) in front of a local OceanBase seekdb (started here when none
# runs, and stopped again on Ctrl-C). Installs the Python dependencies first on a fresh clone.
run:
	@$(PYTHON) -c 'import twisted, attrs, OpenSSL, cryptography, yaml' 2>/dev/null || $(MAKE) install-python
	@set -e; started=; \
	if ! $(PYTHON) -m tests.testbed seekdb status >/dev/null 2>&1; then \
	    $(PYTHON) -m tests.testbed seekdb start; started=1; \
	fi; \
	eval "$$($(PYTHON) -m tests.testbed seekdb env)"; \
	if [ -n "$$started" ]; then trap '$(PYTHON) -m tests.testbed seekdb stop' EXIT; trap 'exit 130' INT TERM; fi; \
	echo; echo "obproxy_tx on port $(PROXY_PORT) in front of seekdb at $$OBPROXY_SEEKDB_HOST:$$OBPROXY_SEEKDB_PORT"; \
	echo "Connect with:  mariadb -h127.0.0.1 -P$(PROXY_PORT) -uroot@sys   (empty password)"; \
	echo "Ctrl-C stops the proxy$${started:+ and seekdb}."; echo; \
	PYTHONPATH=. $(PYTHON) -m twisted --log-format=text obproxy -c examples/conf.yaml -p $(PROXY_PORT) \
	    -r "$$OBPROXY_SEEKDB_HOST:$$OBPROXY_SEEKDB_PORT"

# The proxy on $(PROXY_PORT) in front of a real MariaDB primary -> replica pair (read/write split,
# docs/high-availability.md); the pair keeps running: python -m tests.testbed replication stop.
run-replication:
	@$(PYTHON) -c 'import twisted, attrs, OpenSSL, cryptography, yaml' 2>/dev/null || $(MAKE) install-python
	@set -e; $(PYTHON) -m tests.testbed replication start; \
	conf="$(TESTBED_DIR)/replication/proxy.yaml"; \
	$(PYTHON) -m tests.testbed replication config > "$$conf"; \
	echo; echo "obproxy_tx on port $(PROXY_PORT): writes to the primary, weak reads to the replica ($$conf)"; \
	echo "Weak by default (reads go to the replica):  mariadb -h127.0.0.1 -P$(PROXY_PORT) -unative_user -pnative_pw test -e 'SELECT @@server_id'"; \
	echo "Strong by default (SET ob_read_consistency = WEAK to split): mariadb -h127.0.0.1 -P$(PROXY_PORT) -uadmin -padmin_pw"; \
	echo "@@server_id: 1 primary, 2 replica. Ctrl-C stops the proxy."; echo; \
	PYTHONPATH=. $(PYTHON) -m twisted --log-format=text obproxy -c "$$conf" -p $(PROXY_PORT)

# The framework's example MySQL-protocol server (not a proxy) on $(PORT), TLS offered.
run-example:
	@$(PYTHON) -c 'import twisted, attrs, OpenSSL, cryptography' 2>/dev/null || $(MAKE) install-python
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

# The side-by-side benchmark: direct, a bare Twisted relay, HAProxy and obproxy_tx (1 worker and
# one per core; under PyPy too with BENCH_PYPY=1) on real MariaDB and seekdb. Installs sysbench,
# haproxy, matplotlib (and PyPy) first; writes bench/results/latest.{md,json,png}. About ten
# minutes; a long run: make bench BENCH_ARGS='--time 10 --stream-mib 1024 --idle-clients 10000'.
BENCH_ARGS ?=
BENCH_PYPY ?= 0

bench:
	@$(PYTHON) -c 'import twisted, attrs, OpenSSL, cryptography, yaml' 2>/dev/null || $(MAKE) install-python
	bash scripts/install-system-deps.sh
	BENCH_PYPY=$(BENCH_PYPY) PYTHON=$(PYTHON) bash scripts/install-bench-deps.sh
	$(PYTHON) -m bench.run $(if $(filter 1,$(BENCH_PYPY)),--pypy) $(BENCH_ARGS)

# Coverage-guided fuzzing (atheris) of the codec and the sans-IO proxy, seeded with captured
# traffic (fuzz/corpus); the hypothesis part is in tests/fuzz. A crash fails and leaves its input
# in fuzz/artifacts/. Longer: make fuzz FUZZ_SECONDS=3600
FUZZ_SECONDS ?= 60

fuzz:
	$(PYTHON) -m fuzz.run --seconds $(FUZZ_SECONDS)

# The soak test with faults (issue 8, docs/operations.md "Soak test"): clients, a ledger and
# scheduled faults through a twistd proxy for SOAK_MINUTES; CI runs 45 s of it (tests/soak).
SOAK_MINUTES ?= 30
soak:
	$(PYTHON) -m tests.soak --minutes $(SOAK_MINUTES) --fault-interval 15 --warmup 20 --sample-interval 60
