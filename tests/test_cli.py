"""train.py and export.py as a user runs them: clear errors (their main, in this process:
tests/programs.py), an archive copied by hand, and how a stop request is handled. Signals sent
to fresh processes: tests/test_interrupts.py."""

from __future__ import annotations

import json
import os
import pathlib
import re
import signal
import stat
import subprocess
import sys
import time

import pytest

import forked
from conftest import TINY_DATASET, copied_run, error_lines
from programs import run_program

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def train_flags(workdir, data_dir, *extra: str) -> list[str]:
    return [f"--dataset={TINY_DATASET}", f"--data_dir={data_dir}", f"--workdir={workdir}", "--generator=unet_128",
            "--ngf=8", "--ndf=8", "--load_size=143", "--crop_size=128", "--eval_examples=1", "--sample_every=1000",
            *extra]


@pytest.mark.parametrize("flags,message", [
    (["--dataset=edges2cats"], "not a known dataset"),
    (["--dataset=folder:/nonexistent/images"], "no such directory"),
    (["--dataset=folder:"], "--dataset=folder: names no folder"),  # Not the current directory.
    (["--crop_size=160", "--load_size=143"], "larger than --load_size"),
    (["--crop_size=96", "--load_size=143"],
     "--crop_size=96: --generator=unet_128 takes images whose sides are multiples of 128; use --crop_size=128."),
    (["--lambda_l1=-1"], "non-negative"),
    (["--strategy=multi_worker"], "TF_CONFIG environment variable, which is not set"),
    (["--lr=nan"], "--lr must be a finite number, got nan."),
    (["--seed=9223372036854775808"], "--seed must be a 64-bit integer (below 2**63 in magnitude), got "),
    (["--discriminator=n_layers", "--n_layers_d=9"], "a PatchGAN of 9 layers leaves no patch of a 128x128 image"),
    (["--workdir="], "--workdir is empty: name a folder."),  # Not the current folder, nor "cannot be written".
])
def test_user_mistakes_get_a_message_not_a_traceback(tmp_path, data_dir, flags, message):
    result = run_program("train", *train_flags(tmp_path / "run", data_dir, "--steps=1", *flags))
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr[-3000:]
    assert result.stderr.count(message) == 1, result.stderr[-3000:]  # Once: not also as a log line.
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()  # Refused before anything is written: not even the folder stays.


@pytest.mark.parametrize("command", [
    ["train.py", "--steps=abc"], ["train.py", "--no_such_flag"], ["train.py", "--dataset=shapes", "extra"],
    ["export.py", "--version=abc"], ["export.py"], ["export.py", "--workdir=runs/x", "extra"],
    ["-m", "pix2pix_tf.translate", "--max_pixels=lots", "in.png"],
    ["-m", "pix2pix_tf.translate", "--workdir=runs/x", "in.png"], ["-m", "pix2pix_tf.evaluate", "--num_examples=x"],
    ["-m", "pix2pix_tf.demo", "--port=http"], ["pix2pix_tf/experiments/paper.py", "--setting=x=y"],
], ids=lambda command: " ".join(command))
def test_a_flag_mistake_is_one_error_line_not_the_whole_help(command):
    """A bad flag value, an unknown flag, a missing flag or a stray argument: one `error:` line
    that says how to list the flags, exit code 1, before TensorFlow loads (a real process:
    absl's own handling printed the module's help, or two FATAL lines)."""
    result = subprocess.run([sys.executable, *command], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and lines[0].endswith("(--helpshort lists the flags)"), lines
    assert "tensorflow" not in result.stderr.lower()


def test_a_name_the_terminal_cannot_encode_is_printed_escaped():
    """A result line naming a file that is not UTF-8 (lone surrogates in Python), on a stdout
    that is strict UTF-8 (Python's under a UTF-8 locale with PYTHONIOENCODING=utf-8:strict, or a
    pipe): escaped, not a UnicodeEncodeError traceback after the work was done."""
    program = ("import os\nfrom pix2pix_tf import cli\n\ndef main(argv):\n"
               "    cli.say('Translated 1 image(s) into ' + os.fsdecode(b'out_\\xe9'))\n    return 0\n\n"
               "cli.run_program(main)\n")
    result = subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True, timeout=60,
                            env={**os.environ, "PYTHONIOENCODING": "utf-8:strict"})
    assert result.returncode == 0 and result.stdout == b"Translated 1 image(s) into out_\\udce9\n", result.stderr


