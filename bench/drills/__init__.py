"""Availability drills (`make drill`, docs/availability.md): an open-loop load of mixed traffic
against the loopback cluster while one fault is injected, then a Jepsen-style check that every
write the API acknowledged is in the database exactly once.

- ``stats``: the report's arithmetic (success ratio, percentiles, time to recover);
- ``writes``: the lost-write and duplicate check;
- ``load``: the open-loop client (fixed arrival rate; retries as a real client would);
- ``faults``: the drills and the fault each injects;
- ``report``: markdown and JSON under bench/reports/;
- ``__main__``: ``python -m bench.drills [--drill NAME] [--short]``.
"""
