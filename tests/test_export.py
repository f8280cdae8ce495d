"""A trained model out of the pipeline: dih.load_model and python -m dih.export on a real tiny run,
round-tripped to equal logits, and the one-sentence refusals."""

import json
import shutil

import pytest
import torch
import yaml
from conftest import ROOT, run_cli, summary

import dih
from dih.data import load_data
from dih.errors import UserError
from dih.store.artifacts import make_key
from dih.store.run_dir import RunDir
from dih.tools import export, precision_check


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One finished kd run on tiny synthetic data (a teacher and a student artifact), with a label, run from
    its own directory so artifacts.root stays relative as a user would leave it."""
    tmp = tmp_path_factory.mktemp("export")
    run_cli(
        tmp,
        "method=kd",
        "teacher_side.cache=false",
        "trainer.epochs=1",
        "trainer.milestones=[]",
        "dataset.label=blobs",
        "artifacts.root=artifacts",  # after conftest's absolute one: relative to the run's start directory
    )
    return tmp


@pytest.mark.slow  # reads the trained fixture: run.py end to end
def test_load_model_from_a_run_dir_and_its_artifact(trained):
    stages = summary(trained)["stages"]
    model = dih.load_model(trained / "run")
    assert not model.training
    direct = dih.load_model(trained / "artifacts" / stages["student"]["key"])
    teacher = dih.load_model(trained / "artifacts" / stages["teacher"]["key"])
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        logits = model(x).logits
        assert logits.shape == (3, 10)
        assert torch.equal(logits, direct(x).logits)
        assert not torch.allclose(logits, teacher(x).logits)  # the run's model is its student


@pytest.mark.slow  # reads the trained fixture: run.py end to end
def test_export_round_trips_to_equal_logits_with_its_metadata(trained, tmp_path):
    out = tmp_path / "student.pt2"
    assert export.main([str(trained / "run"), "--out", str(out)]) == 0
    files = {"dih.json": ""}
    module = torch.export.load(str(out), extra_files=files).module()  # plain torch, no dih
    meta = json.loads(files["dih.json"])
    assert meta["class_names"] == [f"class{i}" for i in range(10)] and meta["num_classes"] == 10
    assert meta["image_size"] == [16, 16] and meta["channels"] == 3 and meta["model"] == "res8"
    assert meta["dataset"] == "blobs" and meta["artifact"] == summary(trained)["stages"]["student"]["key"]
    data = load_data(yaml.safe_load((trained / "run" / "config.yaml").read_text())["dataset"])
    assert meta["mean"] == pytest.approx(list(data.mean)) and meta["std"] == pytest.approx(list(data.std))
    x = (data.test_images[:5].float() / 255 - torch.tensor(meta["mean"])[:, None, None]) / torch.tensor(
        meta["std"]
    )[:, None, None]
    with torch.no_grad():
        expected = dih.load_model(trained / "run")(x).logits
        assert torch.allclose(module(x), expected, atol=1e-5)
        assert module(x[:1]).shape == (1, 10)  # any batch size, not only the traced one
    again, meta_again = export.read(out)
    assert meta_again == meta
    with torch.no_grad():
        assert torch.allclose(again(x), expected, atol=1e-5)


@pytest.mark.slow  # reads the trained fixture: run.py end to end
def test_safetensors_export_holds_the_weights_and_the_same_metadata(trained, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file

    out = tmp_path / "student.safetensors"
    assert export.main([str(trained / "run"), "--out", str(out)]) == 0
    with safe_open(str(out), "pt") as f:  # plain safetensors: the header carries dih.json
        meta = json.loads(f.metadata()["dih.json"])
    assert meta == export.export(trained / "run", tmp_path / "student.pt2")  # what the .pt2 carries
    run_model = dih.load_model(trained / "run")
    weights = load_file(str(out))
    assert weights.keys() == run_model.state_dict().keys()
    assert all(torch.equal(weights[k], v) for k, v in run_model.state_dict().items())
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        expected = run_model(x).logits
        loaded = dih.load_model(out)
        assert not loaded.training
        assert torch.equal(loaded(x).logits, expected)
        module, meta_again = export.read(out)
        assert meta_again == meta and torch.equal(module(x), expected)


def test_a_safetensors_file_not_from_export_is_refused(tmp_path):
    from safetensors.torch import save_file

    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))  # no dih.json in its header
    with pytest.raises(UserError, match="not a safetensors file written by python -m dih.export"):
        dih.load_model(plain)
    wrong = tmp_path / "wrong.safetensors"  # a header naming res8, weights of something else
    header = {"dih.json": json.dumps({"model": "res8", "num_classes": 10})}
    save_file({"w": torch.zeros(2)}, str(wrong), metadata=header)
    with pytest.raises(UserError, match="export the run again"):
        dih.load_model(wrong)
    garbage = tmp_path / "half.safetensors"
    garbage.write_bytes(b"\x10\x00\x00")
    with pytest.raises(UserError, match="export the run again"):
        dih.load_model(garbage)


@pytest.mark.slow  # reads the trained fixture: run.py end to end
def test_the_relative_store_is_found_from_elsewhere(trained, tmp_path, monkeypatch):
    moved = tmp_path / "project"
    shutil.copytree(trained, moved)
    monkeypatch.chdir(tmp_path)  # neither the start directory nor the run's: found beside the run's parent
    key = summary(trained)["stages"]["student"]["key"]
    assert export.export(moved / "run", tmp_path / "m.pt2")["artifact"] == key


@pytest.mark.slow  # reads the trained fixture: run.py end to end
def test_a_run_reads_as_one_run_dir(trained):
    """summary.json holds each stage's key and the identity it hashes, as the artifact's meta.json does."""
    run = RunDir.finished(trained / "run")
    assert run.status == "done" and run.names()["method"] == "kd"
    assert list(run.stages) == ["teacher", "student"]
    for stage in run.stages:
        artifact = run.artifact(stage)
        assert artifact.key == run.key(stage) == make_key(stage, run.identity(stage))
        assert artifact.meta["identity"] == run.identity(stage)
        assert artifact.path == trained / "artifacts" / run.key(stage)
    assert run.identities() == {s: run.identity(s) for s in ("teacher", "student")}
    student = run.identity("student")
    assert student["loss"]["temperature"] == 5.0 and student["seed"] == run.seed


@pytest.mark.slow  # reads the trained fixture: run.py end to end
def test_every_tool_finds_a_relative_store_as_load_model_does(trained, tmp_path, monkeypatch):
    """precision_check looked only under artifacts.root from the current directory: a run moved elsewhere and
    read from a third directory was refused there while dih.load_model found it."""
    moved = tmp_path / "project"
    shutil.copytree(trained, moved)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert dih.load_model(moved / "run") is not None
    c = precision_check.check(moved / "run", device="cpu", seconds=0.01)
    teacher = summary(trained)["stages"]["teacher"]
    assert [r["classifier"] for r in c.rows] == ["teacher"]
    assert c.rows[0]["fp32"] == pytest.approx(teacher["test/acc_last"], abs=1e-4)
    assert RunDir.open(moved / "run").store("teacher") == moved / "artifacts"


@pytest.mark.slow  # reads the trained fixture: run.py end to end
def test_refusals_name_the_fix(trained, tmp_path):
    with pytest.raises(UserError, match="neither an artifact .* nor a run directory"):
        dih.load_model(tmp_path)
    (tmp_path / "config.yaml").write_text("dataset: {name: synthetic}\n")
    with pytest.raises(UserError, match="has not finished"):
        dih.load_model(tmp_path)
    lone = tmp_path / "lone"
    shutil.copytree(trained / "run", lone)  # its relative store is nowhere near
    with pytest.raises(UserError, match="pass the artifact directory"):
        dih.load_model(lone)
    assert export.main([str(tmp_path), "--out", str(tmp_path / "x.pt2")]) == 2
    # an artifact that holds no model (here a teacher's copy, marked as heads)
    heads = tmp_path / "store" / "heads-0123456789abcdef"
    shutil.copytree(trained / "artifacts" / summary(trained)["stages"]["teacher"]["key"], heads)
    meta = json.loads((heads / "meta.json").read_text())
    (heads / "meta.json").write_text(json.dumps({**meta, "kind": "heads", "key": heads.name}))
    with pytest.raises(UserError, match="is a heads artifact, which holds no model"):
        dih.load_model(heads)


def test_an_out_export_cannot_write_is_refused_before_any_work(trained, tmp_path, read_only_dir, capsys):
    """A suffix export does not write (.onnx would hold a torch.export program under that name), an existing
    directory, a read-only place: one sentence naming the path and the fix, exit 2, and nothing written."""
    (tmp_path / "taken").mkdir()
    for out, says in (
        (tmp_path / "model.onnx", "does not write; end it in .pt2 (a torch.export program) or .safetensors"),
        (tmp_path / "model", "names a format export does not write; end it in .pt2"),
        (tmp_path / "taken", "is a directory; give a file in it"),
        (read_only_dir / "student.pt2", f"Cannot write {read_only_dir / 'student.pt2'} ("),
        (read_only_dir / "student.safetensors", f"Cannot write {read_only_dir / 'student.safetensors'} ("),
    ):
        assert export.main([str(trained / "run"), "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and says in err and "--out" in err, err
        assert err.count(". ") == 0 and "\n" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["read-only", "taken"]
    assert not list((tmp_path / "taken").iterdir())


def test_import_dih_does_not_load_torch():
    import subprocess
    import sys

    code = "import sys, dih; assert callable(dih.load_model); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.slow  # reads the trained fixture: run.py end to end
def test_data_that_moved_is_refused_naming_the_flag(trained, tmp_path):
    """The data set's refusal says dataset.root; the command that reads it back has --data-root instead."""
    (tmp_path / "train").mkdir()  # an image folder with nothing in it
    artifact = dih.tools.loading.find_artifact(trained / "run")
    moved = {**artifact.meta, "identity": {**artifact.meta["identity"], "data": {"name": "folder"}}}
    artifact.meta = moved  # as if the student had been trained on an image folder, now gone
    with pytest.raises(UserError, match=r"--data-root") as err:
        settings = dih.tools.loading.data_settings(tmp_path / "no-run-here", artifact, str(tmp_path))
        dih.tools.loading.load_training_data(settings)
    assert "dataset.root" not in str(err.value)