def fake_authors_archive(path, name: str, splits=(("train", 6), ("val", 2))) -> None:
    """`name.tar.gz` in the published layout: name/<split>/<i>_AB.jpg, A|B side by side, 512x256."""
    import io
    import tarfile

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(1)
    with tarfile.open(path, "w:gz") as archive:
        for split, count in splits:
            for i in range(count):
                buffer = io.BytesIO()
                Image.fromarray(rng.integers(0, 256, (256, 512, 3), dtype=np.uint8)).save(buffer, "JPEG")
                member = tarfile.TarInfo(f"{name}/{split}/{i + 1}_AB.jpg")
                member.size = buffer.tell()
                buffer.seek(0)
                archive.addfile(member, buffer)


@pytest.mark.slow
def test_an_authors_archive_copied_by_hand_trains_offline(tmp_path, monkeypatch):
    manual = tmp_path / "tfds" / "downloads" / "manual"
    manual.mkdir(parents=True)
    fake_authors_archive(manual / "edges2shoes.tar.gz", "edges2shoes")
    # No proxy, no route: any attempt to download would fail instead of reaching a server.
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
    result = run_program("train", "--dataset=edges2shoes", f"--data_dir={tmp_path / 'tfds'}",
                         f"--workdir={tmp_path / 'run'}", "--generator=unet_128", "--ngf=8", "--ndf=8",
                         "--load_size=143", "--crop_size=128", "--eval_examples=0", "--steps=3")  # Steps only.
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Done: step 3/3" in result.stdout
    # Output to a pipe (a log file): the progress as plain lines, the last with the losses.
    last = re.search(r"^3/3 step\(s\) - \d+s( - \w+: \S+)+$", result.stdout, re.M)
    assert last and " - g_l1: " in last[0] and " - g_gan: " in last[0], result.stdout
    assert "\x1b" not in result.stdout
    assert "\r" not in result.stderr, "tfds progress bar in a log"
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["data"]["direction"] == "AtoB" and config["data"]["dataset"] == "edges2shoes"


def damaged_config(workdir, data_dir, defect: str) -> None:
    """A run's config.json with one kind of damage a hand edit or a bad copy leaves."""
    from conftest import tiny_config

    tiny_config(workdir, data_dir).save(str(workdir))
    path = workdir / "config.json"
    if defect == "truncated":
        path.write_text(path.read_text()[:100])
        return
    if defect in ("a_fifo", "huge"):  # Read without blocking and bounded: neither hangs nor fills the memory.
        path.unlink()
        os.mkfifo(path) if defect == "a_fifo" else path.write_text(" " * (16 * 2**20 + 1))
        return
    values = json.loads(path.read_text())
    if defect == "not_an_object":
        values = [values]
    elif defect == "section_of_another_type":
        values["model"] = []
    elif defect == "null_field":
        values["model"]["ngf"] = None
    elif defect == "unknown_generator":
        values["model"]["generator"] = "unet_512"
    elif defect == "unknown_top_level_key":
        values["notes"] = "tuned by hand"
    path.write_text(json.dumps(values))


def as_it_is(path: pathlib.Path) -> str:
    """The file's text, or that it is a FIFO (never read: it would block)."""
    return "a FIFO" if stat.S_ISFIFO(path.stat().st_mode) else path.read_text()


