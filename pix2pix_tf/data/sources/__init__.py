"""Datasets for pix2pix, including the offline, self-generated `pix2pix_shapes` builder."""

# The paper, as every dataset builder of the package cites it.
PAPER_CITATION = """\
@inproceedings{isola2017image,
  title={Image-to-Image Translation with Conditional Adversarial Networks},
  author={Isola, Phillip and Zhu, Jun-Yan and Zhou, Tinghui and Efros, Alexei A},
  booktitle={CVPR},
  year={2017}
}
"""
