"""dispatcher's benchmark: the machine's ceiling, the daemon's throughput, latency, memory and
matching cost, measured in one run on loopback. Run it with `scripts/benchmark` (see README)."""