@pytest.mark.parametrize("program", ["train", "export"])
@pytest.mark.parametrize("defect,message", [
    ("not_an_object", "config.json must hold a JSON object with the sections model, data, loss, optim, run"),
    ("section_of_another_type", "config.json: section 'model' must be a JSON object, not a list"),
    ("null_field", "config.json: model.ngf must be an integer, not null"),
    ("unknown_generator", "config.json, section 'model': --generator='unet_512' is not one of"),
    ("unknown_top_level_key", "config.json: unknown sections ['notes']"),
    ("truncated", "config.json is not JSON (JSONDecodeError: "),
    ("a_fifo", "config.json is not a regular file (a FIFO)"),
    ("huge", "config.json is larger than 16 MB"),
])
def test_a_damaged_config_json_is_named_not_a_traceback(tmp_path, data_dir, program, defect, message):
    """Resuming (train.py) and exporting read config.json alike, and refuse it alike."""
    workdir = tmp_path / "run"
    damaged_config(workdir, data_dir, defect)
    before = as_it_is(workdir / "config.json")
    flags = train_flags(workdir, data_dir, "--steps=1") if program == "train" else [f"--workdir={workdir}"]
    result = run_program(program, *flags)
    assert result.returncode == 1, result.stderr[-3000:]
    assert f"error: {workdir / 'config.json'}" in result.stderr and message in result.stderr
    assert "Traceback" not in result.stderr
    assert as_it_is(workdir / "config.json") == before  # nothing dropped by a save


def test_a_stop_landing_where_python_drops_exceptions_is_sent_again():
    """Python prints and drops an exception raised in `__del__` or in a weakref callback
    (TensorFlow frees functions in both), so a stop raised there is sent again rather than
    lost; any other dropped exception is reported as before."""
    import weakref

    from pix2pix_tf import cli

    class Finalized:
        def __del__(self):
            raise cli.Interrupted(signal.SIGUSR1)

    class Referent:
        pass

    def callback(_):
        raise cli.Interrupted(signal.SIGUSR2)

    class Broken:
        def __del__(self):
            raise ValueError("not a stop")

    received, reported = [], []
    previous = {signum: signal.signal(signum, lambda signum, frame: received.append(signum))
                for signum in (signal.SIGUSR1, signal.SIGUSR2)}
    hook, sys.unraisablehook = sys.unraisablehook, cli.send_dropped_stops_again(reported.append)
    try:
        Finalized()
        referent = Referent()
        reference = weakref.ref(referent, callback)
        del referent
        Broken()
        deadline = time.monotonic() + 10
        while len(received) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        sys.unraisablehook = hook
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    assert sorted(received) == [signal.SIGUSR1, signal.SIGUSR2] and reference() is None
    assert [type(r.exc_value) for r in reported] == [ValueError]


def package_function():
    """`program(library)`: a function of the package's code (its file name is cli.py's) that
    calls other code, then returns 'not stopped'."""
    from pix2pix_tf import cli

    namespace = {}
    exec(compile("def program(library):\n    library()\n    return 'not stopped'\n", cli.__file__, "exec"),
         namespace)
    return namespace["program"]


def test_a_stop_lands_in_the_programs_own_code():
    """A stop that arrives while other code runs (TensorFlow's Python, called from its C code,
    which may not expect an exception: a SystemError and an unrelated error followed) waits for
    the program's code: the call under way finishes and the stop is raised at the next line of
    the nearest frame of the program's code; where none runs, it is sent again after
    `cli.PATIENCE` and raised where it is."""
    from pix2pix_tf import cli
    from pix2pix_tf.errors import Interrupted

    program = package_function()
    finished = []

    def library():  # This test's code: outside the package.
        assert cli._raise_interrupted(signal.SIGUSR1, sys._getframe()) is None  # Not raised here...
        finished.append("the library's call")

    tracing, received = sys.gettrace(), []
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: received.append(signum))
    try:
        with pytest.raises(Interrupted) as stop:
            program(library)
        assert finished == ["the library's call"] and stop.value.signum == signal.SIGUSR1
        assert "program" in [entry.name for entry in stop.traceback]  # ...but in the program's frame.
        assert sys.gettrace() is tracing and cli._deferred_since == {}

        inside = eval(compile("sys._getframe()", cli.__file__, "eval"))  # A frame of the package's code.
        with pytest.raises(Interrupted):
            cli._raise_interrupted(signal.SIGUSR1, inside)  # Already there: raised at once.

        elsewhere = sys._getframe()  # No frame of the package's code will run: the stop waits for PATIENCE.
        started = time.monotonic()
        assert cli._raise_interrupted(signal.SIGUSR1, elsewhere) is None
        while not received and time.monotonic() < started + 10:
            time.sleep(0.01)
        # Sent again once, after PATIENCE (the stop that landed above is not sent again)...
        assert received == [signal.SIGUSR1] and time.monotonic() - started >= cli.PATIENCE
        with pytest.raises(Interrupted):
            cli._raise_interrupted(signal.SIGUSR1, elsewhere)  # ...and raised where it is.
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert cli._deferred_since == {} and sys.gettrace() is tracing


