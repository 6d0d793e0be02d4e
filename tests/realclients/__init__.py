"""Real third-party KIS clients run against ``kis-ws sim``: the test of the simulator's fidelity.

One runner per client (``run_<client>.py``). Each runs in the peers' virtualenv (built by
:mod:`tests.realclients.peers`, never in the project's), as ``python -m tests.realclients.run_<client>
--url ws://127.0.0.1:PORT --duration S`` from the repository root. It points the client at the
simulator, subscribes to trades (H0STCNT0, or the unified H0UNCNT0 where that is all the client
offers), the order book (H0STASP0) and execution notices (H0STCNI0 real / H0STCNI9 paper, keyed
by an HTS ID), streams for S seconds and prints one JSON line on standard output (everything the
client itself prints goes to standard error)::

    {"client": "kis-trader", "version": "0.12.2", "trades": 252, "books": 98, "notices": 64,
     "acceptances": 32, "fills": 32, "rejected": 0, "errors": 0, "misparsed": 0, "lost": 0,
     "disconnects": 0, "at_stop": 1, "detail": {}, "problems": {...}, "notes": [...]}

* ``trades`` / ``books`` / ``notices``: records the client handed to the application (notices split
  into ``acceptances``, CNTG_YN "1", and ``fills``, CNTG_YN "2").
* ``misparsed``: of those, records that are visibly wrong (another symbol or HTS ID where the
  subscribed one belongs, a notice still encrypted, several records merged into one).
* ``rejected``: frames the client refused (a field count it does not expect, a failed decryption).
* ``lost``: records the server sent that never reached the application, where the runner can see
  them (the official sample logs every message it receives).
* ``errors``: exceptions and error logs of the client (a crashed handler, a failed request).
* ``disconnects``: sessions the client saw end before the runner stopped it.
* ``at_stop``: problems logged while the runner was shutting the client down.
* ``detail``: ``rejected`` and ``misparsed`` by kind of record, e.g. ``{"rejected.notices": 8}``.
* ``problems``: the first few messages behind those counts; ``notes``: what the runner patched.

Where a client accepts its URLs as configuration, the runner configures it; where it hard-codes
the KIS hosts, the runner patches the module's URL constants at runtime and says so in its
docstring and in ``notes``. ``tests/test_real_clients.py`` starts the simulator, runs the runners
and asserts the counts; docs/howto/simulator.md ("Real clients run against the simulator") has
what each client does and does not do.
"""
