"""Data parallelism is exact: 2 workers == 2 mirrored replicas == 1 device, same global batch.

Each configuration runs train.py: one device in this process (tests/programs.py), two CPU
replicas in a process of their own (set up before TensorFlow starts: tests/forked.py), two
workers as two processes talking over loopback ports, then the per-step losses (from the
TensorBoard events) and the final weights (from the checkpoints) are compared.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from pix2pix_tf.training.loop import train

import forked
from conftest import TINY_DATASET, tiny_config
from process_fixtures import GRAPH_OPTIMIZER_OFF
from programs import run_program

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 3
LR = 2e-4  # train.py's default Adam learning rate


def train_flags(workdir, data_dir, *extra: str) -> list[str]:
    # Synchronized batch norm (statistics over the GLOBAL batch) and no dropout: the computation
    # does not depend on how the global batch is split, so the runs must agree to float rounding.
    # (Instance norm would too, but the conv biases before it get a zero gradient, which Adam
    # turns into steps along float noise: no meaningful comparison.)
    # The 1x1 PixelGAN, which has a synchronized norm layer too, is the D of fewest layers: each
    # process's first step, which traces and optimizes the step's graph, is most of its cost.
    return [f"--dataset={TINY_DATASET}", f"--data_dir={data_dir}", f"--workdir={workdir}", "--generator=unet_128",
            "--discriminator=pixel", "--ngf=8", "--ndf=8", "--load_size=143", "--crop_size=128", "--batch_size=2",
            f"--steps={STEPS}",
            "--seed=3", "--norm=syncbatch", "--no_dropout", "--log_every=1", "--eval_examples=0", "--noprogress",
            *extra]


def command(workdir, data_dir, *extra: str) -> list[str]:
    """train.py in a process of its own (tests/forked.py): replicas on one CPU must be set up
    before TensorFlow starts."""
    return [sys.executable, os.path.join(ROOT, "train.py"), *train_flags(workdir, data_dir, *extra)]


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def started(cmd: list[str], env: dict, stdout: forked.Stream, stderr: forked.Stream) -> forked.Popen:
    """`cmd` forked with TensorFlow's graph optimizer off, as in this process (tests/process_fixtures.py)."""
    return forked.Popen(cmd, env=env, cwd=ROOT, stdout=stdout, stderr=stderr, text=True, prelude=GRAPH_OPTIMIZER_OFF)


def start_all(commands: list[list[str]], envs: list[dict]) -> list[forked.Popen]:
    return [started(c, {**os.environ, **e}, forked.PIPE, forked.PIPE) for c, e in zip(commands, envs)]


def finish_all(processes: list[forked.Popen]) -> list[tuple[str, str]]:
    """(stdout, stderr) of each, which must succeed."""
    outputs = [p.communicate(timeout=400) for p in processes]
    for process, (_, stderr) in zip(processes, outputs):
        assert process.returncode == 0, stderr[-4000:]
    return outputs


