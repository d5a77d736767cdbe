"""The transfer methods, one module per family; each module registers its methods with ``engine.train.methods``.

The registry imports every module here (sorted by name) the first time it is asked anything, so a new method is
one new module in this package. Modules must stay cheap to import: torch and optional packages are imported
when a model is built. This package imports nothing itself.
"""
