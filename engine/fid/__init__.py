"""FID: Inception features, the Fréchet distance, named references and the similarity calibration.

Modules: :mod:`engine.fid.frechet` (pure numpy maths and stats files),
:mod:`engine.fid.features` (pytorch-fid's InceptionV3 and its weights),
:mod:`engine.fid.cache` (content-keyed feature cache), :mod:`engine.fid.run` (images or stats ->
distance), :mod:`engine.fid.reference` / :mod:`engine.fid.refbuild` / :mod:`engine.fid.refshare` (named
references, how they are built, and how they are exported, imported and pulled) and
:mod:`engine.fid.calibration` (the FID threshold). This package imports nothing.
"""