def losses_and_weights(workdir) -> tuple[dict[str, list[float]], dict[str, np.ndarray]]:
    events = EventAccumulator(str(workdir / "logs" / "train"), size_guidance={"tensors": 0}).Reload()
    losses = {tag: [float(tf.make_ndarray(e.tensor_proto)) for e in events.Tensors(tag)]
              for tag in events.Tags()["tensors"] if tag.startswith("loss/")}
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(workdir / "checkpoints")))
    weights = {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
               if k.startswith(("g_optimizer/_trainable_variables", "d_optimizer/_trainable_variables"))}
    return losses, weights


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_dir) -> dict:
    root = tmp_path_factory.mktemp("scale")
    mirrored = start_all([command(root / "mirrored", data_dir, "--strategy=mirrored", "--cpu_replicas=2")], [{}])
    one_device = run_program("train", *train_flags(root / "one_device", data_dir, "--strategy=default"))
    assert one_device.returncode == 0, one_device.stderr[-4000:]
    (mirrored_output,) = finish_all(mirrored)
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    workers_output = finish_all(start_all(
        [command(root / "workers", data_dir, "--strategy=multi_worker")] * 2,
        [{"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})} for i in range(2)]))
    return {name: losses_and_weights(root / name) for name in ("one_device", "mirrored", "workers")} | {
        "root": root, "mirrored_output": mirrored_output, "workers_output": workers_output}


@pytest.mark.slow
def test_two_cpu_replicas_train_with_synchronized_batch_norm(runs):
    stdout, stderr = runs["mirrored_output"]
    assert "Training on 2 replica(s) with MirroredStrategy" in stderr
    assert f"Done: step {STEPS}/{STEPS}" in stdout


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mirrored", "workers"])
def test_same_losses_and_weights_as_one_device(runs, name):
    expected_losses, expected_weights = runs["one_device"]
    losses, weights = runs[name]
    assert set(losses) == set(expected_losses) >= {"loss/g_l1", "loss/d_real"}
    for tag in expected_losses:
        assert len(losses[tag]) == STEPS
        np.testing.assert_allclose(losses[tag], expected_losses[tag], rtol=1e-4, err_msg=tag)
    assert weights.keys() == expected_weights.keys() and len(weights) > 20
    # One device computes batch-norm moments in one pass over the batch, the replicas from
    # all-reduced sums: rounding differs, and Adam (which divides each gradient by its own
    # magnitude) turns rounding in near-zero gradients into steps of up to ~lr. So: every
    # difference within Adam's step size, and on average far below the weights' scale.
    differences = np.concatenate([np.abs(weights[k] - expected_weights[k]).ravel() for k in weights])
    scale = np.concatenate([np.abs(expected_weights[k]).ravel() for k in weights]).mean()
    assert differences.max() <= 2 * STEPS * LR
    assert differences.mean() < 1e-3 * scale


@pytest.mark.slow
def test_two_workers_equal_two_mirrored_replicas_exactly(runs):
    (worker_losses, worker_weights), (mirrored_losses, mirrored_weights) = runs["workers"], runs["mirrored"]
    assert worker_losses.keys() == mirrored_losses.keys()
    for tag in mirrored_losses:  # every step's value, each within the tolerance
        np.testing.assert_allclose(worker_losses[tag], mirrored_losses[tag], rtol=1e-6, err_msg=tag)
    for key in mirrored_weights:
        np.testing.assert_allclose(worker_weights[key], mirrored_weights[key], rtol=1e-6, atol=1e-9, err_msg=key)


@pytest.mark.slow
def test_only_the_chief_keeps_checkpoints(runs):
    workdir = runs["root"] / "workers"
    assert tf.train.latest_checkpoint(str(workdir / "checkpoints")).endswith(f"ckpt-{STEPS}")
    (chief_stdout, _), (other_stdout, _) = runs["workers_output"]
    assert f"checkpoint {workdir / 'checkpoints' / f'ckpt-{STEPS}'}," in chief_stdout, chief_stdout
    assert f"Done: step {STEPS}/{STEPS}, checkpoint kept by the chief worker," in other_stdout, other_stdout
    assert not [p for p in os.listdir(workdir) if p.startswith("tmp_worker")]  # temporary copies cleaned


@pytest.mark.slow
def test_one_mirrored_replica_trains_exactly_what_the_default_strategy_trains(tmp_path, data_dir, deterministic_ops):
    """train.py's default, a MirroredStrategy over this machine's one device, computes the very
    step the default strategy computes: the tests whose subject is not distribution train in
    the test process with the default strategy (conftest.tiny_config), which sets up for less."""
    def trained(strategy: str):
        workdir = tmp_path / strategy
        config = tiny_config(workdir, data_dir, optim=dict(steps=STEPS), run=dict(strategy=strategy, log_every=1))
        return (train(config), *losses_and_weights(workdir))

    mirrored, mirrored_losses, mirrored_weights = trained("mirrored")
    default, losses, weights = trained("default")
    assert mirrored.losses == default.losses and mirrored.held_out_l1_end == default.held_out_l1_end
    assert mirrored_losses == losses and all(len(values) == STEPS for values in losses.values())
    assert mirrored_weights.keys() == weights.keys() and len(weights) > 20
    for name, value in weights.items():
        np.testing.assert_array_equal(mirrored_weights[name], value, err_msg=name)


@pytest.mark.slow
def test_sigterm_to_one_worker_checkpoints_the_cluster_and_the_restart_continues(tmp_path, data_dir):
    """TensorFlow's PreemptionCheckpointHandler: any worker's SIGTERM makes all checkpoint and exit (42).
    So do a hangup and a first Ctrl-C, sent on as that notice (a worker that stopped alone left
    its peer waiting). No norm layers: the handler's work does not depend on them, and
    synchronized batch norm would add a collective per layer to every step, and to each
    worker's tracing."""
    workdir, total = tmp_path / "run", 14  # Each stop lands a step or two after a regular save.
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    envs = [{**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})}
            for i in range(2)]
    # Regular saves every 2 steps: the stop's checkpoint must still be the one resumed from.
    cmd = command(workdir, data_dir, "--strategy=multi_worker", "--norm=none", "--save_every=2") + [f"--steps={total}"]
    logs = [open(tmp_path / f"worker{i}.log", "w+") for i in range(2)]
    workers = [started(cmd, env, log, log) for env, log in zip(envs, logs)]
    regular_save = workdir / "checkpoints" / "ckpt-2.index"
    deadline = time.time() + 300
    while not regular_save.exists():  # Fails unless the regular save of step 2 comes first.
        assert time.time() < deadline and all(w.poll() is None for w in workers), open(logs[0].name).read()[-3000:]
        time.sleep(0.05)
    workers[1].send_signal(signal.SIGTERM)
    codes = [w.wait(timeout=300) for w in workers]
    assert codes == [42, 42], [open(log.name).read()[-2000:] for log in logs]
    saved = tf.train.latest_checkpoint(str(workdir / "checkpoints"))
    assert saved is not None
    stopped_at = int(tf.train.load_checkpoint(saved).get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE"))
    assert 0 < stopped_at < total
    assert saved == str(workdir / "checkpoints" / f"ckpt-{stopped_at}")  # Named by its step, as every save.
    assert regular_save.exists()  # The regular save that came before it is kept.

    # Restarted, the cluster goes on; a hangup to the chief and a Ctrl-C to the other worker, once a
    # regular save of this run is on disk, stop it as the SIGTERM did.
    logs = [open(tmp_path / f"worker{i}.again.log", "w+") for i in range(2)]
    restarted = [started(cmd, env, log, log) for env, log in zip(envs, logs)]
    regular_save = workdir / "checkpoints" / f"ckpt-{stopped_at + 2 - stopped_at % 2}.index"
    while not regular_save.exists():
        assert time.time() < deadline + 300 and all(w.poll() is None for w in restarted), \
            open(logs[0].name).read()[-3000:]
        time.sleep(0.05)
    restarted[0].send_signal(signal.SIGHUP)
    restarted[1].send_signal(signal.SIGINT)
    codes = [w.wait(timeout=300) for w in restarted]
    assert codes == [42, 42], [open(log.name).read()[-2000:] for log in logs]
    resumed_at = stopped_at
    saved = tf.train.latest_checkpoint(str(workdir / "checkpoints"))
    stopped_at = int(tf.train.load_checkpoint(saved).get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE"))
    assert saved == str(workdir / "checkpoints" / f"ckpt-{stopped_at}") and resumed_at < stopped_at < total
    assert f"Resumed from {workdir / 'checkpoints' / f'ckpt-{resumed_at}'} at step {resumed_at}." in \
        open(logs[0].name).read()

    restarted = [started(cmd, env, forked.PIPE, forked.PIPE) for env in envs]
    outputs = [w.communicate(timeout=400) for w in restarted]
    assert [w.returncode for w in restarted] == [0, 0], outputs[0][1][-3000:]
    assert f"Resumed from {workdir / 'checkpoints' / f'ckpt-{stopped_at}'} at step {stopped_at}." in outputs[0][1]
    assert f"Done: step {total}/{total}" in outputs[0][0]


def one_worker_of_two(tmp_path, data_dir, index: int, *extra: str) -> tuple[forked.Popen, object, list[str]]:
    """Worker `index` of a two-worker TF_CONFIG whose other worker never starts."""
    ports = free_ports(2)
    addresses = [f"127.0.0.1:{p}" for p in ports]
    env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": {"worker": addresses},
                                                  "task": {"type": "worker", "index": index}})}
    log = open(tmp_path / "worker.log", "w+")
    process = started(command(tmp_path / "run", data_dir, "--strategy=multi_worker", *extra), env, log, forked.STDOUT)
    return process, log, addresses


def wait_for_output(process: forked.Popen, log, text: str, timeout: float = 180) -> float:
    """Waits until the process has written `text`; returns when (time.time())."""
    deadline = time.time() + timeout
    while text not in open(log.name).read():
        assert process.poll() is None and time.time() < deadline, open(log.name).read()[-3000:]
        time.sleep(0.1)
    return time.time()


@pytest.mark.slow  # Two more trainings on a cluster (of one worker).
@pytest.mark.parametrize("dataset", ["folder", "prepared_by_the_run"])
def test_a_cluster_trains_on_a_folder_dataset_and_on_one_it_prepares(tmp_path, dataset):
    """The cluster is formed before the dataset is read: a folder's scan and a dataset's
    preparation run TensorFlow ops, after which TensorFlow refuses to set up the collective ops
    (every worker stopped with "Collective ops must be configured at program startup")."""
    if dataset == "folder":
        root = tmp_path / "pairs" / "train"
        root.mkdir(parents=True)
        for i in range(2):  # input | target, side by side
            pixels = np.random.default_rng(i).integers(0, 255, (32, 64, 3), dtype=np.uint8)
            tf.io.write_file(str(root / f"{i}.png"), tf.io.encode_png(pixels))
        data = [f"--dataset=folder:{tmp_path / 'pairs'}"]
    else:
        data = [f"--dataset={TINY_DATASET}", f"--data_dir={tmp_path / 'tfds'}"]  # Not prepared yet.
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(1)]}
    flags = [*data, f"--workdir={tmp_path / 'run'}", "--strategy=multi_worker", "--generator=resnet_6blocks",
             "--ngf=4", "--ndf=4", "--load_size=36", "--crop_size=32", "--steps=1", "--eval_examples=0", "--noprogress",
             "--cluster_timeout=60"]
    (_, stderr), = finish_all(start_all([[sys.executable, os.path.join(ROOT, "train.py"), *flags]],
                                        [{"TF_CONFIG": json.dumps({"cluster": cluster,
                                                                   "task": {"type": "worker", "index": 0}})}]))
    assert "Traceback" not in stderr
    assert tf.train.latest_checkpoint(str(tmp_path / "run" / "checkpoints")).endswith("ckpt-1")


