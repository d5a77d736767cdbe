"""Benchmarks and paper reproductions built on the engine (never imported by ``engine``)."""
