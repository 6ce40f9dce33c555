"""The `DatasetInfo` of the package's tfds builders."""

from __future__ import annotations

import tensorflow_datasets as tfds


class LocalDatasetInfo(tfds.core.DatasetInfo):
    """tfds' `DatasetInfo` without its look-up of precomputed info in tfds' GCS bucket.

    That look-up is off unless a user turns GCS on (and the bucket holds none of these
    datasets), yet tfds still creates an empty temporary folder for it, which it never
    removes, each time the builder of a dataset not yet prepared is made.
    """

    def initialize_from_bucket(self) -> None:
        return None
