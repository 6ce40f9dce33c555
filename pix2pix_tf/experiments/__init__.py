"""Experiments built from the package's public pieces (train, evaluate): `paper` reproduces the
ablations of Isola et al. (Tables 1-3 and the colour table) on the embedded dataset;
`multiscale` compares pix2pixHD's discriminator options with the 70x70 PatchGAN at 256 and 512;
`precision` trains the quick start under float32 and mixed precision over several seeds."""
