"""
Coverage-guided fuzzing of the codec and the conversations with atheris
(issue 8, "Hostile input").

  - L{fuzz.replay}: the harness: a recorded (or mutated) exchange between a
    MySQL client and server replayed through a sans-IO proxy made of a
    L{ServerConnection} towards the client and a L{ClientConnection} towards
    the server, answers relayed by L{AnswerRelay} where the proxy would;
  - L{fuzz.targets}: the atheris entry points (C{python -m fuzz.targets NAME});
  - L{fuzz.run}: runs every target for a bounded time (C{make fuzz});
  - L{fuzz.capture}: records real traffic from the test bed's servers into
    the seed corpus C{fuzz/corpus/}.
"""
