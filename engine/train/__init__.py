"""Training: ViT backbones, visual prompt tuning, transfer methods, the fit loop and the pilot.

Modules: :mod:`engine.train.methods` (the method registry, torch-free), :mod:`engine.train.tuners` (the methods,
one module per family, discovered by the registry),
:mod:`engine.train.models` (timm backbones and local weights), :mod:`engine.train.vpt` (prompt
insertion), :mod:`engine.train.batched_vpt` (K prompt configurations on one frozen backbone),
:mod:`engine.train.transfer` (what each method builds and trains), :mod:`engine.train.loop` (the
training loop), :mod:`engine.train.pilot` and :mod:`engine.train.pilot_timing` (the budgeted pilot).
This package imports nothing, so ``engine.train.methods`` stays cheap.
"""