def test_a_stop_that_other_code_turns_into_another_error_ends_the_program_as_the_stop(capsys):
    """Raised where it is (past `cli.PATIENCE`), a stop can land in Python code that C code called
    and that C code does not expect an exception: it drops the stop and fails with an error of its
    own (`SystemError: ... bad argument to internal function` from inside TensorFlow), or the
    program wraps that error in one of its own. The program still ends with the stop's line and
    exit code, not a traceback; without a stop, an unexpected error keeps its traceback."""
    from pix2pix_tf import cli
    from pix2pix_tf.errors import InferenceError, Interrupted

    def program(error: Exception, stop: bool):
        def main(argv):
            if stop:
                try:
                    cli._raise_interrupted(signal.SIGTERM, None)
                except Interrupted:
                    pass  # What C code does that does not expect the exception: the stop is gone...
            raise error  # ...and it fails in its own way.
        return cli.guarded(main)

    internal = SystemError("Objects/listobject.c:338: bad argument to internal function")
    for error in (internal, InferenceError("The model could not translate 03.png.")):
        assert program(error, stop=True)(["evaluate"]) == 128 + signal.SIGTERM
        assert capsys.readouterr().err.strip() == "error: SIGTERM received: stopped."
    with pytest.raises(SystemError):  # A bug, not a stop: its traceback is what a developer needs.
        program(internal, stop=False)(["evaluate"])
    assert program(InferenceError("The model could not translate 03.png."), stop=False)(["evaluate"]) == 1
    assert capsys.readouterr().err.strip() == "error: The model could not translate 03.png."


def test_a_first_stop_is_a_request_and_a_second_ctrl_c_stops_at_once():
    """During the steps SIGINT and SIGTERM ask for a checkpoint after the current step (the
    runs in processes of their own: tests/test_interrupts.py::test_train); a second Ctrl-C does not wait."""
    from pix2pix_tf.errors import Interrupted
    from pix2pix_tf.training.stopping import stop_requests

    before = signal.getsignal(signal.SIGINT)  # Python's own; ignored where the shell started us in the background.
    with stop_requests() as requested:
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)
        assert requested == ["SIGINT", "SIGTERM"]  # Requests only: the step in progress goes on.
        with pytest.raises(Interrupted) as stopped:
            os.kill(os.getpid(), signal.SIGINT)
    assert stopped.value.signum == signal.SIGINT
    assert signal.getsignal(signal.SIGINT) is before  # The handler it replaced, back.


def test_a_second_ctrl_c_lands_in_the_programs_code_as_every_stop_of_a_program_does():
    """In a program (`cli.run_program`'s handlers), the second Ctrl-C goes through the
    program's handler: one that arrives while other code runs (TensorFlow's, during the first
    step) is raised at the next line of the program's code, not inside that code, and is
    remembered as the stop (`cli.guarded`)."""
    from pix2pix_tf import cli
    from pix2pix_tf.errors import Interrupted
    from pix2pix_tf.training.stopping import stop_requests

    program = package_function()
    finished = []

    def library():  # This test's code: outside the package.
        os.kill(os.getpid(), signal.SIGINT)  # The second Ctrl-C: not raised here...
        finished.append("the library's call")

    previous = signal.signal(signal.SIGINT, cli._raise_interrupted)
    try:
        with stop_requests() as requested:
            os.kill(os.getpid(), signal.SIGINT)
            assert requested == ["SIGINT"]
            with pytest.raises(Interrupted) as stop:
                program(library)
        assert finished == ["the library's call"] and stop.value.signum == signal.SIGINT
        assert "program" in [entry.name for entry in stop.traceback]  # ...but in the program's frame.
        assert cli._raised == [signal.SIGINT] and cli._deferred_since == {}
    finally:
        signal.signal(signal.SIGINT, previous)
        cli._raised.clear()


