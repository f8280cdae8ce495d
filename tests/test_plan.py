"""The plan: typed stage specs whose keys hash exactly what their builds read, versioned components, the
cohort cache as a planned stage, and a sweep's plan deduplicated across runs."""

import dataclasses
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from conftest import ROOT, TINY, run_cli, summary

from dih import stages
from dih.config import compose
from dih.device import cpu_has_native_bf16
from dih.losses import KDLoss
from dih.models import LinearHeads
from dih.plan.chain import plan_run, runtime
from dih.plan.listing import configs_for, distinct
from dih.stages.specs import SPECS, Spec
from dih.store.artifacts import ArtifactStore
from dih.train.engine import Recipe

SWEEPS = ROOT / "multirun_sweeps"


def plan_of(*overrides: str, tiny: bool = False) -> dict[str, Spec]:
    cfg = compose.compose_run([*(TINY if tiny else []), *overrides])
    return {p.name: p.spec for p in plan_run(cfg)}


def keys(*overrides: str) -> dict[str, str]:
    return {name: spec.key for name, spec in plan_of(*overrides).items()}


# ---- what each method plans --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["method=ce"], ["student"]),
        (["method=kd"], ["teacher", "cohort", "student"]),  # 200 epochs: the cache pays (auto)
        (["method=kd", "trainer.epochs=100", "trainer.milestones=[30,60]"], ["teacher", "student"]),
        (["method=kd", "teacher_side.cache=false"], ["teacher", "student"]),
        (["method=dih"], ["teacher", "heads", "cohort", "student"]),
        (["method=at"], ["teacher", "student"]),  # a feature loss never reads the cache
        (["method=fitnets"], ["teacher", "hint", "cohort", "student"]),
        (["method=takd"], ["teacher", "assistant_cohort", "assistant", "cohort", "student"]),
        (["method=mhkd"], ["teacher", "heads", "student"]),
        (["method=dih", "stage=heads"], ["teacher", "heads"]),
        (["method=takd", "stage=heads"], ["teacher", "assistant_cohort", "assistant"]),
    ],
)
def test_each_method_plans_its_stages_in_order(overrides, expected):
    plan = plan_of(*overrides)
    assert list(plan) == expected
    for name, spec in plan.items():  # every upstream key is planned before the stage that reads it
        earlier = [s.key for s in list(plan.values())[: list(plan).index(name)]]
        assert set(spec.upstream().values()) <= set(earlier), name


def test_cached_student_reads_the_cohort_not_the_teacher():
    plan = plan_of("method=dih")
    student, cache = plan["student"], plan["cohort"]
    assert student.upstream() == {"cohort": cache.key}
    assert cache.upstream() == {"teacher": plan["teacher"].key, "heads": plan["heads"].key}
    live = plan_of("method=dih", "teacher_side.cache=false")["student"]
    assert live.upstream() == {"teacher": plan["teacher"].key, "heads": plan["heads"].key}
    assert live.key != student.key  # float16 cached logits are not the live teacher's: another artifact


def test_takd_student_learns_from_the_assistant():
    plan = plan_of("method=takd", "teacher_side.cache=false")
    assert plan["assistant"].upstream() == {"teacher": plan["teacher"].key}
    assert plan["student"].upstream() == {"teacher": plan["assistant"].key}
    assert plan["assistant"].seed == 30 and plan["assistant"].model == "res20"


def test_fitnets_student_starts_from_the_hint_stage_and_crd_uses_its_batch():
    plan = plan_of("method=fitnets", "seed=50")
    assert plan["student"].init == plan["hint"].key
    assert plan["hint"].recipe.epochs == 40 and plan["hint"].seed == 50 and plan["hint"].model == "res8"
    assert plan_of("method=crd")["student"].recipe.batch_size == 128
    assert plan_of("method=crd")["teacher"].recipe.batch_size == 64  # the teacher stays shared


def test_models_too_deep_for_the_image_size_are_refused_at_plan_time():
    """VGG-11's five max-pools need 32 pixels a side: at 16 the last pool got a 1x1 map and torch raised a
    RuntimeError inside the first forward; the plan says which models and sizes work."""
    from dih.errors import UserError
    from dih.models import build_model, feature_shapes

    with pytest.raises(RuntimeError):  # what the plan now stands in front of
        feature_shapes(build_model("vgg11", 10), (3, 16, 16))
    feature_shapes(build_model("vgg11", 10), (3, 32, 32))
    vgg = ["method=fitnets", "teacher=vgg11", "student=vgg11"]
    assert set(plan_of(*vgg, "dataset.image_size=32", tiny=True)) == {"teacher", "hint", "student"}
    with pytest.raises(UserError) as info:
        plan_of(*vgg, "dataset.image_size=16", tiny=True)
    assert str(info.value).startswith("The teacher vgg11 needs images of at least 32x32 pixels")
    assert "these are 16x16" in str(info.value) and "res8" in str(info.value)
    with pytest.raises(UserError, match="The student vgg11 .* these are 16x16"):
        plan_of("method=fitnets", "student=vgg11", "dataset.image_size=16", tiny=True)
    with pytest.raises(UserError, match="The student vgg11 .* these are 24x64"):
        plan_of("dataset=tiny_imagenet", "dataset.image_size=[24,64]", "student=vgg11", "method=ce")
    assert "student" in plan_of("dataset=tiny_imagenet", "student=vgg11", "method=ce")  # 64x64 natively
    assert "student" in plan_of("method=ce", "dataset.image_size=8", tiny=True)  # res8 takes any size


