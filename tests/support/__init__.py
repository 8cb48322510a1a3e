"""Shared helpers for the tests (and the benchmarks in bench/): real servers, real workers, real
receivers, the real commands. Test modules import from here, never from one another."""
