"""vpt-advisor engine: a library for dataset profiling, FID, visual prompt tuning and finetuning.

The engine is usable without the CLI: it never prints, it logs through ``logging`` and reports
progress through optional ``on_progress(done, total)`` callbacks. Importing ``engine`` is cheap;
torch is imported only by the submodules that need it (``engine.fid.features``, ``engine.train.vpt``, ...).
"""

from engine.errors import EngineError

__all__ = ["EngineError"]
__version__ = "0.1.0"
