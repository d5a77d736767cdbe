"""Datasets: indexing (folders, list files, CSV), safe decoding, profiling, splits, decode-once tensors.

Modules: :mod:`engine.data.sources` (source text -> image folder or tar shards: local, HTTP(S), Hub),
:mod:`engine.data.index` (path -> :class:`~engine.data.index.DatasetIndex`, no decoding),
:mod:`engine.data.imageio` (one image to RGB, bad files skipped with a reason),
:mod:`engine.data.profile` (decode everything once, report what is usable),
:mod:`engine.data.splits` (seeded stratified subsets), :mod:`engine.data.tensors` (uint8 tensors and
an on-device loader) and :mod:`engine.data.demo` (the embedded counting demo). Import the submodule
you need: this package imports nothing, so torch is loaded only by the modules that use it.
"""