def test_a_list_flag_counts_a_repeated_item_once_in_every_program():
    """`--tflite=float32,float32` is one variant, not the same work written and reported twice
    (the benchmark command's test passes repeats end to end). Every program declares its list
    flags through `cli.define_list`."""
    import pathlib

    from absl import flags

    from pix2pix_tf import cli

    values = flags.FlagValues()
    cli.define_list("variants", ["b", "a", "b"], "Variants.", values)
    assert values["variants"].default == ["b", "a"]
    values(["program", "--variants=c,a,c,a"])
    flags.DEFINE_list("plain", [], "absl's own, for its --help wording.", values)
    assert values.variants == ["c", "a"] and values["variants"].flag_type() == values["plain"].flag_type()
    root = pathlib.Path(__file__).resolve().parent.parent
    sources = [*root.glob("*.py"), *(root / "pix2pix_tf").rglob("*.py")]
    direct = [str(p.relative_to(root)) for p in sources
              if "flags.DEFINE_list(" in p.read_text() and p.name != "cli.py"]
    assert direct == []


def test_a_tilde_in_a_path_flag_is_the_home_folder_in_every_program(tmp_path, monkeypatch):
    """`--workdir=~/runs/x`: the shell leaves a tilde after `=` as typed, so each program expands
    it (else train made a folder named `~` in the current one). Each refusal names the file in
    the home folder that the flag reached; every path flag of every program is declared so."""
    monkeypatch.setenv("HOME", str(tmp_path))
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    for program, flags_given, refusal in (
            ("train", ["--workdir=~/notes.txt"], f"--workdir={notes} is a file; a run needs a folder."),
            ("export", ["--workdir=~/notes.txt"], f"--workdir={notes} is a file; a run needs a folder."),
            ("translate", ["--workdir=~/run", "--output_dir=~/notes.txt", "--input=~/in.png"],
             f"--output_dir={notes} is a file; it must name a folder to write into."),
            ("evaluate", ["--workdir=~/run", "--output_dir=~/notes.txt"],
             f"--output_dir={notes} is a file; it must name a folder to write into.")):
        result = run_program(program, *flags_given)
        assert result.returncode == 1 and f"error: {refusal}" in result.stderr, (program, result.stderr[-2000:])
    assert notes.read_text() == "my notes" and not os.path.exists("~")  # No folder named `~` made here.
    root = pathlib.Path(__file__).resolve().parent.parent
    path_flags = re.compile(r'DEFINE_string\(\s*"(workdir|checkpoint|output_dir|export_dir|data_dir|root|images_dir|'
                            r'segmenter|segmenter_cache|inception_weights|json)"')
    sources = [*root.glob("*.py"), *(root / "pix2pix_tf").rglob("*.py")]
    assert [str(p.relative_to(root)) for p in sources if path_flags.search(p.read_text())] == []
    path_lists = re.compile(r'DEFINE_multi_string\(\s*"(input|inputs|images)"')
    assert [str(p.relative_to(root)) for p in sources if path_lists.search(p.read_text())] == []


def test_translate_reads_an_input_under_a_tilde_and_refuses_an_empty_one(tmp_path, monkeypatch, run_of_six):
    """`--input=~/photos` (repeatable) is the home folder's, as every path flag is; `--input=` is
    named as an empty path, not reported as ": no such file or folder"."""
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.png").write_bytes(_tiny_png())
    result = run_program("translate", f"--workdir={run_of_six}", "--output_dir=~/out", "--input=~/photos",
                         "--noprogress")
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "out" / "a.png").is_file() and not os.path.exists("~")
    for empty in (["--input="], [""]):
        refused = run_program("translate", f"--workdir={run_of_six}", "--output_dir=~/out", *empty)
        assert refused.returncode == 1, refused.stderr[-2000:]
        assert "error: An empty input path: name an image file or folder." in refused.stderr


