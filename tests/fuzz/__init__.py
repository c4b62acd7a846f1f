"""
Fuzzing of the codec and both protocol adapters (issue 8, "Hostile input"):
hypothesis properties and state machines in the regular suite, and the
coverage-guided atheris targets of C{fuzz/} run for a bounded time.
"""
