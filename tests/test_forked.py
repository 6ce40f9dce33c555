"""tests/forked.py runs a command as `python` would: argv, environment, working directory,
streams, `__main__`, the interpreter's exit (atexit, exit codes, signals), in a process that
has TensorFlow imported and not started (no context, so no thread pools a fork would lose)."""

from __future__ import annotations

import os
import signal
import sys
import textwrap

import forked

PROGRAM = textwrap.dedent("""
    import atexit, json, os, sys, tempfile
    from tensorflow.python.eager import context
    atexit.register(lambda: print("atexit ran", flush=True))
    print(json.dumps({"argv": sys.argv, "cwd": os.getcwd(), "name": __name__, "path0": sys.path[0],
                      "main_file": getattr(sys.modules["__main__"], "__file__", None),
                      "tmp": tempfile.gettempdir(), "marker": os.environ.get("FORKED_MARKER"),
                      "tensorflow_loaded": "tensorflow" in sys.modules,
                      "tensorflow_started": context.context_safe() is not None}))
    sys.stderr.write(sys.stdin.read().upper())
    sys.exit(int(sys.argv[-1]))
""")


def test_a_script_runs_as_python_runs_it(tmp_path):
    import json

    script = tmp_path / "program.py"
    script.write_text(PROGRAM)
    (tmp_path / "tmp").mkdir()
    env = dict(os.environ, FORKED_MARKER="yes", TMPDIR=str(tmp_path / "tmp"))
    result = forked.run([sys.executable, str(script), "a", "3"], cwd=str(tmp_path), env=env, input="read me",
                        timeout=120)
    lines = result.stdout.splitlines()
    seen = json.loads(lines[0])
    assert result.returncode == 3 and lines[1] == "atexit ran" and result.stderr == "READ ME"
    assert seen == {"argv": [str(script), "a", "3"], "cwd": str(tmp_path), "name": "__main__",
                    "path0": str(tmp_path), "main_file": str(script), "tmp": str(tmp_path / "tmp"),
                    "marker": "yes", "tensorflow_loaded": True, "tensorflow_started": False}


def test_code_and_modules_run_with_their_argv_and_a_signal_ends_the_process():
    code = forked.run([sys.executable, "-c", "import sys; print(sys.argv); raise SystemExit('no')", "x"],
                      timeout=120)
    assert code.returncode == 1 and code.stdout == "['-c', 'x']\n" and code.stderr == "no\n"
    module = forked.run([sys.executable, "-m", "json.tool", "--compact"], input='{"a": [1, 2]}', timeout=120)
    assert module.returncode == 0 and module.stdout == '{"a":[1,2]}\n'
    with forked.Popen([sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"],
                      stdout=forked.PIPE, text=True) as sleeper:
        assert sleeper.stdout.readline() == "up\n" and sleeper.poll() is None
        sleeper.send_signal(signal.SIGTERM)
        assert sleeper.wait(timeout=30) == -signal.SIGTERM


def test_a_command_forks_from_a_parent_that_started_with_its_start_time_environment():
    """TensorFlow reads TF_CPP_MIN_LOG_LEVEL as it starts: another value, another zygote."""
    parent = [sys.executable, "-c", "import os; print(os.getppid())"]
    level = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
    first, again = (forked.run(parent, timeout=120).stdout for _ in range(2))
    other = forked.run(parent, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="1" if level != "1" else "2"),
                       timeout=120).stdout
    assert first == again != other
