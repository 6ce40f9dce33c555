"""`python -m pix2pix_tf.benchmark`: training and inference speed against this machine's limits.

`machine` measures what the hardware can do, `training` the real training step (and each
speed lever), `inference` the generator in every exported form; `__main__` is the command.
"""
