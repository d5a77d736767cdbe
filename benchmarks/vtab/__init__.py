"""VTAB-1k reproduction of Han et al. (ICLR 2024) Tables 1-2 and 5-6: task view, layout checks, protocol,
resumable trial store, schedulers, sweep orchestration, tables and FID calibration.

Import the submodules directly (``benchmarks.vtab.run`` etc.); this package imports nothing heavy.
"""

__all__: list[str] = []
