"""The export's targets drive it from the registry: export.py declares each registered target's
flags as its own, the exporter runs the enabled ones in the registry's order, and what export.py
prints, lists as model cards and names in a stop's summary are their `Published` records. A
target added to the registry (here a stand-in) is run, printed and cleaned up like the others."""

from __future__ import annotations

import os
import re
import signal
import sys

import pytest

from pix2pix_tf.errors import ConfigError, Interrupted
from pix2pix_tf.export import exporter, registry, saved_model_target, tflite_target, versions, web_target
from pix2pix_tf.export.target import FLAG_KINDS, Deferred, Flag, Published, Target

from export_helpers import ROOT, run, trained_run


def _sections(helpfull: str) -> dict[str, str]:
    """--helpfull's text by the module that defined the flags ("export.py:", "absl.app:", ...)."""
    parts = re.split(r"^(\S.*):$", helpfull, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def test_every_registered_target_s_flags_are_export_py_s_own():
    result = run([sys.executable, os.path.join(ROOT, "export.py"), "--helpfull"], timeout=120)
    own = _sections(result.stdout)[os.path.join(ROOT, "export.py")]
    for target in registry.TARGETS:
        for flag in target.flags:
            assert flag.kind in FLAG_KINDS, (target.name, flag)
            name = f"--[no]{flag.name}:" if flag.kind == "bool" else f"--{flag.name}:"
            assert name in own, (target.name, flag.name)
            words = " ".join(flag.help.split()[:4])
            assert words in " ".join(own.split()), (target.name, flag.name, words)
    defaults = {"tflite": "'float32,float16,dynamic_int8,int8'", "warmup_batch_sizes": "'1'",
                "max_pixels": "'16777216'", "int8_io": "'float32'", "web_variant": "'dynamic_int8'", "onnx": "'false'"}
    flat = " ".join(own.split())
    for name, default in defaults.items():
        assert re.search(rf"--(\[no\])?{name}: .*?\(default: {re.escape(default)}\)", flat), name


def test_the_registry_runs_the_saved_model_first_and_each_target_after_what_it_reads():
    names = [t.name for t in registry.TARGETS]
    assert names[0] == "saved_model" and len(set(names)) == len(names)
    for index, target in enumerate(registry.TARGETS):
        assert set(target.needs) <= set(names[:index]), target.name
        assert target.defaults().validate() == target.defaults()
    flags = [f.name for t in registry.TARGETS for f in t.flags]
    assert len(set(flags)) == len(flags)


def test_options_are_checked_alone_and_against_each_other():
    config = exporter.ExportConfig(workdir="w")
    resolved = exporter.resolve(config)
    assert resolved["tflite"].variants == tflite_target.Options().variants and not resolved["web"].enabled
    for targets, message in [
        ({"tflite": tflite_target.Options(variants=("float32", "int4"))}, "--tflite: unknown variant"),
        ({"saved_model": saved_model_target.Options(max_pixels=0)}, "--max_pixels must be at least 1, got 0"),
        ({"web": web_target.PageOptions(variant="float16"), "tflite": tflite_target.Options(variants=("float32",))},
         r"--web runs --web_variant=float16 in the page: add it to --tflite \(now float32\)\.$"),
        ({"web": web_target.PageOptions(variant="int8"), "tflite": tflite_target.Options(variants=("int8",),
                                                                                         int8_io="uint8")},
         r"--web runs --web_variant=int8 in the page, which feeds it floats: use --int8_io=float32 \(now uint8\)"),
        ({"jpeg": object()}, r"Unknown export target\(s\) \['jpeg'\]"),
        # They did nothing, without a word.
        ({"tflite": tflite_target.Options(variants=("float32",), int8_io="uint8")},
         r"^--int8_io=uint8 sets the int8 variant, and --tflite writes none \(now float32\): add int8 to --tflite, "
         r"or drop --int8_io=uint8\.$"),
        ({"tflite": tflite_target.Options(variants=(), int8_io="int8", calibration_examples=8)},
         r"^--int8_io=int8 and --calibration_examples=8 set the int8 variant, and --tflite writes none \(now "
         r"empty\)"),
    ]:
        with pytest.raises(ConfigError, match=message):
            exporter.resolve(exporter.ExportConfig(workdir="w", targets=targets))


def _record(target: str, **fields) -> Published:
    lines = fields.pop("lines", [])
    return Published(target, f"/e/{target}", None, lines=lambda: list(lines), **fields)


def test_what_export_py_prints_is_the_records_in_order():
    result = exporter.ExportResult(3, "ckpt-2", [
        _record("saved_model", lines=["SavedModel: /e/m/3", "Latency"], model_cards=("/e/m/3/card",)),
        _record("tflite", lines=["TFLite: /e/t", "  float32"], model_cards=("/e/t/card",), warnings=("WARNING: x",)),
        _record("web", usage=("Web page: /e/w",)),
        _record("onnx", lines=["ONNX: /e/o"], model_cards=("/e/o/card",)),
    ])
    assert result.lines() == ["SavedModel: /e/m/3", "Latency", "TFLite: /e/t", "  float32", "ONNX: /e/o",
                              "Model card: /e/m/3/card, /e/t/card, /e/o/card", "Web page: /e/w"]
    assert result.warnings() == ["WARNING: x"] and result.saved_model_dir == "/e/saved_model"
    assert result.record("web").path == "/e/web" and result.record("jpeg") is None


def _stand_in(name: str, stop: bool = False) -> Target:
    """A format of one text file, published as every target publishes (or stopped by SIGTERM)."""

    def publish(job, options, published) -> Published:
        if stop:
            raise Interrupted(signal.SIGTERM)

        def write(staging: str, final: str) -> str:
            with open(os.path.join(staging, "model.txt"), "w") as f:
                f.write(published["saved_model"].path)
            return os.path.join(final, "model.txt")

        folder, path = versions.publish_staged(os.path.join(job.export_dir, name, job.config.model_name),
                                               job.version, write)
        return Published(name, path, None, (), lambda: [f"{name}: {path}"], usage=(f"Use {folder}",))

    return Target(name, (Flag(name, "bool", True, "A stand-in format."),), lambda values: _Enabled(),
                  lambda export_dir, model: os.path.join(export_dir, name, model), publish, needs=("saved_model",))


class _Enabled:
    enabled = True

    def validate(self) -> _Enabled:
        return self


@pytest.mark.slow
def test_a_registered_target_is_run_printed_and_named_in_a_stop(tmp_path_factory, data_dir, tmp_path, monkeypatch):
    workdir = trained_run(tmp_path_factory, data_dir)
    left = tmp_path / "text" / f".m-1-999999@{versions._host()}-dead"  # A killed export's staging folder.
    left.mkdir(parents=True)
    monkeypatch.setattr(exporter, "TARGETS", (*registry.TARGETS, _stand_in("text")))
    config = exporter.ExportConfig(workdir=workdir, export_dir=str(tmp_path), model_name="m", check_examples=1,
                                    targets={"tflite": tflite_target.Options(variants=())})
    result = exporter.export(config)
    text = tmp_path / "text" / "m" / "1" / "model.txt"
    assert [p.target for p in result.published] == ["saved_model", "text"]
    assert text.read_text() == result.saved_model_dir == str(tmp_path / "m" / "1")
    assert result.lines()[0].startswith(f"SavedModel: {tmp_path / 'm' / '1'} (version 1")
    assert result.lines()[1:] == [f"text: {text}", f"Model card: {result.model_cards[0]}",
                                  f"Use {tmp_path / 'text' / 'm' / '1'}"]
    assert not left.exists()  # Every registered target's base is cleaned of dead exports' staging folders.

    monkeypatch.setattr(exporter, "TARGETS", (*registry.TARGETS, _stand_in("text"), _stand_in("late", stop=True)))
    with pytest.raises(Interrupted) as stop:
        exporter.export(config)
    assert stop.value.done == [f"published: {tmp_path / 'm' / '2'}, {tmp_path / 'text' / 'm' / '2' / 'model.txt'}; "
                               "nothing else was"]


def test_the_declarations_load_no_tensorflow():
    """export.py declares every target's flags from the registry, so --help answers at once: the
    registry and each target's declaration import no TensorFlow (their `publish` imports it)."""
    code = ("import sys; from pix2pix_tf.export import registry; "
            "assert registry.TARGETS; "
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    result = run([sys.executable, "-c", code], timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr


def test_each_target_s_deferred_work_exists():
    """A declaration names its work by module and function (`target.Deferred`): each resolves."""
    for target in registry.TARGETS:
        for field in ("publish", "check", "validate", "training_inputs"):
            work = getattr(target, field)
            if isinstance(work, Deferred):
                assert callable(work.resolve()), (target.name, field, work)
        assert isinstance(target.publish, Deferred), target.name