def test_a_folder_to_write_into_that_is_a_file_is_refused_before_any_work(tmp_path, run_of_six):
    """translate's and evaluate's --output_dir (evaluate's default folder too), export's
    --export_dir: the file is named and left as it was, instead of an error from deep inside
    the writing ("File exists"); an empty --export_dir is named too, not "cannot be written"."""
    run = copied_run(run_of_six, tmp_path / "run")
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    image = tmp_path / "in.png"
    image.write_bytes(b"not read: refused first")
    for program, flag, others in (("translate", "output_dir", [f"--input={image}"]),
                                  ("evaluate", "output_dir", []), ("evaluate", "segmenter_cache", []),
                                  ("export", "export_dir", [])):
        result = run_program(program, f"--workdir={run}", f"--{flag}={notes}", *others)
        assert result.returncode == 1, (program, result.stderr[-2000:])
        assert f"error: --{flag}={notes} is a file; it must name a folder to write into." in result.stderr
        assert "Traceback" not in result.stderr and notes.read_text() == "my notes"
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    result = run_program("export", f"--workdir={run}", f"--export_dir={dangling}")
    assert error_lines(result) == [f"error: --export_dir={dangling} is a symbolic link to nothing "
                                   f"({tmp_path / 'nowhere'}); it must name a folder to write into."]
    empty = run_program("export", f"--workdir={run}", "--export_dir=")
    assert empty.returncode == 1 and "error: --export_dir is empty: name a folder." in empty.stderr
    empty = run_program("export", "--workdir=")  # Not the current folder: the run to export.
    assert empty.returncode == 1 and "error: --workdir is required: the training run to export." in empty.stderr
    # evaluate's default folder (<workdir>/eval/<split>_<model>_<mode>) under a file: named
    # before any image is measured, the file kept.
    (run / "eval").write_text("my notes")
    default = run_program("evaluate", f"--workdir={run}", "--nofcn")
    assert default.returncode == 1, default.stderr[-2000:]
    assert f"error: --output_dir (its default)={run / 'eval'}{os.sep}" in default.stderr
    assert "cannot be written (Not a directory)" in default.stderr and "Evaluating" not in default.stderr
    assert "Traceback" not in default.stderr and (run / "eval").read_text() == "my notes"


def test_progress_in_a_log_is_plain_lines_of_means(capsys, monkeypatch):
    """Output that is not a terminal gets no redraws and no control codes: a line at most every
    LOG_INTERVAL_SECONDS and the last one, each value its mean since the previous line."""
    from pix2pix_tf import progress

    monkeypatch.setattr(progress, "LOG_INTERVAL_SECONDS", 3600.0)
    bar = progress.Progress(3, "step")
    bar.update(1, [("g_l1", 1.0)])
    bar.update(2, [("g_l1", 2.0)])
    assert capsys.readouterr().out == ""  # Within the interval: nothing yet.
    monkeypatch.setattr(progress, "LOG_INTERVAL_SECONDS", 0.0)
    bar.update(3, [("g_l1", 6.0)])
    assert re.fullmatch(r"3/3 step\(s\) - \d+s - g_l1: 3\.0000\n", capsys.readouterr().out)


WAITING_PROGRAM = """
import sys, time
from pix2pix_tf import cli

def main(argv):
    print("output still in stdout's buffer")
    print("waiting", file=sys.stderr, flush=True)
    while True:
        time.sleep(0.02)

cli.run_program(main)
"""


@pytest.mark.parametrize("nohup", [False, True])
def test_a_hangup_stops_a_program_unless_it_was_started_ignoring_it(tmp_path, nohup):
    """SIGHUP (its terminal or ssh session closed) stops every program as SIGTERM does; one that
    `nohup` started ignores it. A stdout whose reader has gone (its end of the pipe closed) takes
    what is left in the buffer without a word at exit (Python would print a BrokenPipeError)."""
    script = tmp_path / "waiting.py"
    script.write_text(WAITING_PROGRAM)
    # `nohup`'s part, by the shell (an ignored signal stays ignored through exec); not a `preexec_fn`,
    # which would run Python in a child forked from this process's threads.
    ignoring = 'trap "" HUP; ' if nohup else ""
    env = {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}  # A buffered stdout.
    process = subprocess.Popen(["sh", "-c", ignoring + 'exec "$0" "$@"', sys.executable, str(script)], text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(env, PYTHONPATH=ROOT))
    assert process.stderr.readline() == "waiting\n"
    process.stdout.close()  # `| head` has read what it wanted.
    process.send_signal(signal.SIGHUP)
    if nohup:
        time.sleep(0.5)  # It would have stopped at once (the loop is the program's own code).
        process.send_signal(signal.SIGTERM)
    stderr = process.stderr.read()
    stopped_by = signal.SIGTERM if nohup else signal.SIGHUP
    assert process.wait(30) == 128 + stopped_by
    assert stderr.strip() == f"error: {stopped_by.name} received: stopped.", stderr