# ---- keys: exactly the spec, versioned ---------------------------------------------------------------------


def changed(value):
    """A different value of the same kind, for the key-sensitivity test."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, dict):
        return {**value, "changed": 1}
    if isinstance(value, tuple):
        return (*value, 999)
    if isinstance(value, Recipe):
        return dataclasses.replace(value, epochs=value.epochs + 1)
    if value is None:
        return "x"
    raise TypeError(type(value))


def all_specs() -> list[Spec]:
    plans = [plan_of("method=dih"), plan_of("method=fitnets"), plan_of("method=takd")]
    specs = {spec.kind: spec for plan in plans for spec in plan.values()}
    assert set(specs) == set(SPECS), "a kind of stage is missing from the test"
    return list(specs.values())


@pytest.mark.parametrize("spec", all_specs(), ids=lambda s: s.kind)
def test_every_field_of_a_spec_changes_its_key(spec):
    for field in dataclasses.fields(spec):
        other = dataclasses.replace(spec, **{field.name: changed(getattr(spec, field.name))})
        assert other.key != spec.key, f"{spec.kind}.{field.name} is not in the key"
    for name in [f.name for f in dataclasses.fields(Recipe)] if hasattr(spec, "recipe") else []:
        if name == "optimizer":  # sgd is its one allowed value: it can only be seen in the identity
            assert spec.identity()["recipe"]["optimizer"] == "sgd"
            continue
        recipe = dataclasses.replace(spec.recipe, **{name: changed(getattr(spec.recipe, name))})
        assert dataclasses.replace(spec, recipe=recipe).key != spec.key, f"recipe.{name}"
    for name, value in spec.data.items():
        if name not in ("root", "label"):  # where CIFAR's files are is not what they are; a label names them
            other = dataclasses.replace(spec, data={**spec.data, name: changed(value)})
            assert other.key != spec.key, f"data.{name}"
    assert dataclasses.replace(spec, data={**spec.data, "root": "/elsewhere"}).key == spec.key
    assert dataclasses.replace(spec, data={**spec.data, "label": "CIFAR"}).key == spec.key


def test_nothing_outside_the_spec_changes_a_key():
    # bf16 set, as its `auto` follows the device kind (test_bf16_auto_follows_the_planned_device_kind)
    base = keys("method=dih", "teacher_side.bf16=false")
    for outside in [
        "device=cpu",
        "trainer.eval_batch_size=7",
        "trainer.progress=false",
        "trainer.deterministic=false",
        "trainer.compile=true",
        "teacher_side.channels_last=true",
        "teacher_side.compile=true",
        "logger=wandb",
        "artifacts.root=/somewhere/else",
        "artifacts.on_corrupt=refuse",
        "dataset.root=/another/copy",
        "dataset.label=a-name-for-reports",
    ]:
        assert keys("method=dih", "teacher_side.bf16=false", outside) == base, outside
    # and a student's seed reaches the student only: one teacher, one set of heads, one cache
    other_seed = keys("method=dih", "teacher_side.bf16=false", "seed=67")
    assert [other_seed[n] == base[n] for n in base] == [True, True, True, False]


def test_bf16_auto_follows_the_planned_device_kind():
    """A plan for CUDA jobs made on a machine without a GPU runs the teacher side in bf16 (the rule of
    runtime.bf16_checked); a CPU plan only where this CPU has native bf16. Only the keys differ."""
    cuda, cpu = plan_of("method=dih", "device=cuda"), plan_of("method=dih", "device=cpu")
    assert cuda["heads"].bf16 and cuda["cohort"].bf16
    assert cpu["heads"].bf16 == cpu["cohort"].bf16 == cpu_has_native_bf16()
    off = {kind: keys("method=dih", f"device={kind}", "teacher_side.bf16=false") for kind in ("cuda", "cpu")}
    assert off["cuda"] == off["cpu"]  # the device itself is in no key
    assert cuda["teacher"].key == off["cuda"]["teacher"]  # the teacher has no teacher side
    assert cuda["heads"].key != off["cuda"]["heads"]


def test_bumping_a_loss_version_changes_its_students_and_no_teacher(monkeypatch):
    before = {m: keys(f"method={m}") for m in ("kd", "fitnets", "takd", "dih", "ce")}
    monkeypatch.setattr(KDLoss, "version", KDLoss.version + 1)
    after = {m: keys(f"method={m}") for m in before}
    for method in ("kd", "fitnets", "takd"):  # every method whose student (or assistant) learns with KD
        assert after[method]["student"] != before[method]["student"], method
        assert after[method]["teacher"] == before[method]["teacher"], method
    assert after["kd"]["cohort"] == before["kd"]["cohort"]  # the teacher's logits do not involve the loss
    assert after["takd"]["assistant_cohort"] == before["takd"]["assistant_cohort"] == before["kd"]["cohort"]
    # TAKD's assistant learns with KD: it, and the cache of its logits, are new
    assert after["takd"]["assistant"] != before["takd"]["assistant"]
    assert after["takd"]["cohort"] != before["takd"]["cohort"]
    assert after["fitnets"]["hint"] == before["fitnets"]["hint"]
    assert after["dih"] == before["dih"] and after["ce"] == before["ce"]


def test_bumping_a_head_kind_reaches_its_heads_and_what_they_teach(monkeypatch):
    before = keys("method=dih")
    monkeypatch.setattr(LinearHeads, "version", LinearHeads.version + 1)
    after = keys("method=dih")
    assert after["teacher"] == before["teacher"]
    assert all(after[n] != before[n] for n in ("heads", "cohort", "student"))
    assert keys("method=mhkd")["heads"] == plan_of("method=mhkd")["heads"].key  # other kinds untouched


# ---- a sweep's plan ----------------------------------------------------------------------------------------


def test_a_grid_of_every_kind_plans_each_artifact_once():
    """The fast tier's copy of the paper grid's count below, on two teachers and two seeds."""
    methods = "method=ce,kd,fitnets,at,crd,tofd,mhkd,dih"
    configs = configs_for(["dataset=cifar100", "teacher=res20,res14", "student=res8", methods, "seed=30,50"])
    takd = ["teacher=res20", "method=takd", "method.assistant=res14", "seed=30,50"]
    configs += configs_for(["dataset=cifar100", *takd])
    assert len(configs) == 2 * 8 * 2 + 2
    specs = distinct([plan_run(cfg) for cfg in configs])
    # 2 teachers; linear, MHKD and TOFD heads on each; a FitNets hint per teacher and seed; one assistant
    # (res14 under res20); caches: 2 teachers (KD, FitNets), 2 DIH cohorts, the assistant's; students: 7
    # methods x 2 teachers x 2 seeds + TAKD's 2 + CE's 2, shared by both teachers.
    assert Counter(spec.kind for spec in specs) == {
        "teacher": 2,
        "heads": 6,
        "hint": 4,
        "assistant": 1,
        "cohort": 5,
        "student": 2 + 7 * 2 * 2 + 2,
    }
    assert len({s.key for s in specs}) == len(specs)


@pytest.mark.slow  # the whole paper grid: about 20 s of composing and planning on 2 cores
def test_cifar100_grid_plans_each_artifact_once():
    configs = configs_for([str(SWEEPS / "cifar100.yaml")])
    assert len(configs) == 186
    specs = distinct([plan_run(cfg) for cfg in configs])
    counts = Counter(spec.kind for spec in specs)
    # 7 teachers; linear, MHKD and TOFD heads on each; a FitNets hint per teacher and seed; 6 assistants
    # (5 x res20, res14 under res20); caches: 7 teachers (KD, FitNets, TAKD's assistants), 7 DIH cohorts,
    # 6 assistants; students: 8 methods x 7 teachers x 3 seeds + TAKD 6 x 3, where CE's 3 are shared by
    # every teacher (a CE student has none).
    assert counts == {
        "teacher": 7,
        "heads": 21,
        "hint": 21,
        "assistant": 6,
        "cohort": 20,
        "student": 3 + 7 * 7 * 3 + 6 * 3,
    }
    assert len({s.key for s in specs}) == len(specs)


@pytest.mark.slow
def test_cohort_cache_is_a_stage_of_the_run_and_of_the_plan(tmp_path):
    done = run_cli(tmp_path, "method=kd", "seed=1", "teacher_side.cache=true", name="done")
    stages_run = summary(tmp_path, "done")["stages"]
    assert list(stages_run) == ["teacher", "cohort", "student"]
    assert f"cohort: built artifact {stages_run['cohort']['key']}" in done.stdout
    assert stages_run["cohort"]["shape"][1] == 162  # every crop offset and flip of each training image

    args = [*TINY, f"artifacts.root={tmp_path / 'artifacts'}", "teacher_side.cache=true"]
    out = subprocess.run(
        [sys.executable, "-m", "dih.plan", *args, "method=kd,dih", "seed=1,2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lines = [line.split() for line in out.splitlines() if line.split() and line.split()[0] in SPECS]
    # one teacher and one set of heads for all four runs; KD's cache (teacher) and DIH's (teacher + heads)
    assert Counter(cells[0] for cells in lines) == {"teacher": 1, "heads": 1, "cohort": 2, "student": 4}, out
    assert {cells[1] for cells in lines if cells[2] == "yes"} == {s["key"] for s in stages_run.values()}
    assert "4 run(s), 8 distinct artifacts" in out


# ---- builds read only their spec ---------------------------------------------------------------------------


def build_plan(cfg, root: Path, wrap=lambda spec: spec) -> None:
    """Build every stage of the run's plan in-process into the store at ``root``, as the pipeline does;
    each build sees ``wrap(spec)``."""
    store, rt, built = ArtifactStore(root), runtime(cfg), {}
    for p in plan_run(cfg):
        spec, upstream = wrap(p.spec), {role: built[key] for role, key in p.spec.upstream().items()}
        built[p.spec.key], _ = store.get_or_build(
            p.spec.key, p.spec.identity(), lambda work, s=spec, u=upstream: stages.build(s, u, rt, work)
        )


class Recording:
    """A spec that records which of its fields a build reads, and refuses anything that is not a field."""

    def __init__(self, spec: Spec):
        object.__setattr__(self, "_spec", spec)
        object.__setattr__(self, "read", set())

    def __getattr__(self, name):
        spec = object.__getattribute__(self, "_spec")
        if name != "kind" and name not in {f.name for f in dataclasses.fields(spec)}:
            raise AssertionError(f"a {spec.kind} build read {name}, which is not in its spec")
        self.read.add(name)
        return getattr(spec, name)


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides",
    # every kind of stage: teacher, heads, cohort and a cache-fed student; hint; assistant; CRD's student
    [
        ["method=dih", "teacher_side.cache=true"],
        ["method=fitnets"],
        ["method=takd", "teacher=res20", "method.assistant=res14"],
        ["method=crd"],
    ],
    ids=lambda o: o[0],
)
def test_builds_read_only_their_spec(overrides, tmp_path):
    small = ["dataset.train_size=60", "dataset.test_size=20", "trainer.epochs=1", "trainer.milestones=[1]"]
    cfg = compose.compose_run([*TINY, *small, *overrides])
    recordings: dict[str, Recording] = {}
    build_plan(cfg, tmp_path, wrap=lambda spec: recordings.setdefault(spec.key, Recording(spec)))
    for p in plan_run(cfg):
        read = recordings[p.spec.key].read
        fields = {f.name for f in dataclasses.fields(p.spec)}
        upstream_fields = {f.name for f in dataclasses.fields(p.spec) if f.metadata.get("upstream")}
        # everything in the key but the versions and the upstream keys (read as artifacts) is used
        unused = fields - read - upstream_fields - {"versions"}
        assert not unused, f"{p.name} never reads {unused}"


def test_a_multirun_whose_plan_fails_for_one_run_starts_nothing(tmp_path):
    """What only the plan can refuse (here TAKD's size rule for one teacher of two) stops the whole
    multirun before any job starts, as a bad value does."""
    args = ["--multirun", "experiment=smoke", "method=takd", "teacher=res20,res14", "method.assistant=res14"]
    proc = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *args, f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: TAKD's assistant must be smaller than the teacher res14 and larger than the student res8, "
        "and res14 is not; pass method.assistant= one of: (none fits this pair) (in the run "
        "experiment=smoke method=takd teacher=res14 method.assistant=res14 "
        f"hydra.sweep.dir={tmp_path / 'sweep'})."
    ]
    assert not (tmp_path / "sweep").exists()


@pytest.mark.slow
def test_a_student_starts_from_the_same_weights_whatever_teaches_it(tmp_path, monkeypatch):
    """The same seed gives the same initial student whether it learns alone, from a live teacher side or
    from the cohort cache: loading the teacher draws no random numbers after the seed."""
    from dih.stages import student as student_stage

    starts, build = [], student_stage.build_model

    def recording_build(name, num_classes):
        model = build(name, num_classes)
        starts.append({k: v.clone() for k, v in model.state_dict().items()})
        return model

    monkeypatch.setattr(student_stage, "build_model", recording_build)
    small = ["dataset.train_size=60", "dataset.test_size=20", "trainer.epochs=1", "trainer.milestones=[1]"]
    for overrides in (["method=ce"], ["method=kd"], ["method=kd", "teacher_side.cache=true"], ["method=dih"]):
        build_plan(compose.compose_run([*TINY, *small, *overrides]), tmp_path)
    assert len(starts) == 4
    for start in starts[1:]:
        assert all(torch.equal(start[k], starts[0][k]) for k in starts[0])
