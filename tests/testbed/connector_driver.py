"""
Run MySQL Connector/Python's own C{unittests.py} from its sdist against an external server and
write every test's outcome as JSON (used by L{tests.testbed.suites.run_connector}).

Usage: C{python connector_driver.py SDIST HOST PORT USER PASSWORD REPORT MODULE...}

This file runs as a script and imports nothing from this repository: the sdist has its own
top-level C{tests} package.  The report is
C{{"passed": [id...], "failed": {id: traceback}, "skipped": [id...]}}.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import unittest
from typing import Any, Dict, Sequence


class _RecordingResult(unittest.TextTestResult):
    """
    A text result that also remembers every test's outcome by id.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.outcomes: Dict[str, str] = {}
        self.details: Dict[str, str] = {}
        # Keyed by id() but holding the test too: a freed test's address may be reused by a
        # later object (unittest's holder of a tearDownClass error), which must not inherit
        # the dead test's name.
        self._names: Dict[int, Any] = {}

    def startTest(self, test: Any) -> None:  # noqa: N802
        # The sdist's foreach_cnx decorators rename the test method ("... (using X)") once
        # their connect() returned, so test.id() depends on whether it raised: aio connect()
        # raises TypeError after a complete login to a server that does not offer TLS (it reads
        # the writer's "cipher" extra info, None without TLS), swallowed by the decorator.
        # Record every test under its name as it started, the same in every run.
        super().startTest(test)
        self._names[id(test)] = (test, test.id())

    def _describe(self, err: Any, test: Any) -> str:
        describe: Any = getattr(self, "_exc_info_to_string")  # noqa: B009 - private, untyped
        return str(describe(err, test))

    def _note(self, test: Any, outcome: str, detail: str = "") -> None:
        started = self._names.get(id(test))
        name = started[1] if started is not None and started[0] is test else test.id()
        if self.outcomes.get(name) in ("fail", "error"):
            return  # a failed subtest keeps its test failed
        self.outcomes[name] = outcome
        if detail:
            self.details[name] = detail

    def addSuccess(self, test: Any) -> None:  # noqa: N802
        super().addSuccess(test)
        self._note(test, "pass")

    def addFailure(self, test: Any, err: Any) -> None:  # noqa: N802
        super().addFailure(test, err)
        self._note(test, "fail", self._describe(err, test))

    def addError(self, test: Any, err: Any) -> None:  # noqa: N802
        super().addError(test, err)
        self._note(test, "error", self._describe(err, test))

    def addSkip(self, test: Any, reason: str) -> None:  # noqa: N802
        super().addSkip(test, reason)
        self._note(test, "skip")

    def addExpectedFailure(self, test: Any, err: Any) -> None:  # noqa: N802
        super().addExpectedFailure(test, err)
        self._note(test, "skip")

    def addSubTest(self, test: Any, subtest: Any, err: Any) -> None:  # noqa: N802
        super().addSubTest(test, subtest, err)
        if err is not None:
            self._note(test, "fail", self._describe(err, test))


def main(argv: Sequence[str]) -> int:
    """
    Inside a subprocess: run Connector/Python's C{unittests.py} from the sdist against an
    external server and write C{{"passed": [...], "failed": {id: traceback}, "skipped": [...]}}.

    @param argv: sdist directory, host, port, user, password, report path, module names.
    """
    sdist, host, port, user, password, report, *modules = argv
    os.chdir(sdist)
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    sys.path.insert(0, sdist)
    # The installed wheel's C extension does not match the sdist's Python code: pure Python.
    sys.modules["_mysql_connector"] = None  # type: ignore[assignment]
    import unittests  # type: ignore[import-not-found]

    recorded: Dict[str, Any] = {}

    class Runner(unittest.TextTestRunner):
        resultclass = _RecordingResult

        def __init__(self, verbosity: int = 1, **kwargs: Any) -> None:
            super().__init__(verbosity=verbosity, stream=sys.stderr)

        def run(self, test: Any) -> Any:
            result = super().run(test)
            recorded["result"] = result
            return result

    unittests.BasicTestRunner = Runner
    sys.argv = [
        "unittests.py",
        "--use-external-server",
        "--skip-install",
        f"--host={host}",
        f"--port={port}",
        f"--user={user}",
        f"--password={password}",
        f"--test-regex=^({'|'.join(re.escape(m) for m in modules)})$",
    ]
    with contextlib.suppress(SystemExit):
        unittests.main()
    result = recorded.get("result")
    if result is None:
        return 1
    data = {
        "passed": sorted(n for n, o in result.outcomes.items() if o == "pass"),
        "failed": {
            n: result.details.get(n, o)
            for n, o in sorted(result.outcomes.items())
            if o in ("fail", "error")
        },
        "skipped": sorted(n for n, o in result.outcomes.items() if o == "skip"),
    }
    with open(report, "w") as f:
        json.dump(data, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
