"""What may change when a run resumes, and what may not: a checkpoint means the model, data,
objective, Adam and seed of its config.json; run length, logging and where the data lives are
free to change (docs/training.md, "Resuming")."""

from __future__ import annotations

import dataclasses
import os
from typing import Optional

from pix2pix_tf.config import FOLDER_PREFIX, TrainConfig
from pix2pix_tf.errors import ConfigError
from pix2pix_tf.workdir import CONFIG_FILE, Workdir

# Settings that say where things are, not what they are: free to change between invocations.
MOVABLE = ("data_dir",)


def check_resumable(stored: TrainConfig, requested: TrainConfig) -> None:
    """Refuses to resume a run whose model, data or objective would change.

    Run-length and logging settings (steps, save_every, ...) may change between
    invocations; anything that changes what the checkpoint means may not.
    """
    differences = resume_differences(stored, requested)
    if differences:
        raise ConfigError(
            f"The workdir '{requested.run.workdir}' holds a run with another configuration:\n  "
            + "\n  ".join(differences)
            + "\nUse another --workdir, or repeat the original flags to resume."
            + _moved_folder_advice(stored.data.dataset)
        )


def _moved_folder_advice(dataset: str) -> str:
    """Where the run's folder dataset is gone, repeating its flag cannot resume it: what can."""
    folder = dataset[len(FOLDER_PREFIX):] if dataset.startswith(FOLDER_PREFIX) else None
    if folder is None or os.path.exists(folder):
        return ""
    return (f" {folder}, the folder the run trained on, no longer exists: if its images moved, set data.dataset in "
            "config.json to the new folder (a moved path is not taken for the same images on its own).")


def resume_differences(stored: TrainConfig, requested: TrainConfig) -> list[str]:
    """What `requested` changes of `stored` that a checkpoint could not be resumed under, one
    line each (`check_resumable`)."""
    differences = []
    # A depth the discriminator does not take changes nothing (ModelConfig.unused_depth).
    same_d = stored.model.discriminator == requested.model.discriminator
    unused = ("n_layers_d",) if same_d and not requested.model.takes_depth else ()
    for part in ("model", "data", "loss"):
        old, new = dataclasses.asdict(getattr(stored, part)), dataclasses.asdict(getattr(requested, part))
        differences += [f"{part}.{k}: {old[k]!r} in config.json, {new[k]!r} now"
                        for k in old if old[k] != new[k] and k not in MOVABLE + unused]
    for key in ("lr", "beta1", "beta2"):
        if getattr(stored.optim, key) != getattr(requested.optim, key):
            differences.append(f"optim.{key}: {getattr(stored.optim, key)!r} in config.json, "
                               f"{getattr(requested.optim, key)!r} now")
    if stored.run.seed != requested.run.seed:
        differences.append(f"run.seed: {stored.run.seed} in config.json, {requested.run.seed} now")
    return differences


def schedule_change(stored: TrainConfig, requested: TrainConfig) -> Optional[str]:
    """What a resume changes of the learning-rate schedule (`--epochs`, `--epochs_decay`), in
    words; None if nothing. Allowed, as a run may be lengthened, but the steps already trained
    followed the old schedule, so the user is told."""
    old, new = stored.optim, requested.optim
    if (old.epochs, old.epochs_decay) == (new.epochs, new.epochs_decay):
        return None
    return (f"Resuming with --epochs={new.epochs} --epochs_decay={new.epochs_decay}, where config.json has "
            f"{old.epochs} and {old.epochs_decay}: the learning-rate schedule changes from the resumed step on "
            "(the steps trained so far followed the old one); config.json records the new values.")


def unrecorded_settings(workdir: str) -> str:
    """The warning for a resume from checkpoints beside which config.json is missing (deleted,
    or the run copied without it): nothing can refuse flags that change what the checkpoints
    mean (another objective, a new seed), so the user is told that they went unchecked."""
    return (f"{workdir} has checkpoints but no config.json: the run resumes from them under this command's flags, "
            "and the settings it was trained with cannot be checked against these (another objective or seed "
            "would go unnoticed); config.json records this command's from now on.")


def restored_model(workdir: str) -> str:
    """What a checkpoint is restored into, as the error of one that does not fit names it:
    config.json's model, or, where the workdir has none, the one this command's flags build."""
    return CONFIG_FILE if Workdir(workdir).has_config() else "this command's flags (the workdir has no config.json)"