FINISHED_PROGRAM = """
import atexit, os, signal, sys, time
from pix2pix_tf import cli

def main(argv):
    print("Written: the report")
    # The interpreter's exit after the work (TensorFlow's teardown takes a second or more): a stop lands there.
    atexit.register(lambda: (os.kill(os.getpid(), getattr(signal, argv[1])), time.sleep(60)))
    return int(argv[2])

cli.run_program(main)
"""


@pytest.mark.parametrize("signum,code", [(signal.SIGTERM, 0), (signal.SIGINT, 3)])
def test_a_stop_after_the_program_finished_ends_it_at_once_with_its_own_exit_code(tmp_path, signum, code):
    """It ended with the signal's exit code (130 for work that was done) and no line at all."""
    script = tmp_path / "finished.py"
    script.write_text(FINISHED_PROGRAM)
    result = subprocess.run([sys.executable, str(script), signum.name, str(code)], capture_output=True, text=True,
                            env=dict(os.environ, PYTHONPATH=ROOT), timeout=30)
    assert result.returncode == code and result.stdout == "Written: the report\n"
    assert result.stderr == f"{signum.name} received after the program had finished: exiting now (exit code {code}).\n"


PRINTING_PROGRAM = """
import sys
from pix2pix_tf import cli

def main(argv):
    print("waiting", file=sys.stderr, flush=True)
    sys.stdin.readline()  # Until its stdout's reader has gone.
    print("the summary line of work that is done")
    if argv[1:] == ["broken_socket"]:  # A BrokenPipeError of the program's own work, its stdout fine.
        raise BrokenPipeError(32, "Broken pipe")
    return 0

cli.run_program(main)
"""


@pytest.mark.parametrize("buffered", [False, True])
def test_a_program_whose_output_reader_has_gone_says_so_and_ends_as_sigpipe_would(tmp_path, buffered):
    """`translate ... | head -c 5`: the reader closes its end before the program's last line.
    Unbuffered, the print fails where it is; buffered, the flush at exit does. Either way one line
    and SIGPIPE's exit code (as a Unix tool ends there), not `error: Broken pipe` and 1, nor a
    BrokenPipeError report at exit with 120, nor a silent 0."""
    script = tmp_path / "printing.py"
    script.write_text(PRINTING_PROGRAM)
    env = {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}
    if not buffered:
        env["PYTHONUNBUFFERED"] = "1"
    process = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=dict(env, PYTHONPATH=ROOT))
    assert process.stderr.readline() == "waiting\n"
    process.stdout.close()  # `| head -c 5` has read what it wanted.
    _, stderr = process.communicate("go\n", timeout=30)
    lost = "its last output is lost" if buffered else "stopped where it could not print"
    assert stderr.strip() == f"error: The standard output's reader has gone (Broken pipe): {lost}.", stderr
    assert process.returncode == 128 + signal.SIGPIPE


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs Linux's /dev/full")
def test_a_program_whose_output_is_a_full_device_says_so_and_keeps_its_work(tmp_path, data_dir, run_of_six):
    """`translate ... > /dev/full`: the images are written and the result line, which stdout cannot
    take, comes in the error, not "No space left on the device holding:" naming no path. A
    training whose progress cannot be written checkpoints and stops saying why, with exit code 1
    (a reader that has gone is SIGPIPE's 141, tests/test_interrupts.py), not "SIGPIPE received"."""
    run = copied_run(run_of_six, tmp_path / "run")
    image = tmp_path / "in.png"
    image.write_bytes(_tiny_png())
    with open("/dev/full", "w") as full:
        translated = forked.Popen([sys.executable, "-m", "pix2pix_tf.translate", f"--workdir={run}",
                                   f"--output_dir={tmp_path / 'out'}", "--noprogress", str(image)],
                                  stdout=full, stderr=forked.PIPE, text=True)
        _, stderr = translated.communicate(timeout=300)
        assert translated.returncode == 1, stderr[-3000:]
        assert stderr.rstrip().splitlines()[-1].startswith(
            "error: The standard output cannot be written (No space left on device); it would have said: "
            f"Translated 1 image(s) into {tmp_path / 'out'} with checkpoint "), stderr[-3000:]
        assert (tmp_path / "out" / "in.png").is_file()
        trained = forked.Popen([sys.executable, os.path.join(ROOT, "train.py"),
                                *train_flags(run, data_dir, "--steps=7", "--eval_examples=0", "--seed=7")],
                               stdout=full, stderr=forked.PIPE, text=True)
        _, stderr = trained.communicate(timeout=300)
    assert trained.returncode == 1 and "Traceback" not in stderr, stderr[-3000:]
    assert stderr.rstrip().endswith(
        "error: The standard output cannot be written (No space left on device): stopped; step 7/7 checkpointed "
        f"({run / 'checkpoints' / 'ckpt-7'}); run the same command to resume."), stderr[-3000:]
    assert (run / "checkpoints" / "ckpt-7.index").is_file()