def test_a_worker_whose_peer_never_starts_gives_up_after_the_cluster_timeout(tmp_path, data_dir):
    process, log, addresses = one_worker_of_two(tmp_path, data_dir, 0, "--cluster_timeout=5")
    try:
        waiting_since = wait_for_output(process, log, "Waiting up to 5 s (--cluster_timeout)")
        code = process.wait(timeout=60)
    finally:
        process.kill()
    output = open(log.name).read()
    assert code != 0 and time.time() - waiting_since < 5 + 15, output[-3000:]
    assert (f"error: The cluster did not form within 5 s (--cluster_timeout): worker 0 ({addresses[0]}) waited "
            f"for worker 1 ({addresses[1]}) of TF_CONFIG.") in output
    assert "Traceback" not in output


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_stop_signal_while_waiting_for_the_cluster_stops_the_worker_at_once(tmp_path, data_dir, signum):
    process, log, addresses = one_worker_of_two(tmp_path, data_dir, 1)  # the default timeout: 10 minutes
    try:
        wait_for_output(process, log, "Waiting up to 600 s (--cluster_timeout)")
        time.sleep(3)  # inside TensorFlow's wait for the other worker
        process.send_signal(signum)
        sent = time.time()
        code = process.wait(timeout=60)
    finally:
        process.kill()
    output = open(log.name).read()
    assert code != 0 and time.time() - sent < 10, output[-3000:]
    assert (f"error: {signum.name} received while worker 1 ({addresses[1]}) waited for worker 0 ({addresses[0]}) "
            "to form the cluster: stopped before training started.") in output
    assert "Traceback" not in output


@pytest.mark.parametrize("tf_config", [
    "not json", "[]", '{"cluster": {}}', '{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}',
    "[" * 100_000 + "]" * 100_000,  # Nested deeper than Python's stack: json.loads raised RecursionError.
    # One address, not a list of one: it was read as a list of characters (TensorFlow's traceback followed).
    '{"cluster": {"worker": "a:1"}, "task": {"type": "worker", "index": 0}}',
    '{"cluster": {"worker": ["a:1", 2]}, "task": {"type": "worker", "index": 0}}',
], ids=["text", "list", "no_task", "index_out_of_the_cluster", "deep", "one_address_not_in_a_list", "not_a_string"])
def test_a_tf_config_that_describes_no_cluster_is_one_message(tf_config):
    from pix2pix_tf.errors import ConfigError
    from pix2pix_tf.training.cluster import cluster_from_env

    with pytest.raises(ConfigError, match=r"^TF_CONFIG is not a valid cluster description \(\w+"):
        cluster_from_env({"TF_CONFIG": tf_config})
