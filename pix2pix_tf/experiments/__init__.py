"""Experiments built from the package's public pieces (train, evaluate): `paper` reproduces the
ablations of Isola et al. (Tables 1-3 and the colour table) on the embedded dataset."""
