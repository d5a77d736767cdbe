"""The advisor's use cases: one function per command, called by the thin typer commands.

``recommend`` (:mod:`advisor.usecases.recommend`) and ``pilot`` (:mod:`advisor.usecases.pilot`) live
here; ``reproduce-vtab`` and ``calibrate`` live in :mod:`benchmarks.vtab.reproduce` and
:mod:`benchmarks.vtab.calibrate`. Use cases never print: they report through callbacks
(``engine.progress.StageProgress``, ``on_plan``, ``confirm``). Import the submodules directly;
this package imports nothing.
"""
