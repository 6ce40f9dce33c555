"""Datasets for pix2pix, including the offline, self-generated `pix2pix_shapes` builder."""