def test_a_training_stopped_by_its_lost_output_says_which_loss_it_was():
    """train.py's closing line and exit code when its progress could not be written
    (`errors.OutputLost`): a reader that has gone, through a pipe or a closed terminal, ends as
    SIGPIPE would (141); a full device is an error (1). No "SIGPIPE received": none was sent."""
    import errno

    from pix2pix_tf.errors import OutputLost

    for error, reason, code in (
            (BrokenPipeError(errno.EPIPE, "Broken pipe"), "The standard output's reader has gone (Broken pipe)", 141),
            (OSError(errno.EIO, "Input/output error"), "The standard output's reader has gone (Input/output error)",
             141),
            (OSError(errno.ENOSPC, "No space left on device"),
             "The standard output cannot be written (No space left on device)", 1)):
        stop = OutputLost(error)
        assert (stop.reason, stop.exit_code) == (reason, code)


def _tiny_png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 10, 10)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_broken_pipe_of_the_programs_own_work_is_not_taken_for_its_output_reader_gone(tmp_path):
    script = tmp_path / "printing.py"
    script.write_text(PRINTING_PROGRAM)
    result = subprocess.run([sys.executable, str(script), "broken_socket"], input="go\n", capture_output=True,
                            text=True, env=dict(os.environ, PYTHONPATH=ROOT), timeout=30)
    assert result.stdout == "the summary line of work that is done\n"
    assert result.stderr.splitlines() == ["waiting", "error: Broken pipe"], result.stderr
    assert result.returncode == 1


CLOSED_STREAMS_PROGRAM = """
import os, sys
from pix2pix_tf import cli
from pix2pix_tf.progress import Progress

def main(argv):
    with open(argv[1], "w") as data:  # Would take descriptor 1 or 2, were it free.
        os.write(1, b"what C++ code writes to stdout ")
        os.write(2, b"and to stderr")
        data.write("the program's data")
    Progress(1, "step").update(1, [("g_l1", 0.5)])
    print("the summary line")
    return 0

cli.run_program(main)
"""


@pytest.mark.parametrize("closed", [(1,), (1, 2), (0, 1, 2)], ids=["stdout", "stdout_stderr", "all"])
def test_a_program_started_with_standard_streams_closed_runs_and_its_files_get_only_its_data(tmp_path, closed):
    """`program >&-` (or `2>&-`, `<&-`): the closed streams are /dev/null, not None (a traceback at
    the first progress line) and not free descriptors that the program's next file would take."""
    script, data = tmp_path / "closed.py", tmp_path / "data.txt"
    script.write_text(CLOSED_STREAMS_PROGRAM)
    # The shell closes them, as a user's would: a `preexec_fn` would run Python in a child forked
    # from this process's threads (gRPC's, TensorFlow's), which can abort it.
    closing = " ".join(f"{fd}<&-" if fd == 0 else f"{fd}>&-" for fd in closed)
    process = subprocess.Popen(["sh", "-c", f'exec "$0" "$@" {closing}', sys.executable, str(script), str(data)],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env=dict(os.environ, PYTHONPATH=ROOT))
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert data.read_text() == "the program's data"
    assert stderr == (b"" if 2 in closed else b"and to stderr")
