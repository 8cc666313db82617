"""The load benchmarks' shared plumbing, one module per job (imported as ``harness.…`` by the
scripts in ``benchmarks/``, whose folder is on ``sys.path`` when they run):

- :mod:`harness.servers` — free ports, the instant upstream, ``thrifty serve`` or bare uvicorn,
  waiting for health, stopping a server's whole process group;
- :mod:`harness.cpu` — CPU seconds of a process group, a process tree or a list of processes
  (``/proc``), and waiting until a server is idle;
- :mod:`harness.load` — ``wrk`` runs (one or several at once) and their parsed output, with an
  async httpx generator for machines without ``wrk``;
- :mod:`harness.measure` — the protocol every load benchmark follows (warm-up, latency at few
  connections, throughput at many, CPU per request), "added" latency, and the git commit.
"""
