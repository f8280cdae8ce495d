"""A sweep's plan as its Slurm schedule (dih/sweep/schedule.py, dih/sweep/launch.py), without a cluster: every
missing teacher-side artifact has exactly one job, whose stage cut builds exactly it; every job waits on
exactly the jobs that build what it reads; stored artifacts get no job (on a small grid with every role, and
on the paper's CIFAR-100 grid in the slow tier); the launcher's settings reach submitit (where srun is)."""

import shutil
from pathlib import Path

import pytest
from conftest import ROOT

from dih.config.compose import compose_run, launcher_config
from dih.config.sweep_file import load
from dih.errors import UserError
from dih.plan.chain import plan_run
from dih.sweep.launch import ordered_runs, slurm_executor
from dih.sweep.schedule import arrays, phases, schedule

GPU_LAUNCHER = ["hydra/launcher=slurm", "hydra.launcher.partition=gpu"]
METHODS = ["ce", "kd", "fitnets", "at", "crd", "tofd", "mhkd", "dih"]
# Every role of the paper grid (teacher, heads, hint, assistant, cohort, run) on two teachers and two seeds:
# the fast tier's schedule; the paper grid itself (186 runs, 7 teachers) is the slow tier's.
SMALL = {
    "name": "small",
    "overrides": ["dataset=cifar100"],
    "grids": [
        {"teacher": ["res20", "res14"], "student": ["res8"], "method": METHODS, "seed": [30, 50]},
        {"teacher": ["res20"], "student": ["res8"], "method": ["takd"], "method.assistant": ["res14"],
         "seed": [30, 50]},
    ],
}
# (runs, teachers) of each grid
SIZE = {"small": (2 * 8 * 2 + 2, 2), "cifar100": (186, 7)}


class Runs(list):
    """A grid's runs as ordered_runs gives them, with the grid's name."""

    name = ""


@pytest.fixture(scope="module", params=["small", pytest.param("cifar100", marks=pytest.mark.slow)])
def cifar100(request, tmp_path_factory):
    """A CIFAR-100 grid's runs as a GPU Slurm submission plans them: the small one, or the paper's."""
    sweep_dir = tmp_path_factory.mktemp("multirun") / request.param
    sweep = SMALL if request.param == "small" else load(ROOT / "multirun_sweeps" / "cifar100.yaml")
    runs = Runs(ordered_runs(sweep, sweep_dir, GPU_LAUNCHER, device="cuda"))
    runs.name = request.param
    return runs


def jobs_of(runs, in_store=lambda key: False):
    return schedule([(o, d) for o, d, _, _ in runs], [p for _, _, p, _ in runs], in_store, Path("/x"))


def test_every_missing_artifact_is_built_once_and_every_job_waits_for_exactly_its_builders(cifar100):
    jobs = jobs_of(cifar100)
    upstream = {p.spec.key for _, _, planned, _ in cifar100 for p in planned[:-1]}
    built = [key for job in jobs for key in job.builds]
    assert len(built) == len(set(built)) and set(built) >= upstream
    builder = {key: i for i, job in enumerate(jobs) for key in job.builds}
    assert sum(job.role == "run" for job in jobs) == len(cifar100) == SIZE[cifar100.name][0]
    assert {job.role for job in jobs} == {"teacher", "heads", "hint", "assistant", "cohort", "run"}
    runs = iter(cifar100)
    for i, job in enumerate(jobs):
        if job.role == "run":
            planned = next(runs)[2]  # a CE student is the same artifact in every teacher's row: built once
            reads = [p.spec.key for p in planned if p.spec.key not in job.builds]
        else:
            planned = plan_run(compose_run(job.overrides))
            assert [p.spec.key for p in planned[-len(job.builds) :]] == job.builds, job.label
            reads = [p.spec.key for p in planned[: -len(job.builds)]]
        assert job.needs == sorted({builder[k] for k in reads}), job.label
        assert all(n < i and jobs[n].phase < job.phase for n in job.needs)
    assert all(not job.needs for job in jobs if job.role == "teacher")


def test_stored_artifacts_get_no_job(cifar100):
    teachers = {p.spec.key for _, _, planned, _ in cifar100 for p in planned if p.name == "teacher"}
    jobs = jobs_of(cifar100, in_store=teachers.__contains__)
    assert not [j for j in jobs if j.role == "teacher"]
    assert all(not j.needs and j.phase == 1 for j in jobs if j.role in ("heads", "hint"))
    everything = {p.spec.key for _, _, planned, _ in cifar100 for p in planned}
    jobs = jobs_of(cifar100, in_store=everything.__contains__)
    assert [j.role for j in jobs] == ["run"] * SIZE[cifar100.name][0]
    assert all(not j.builds and not j.needs for j in jobs)


def test_arrays_share_phase_role_and_dependencies(cifar100):
    jobs = jobs_of(cifar100)
    groups = arrays(jobs)
    assert sorted(i for g in groups for i in g) == list(range(len(jobs)))
    for group in groups:
        assert len({(jobs[i].phase, jobs[i].role, tuple(jobs[i].needs)) for i in group}) == 1
    assert sum(sum(c.values()) for c in phases(jobs)) == len(jobs)
    # the paper grid's: res14, res20, res110, res18, res34, vgg11, wrn28_2
    assert phases(jobs)[0]["teacher"] == SIZE[cifar100.name][1]


def test_auto_device_is_pinned_to_the_jobs_device(cifar100, tmp_path):
    overrides, _, planned, cfg = cifar100[0]
    assert cfg.device == "cuda" and "device=cuda" in overrides
    cpu = ordered_runs(load(ROOT / "multirun_sweeps" / "laptop.yaml"), tmp_path, [], device="cpu")
    assert all(c.device == "cpu" for *_, c in cpu)


def test_stage_cut_at_the_cohort_cache_and_a_cut_the_run_lacks():
    cfg = compose_run(["method=dih", "teacher_side.cache=true", "stage.until=cohort"])
    assert [p.name for p in plan_run(cfg)] == ["teacher", "heads", "cohort"]
    with pytest.raises(UserError, match="plans no cohort stage .* choose another stage.until="):
        plan_run(compose_run(["method=ce", "stage.until=cohort"]))


@pytest.mark.slurm
@pytest.mark.skipif(
    shutil.which("srun") is None,
    reason="submitit's Slurm executor refuses to start without srun on PATH (start Slurm: .ci/slurm/up.sh)",
)
def test_launcher_settings_reach_submitit(tmp_path):
    """Builds submitit's real SlurmExecutor, whose constructor looks for srun: it needs Slurm's client tools,
    though no cluster answers for it."""
    launcher = launcher_config(
        [
            *GPU_LAUNCHER,
            "hydra.launcher.timeout_min=90",
            "hydra.launcher.max_num_timeout=5",
            "+hydra.launcher.additional_parameters.mail-type=END",
        ],
        tmp_path,
    )
    executor = slurm_executor(launcher)
    params = executor._executor.parameters
    assert params["partition"] == "gpu" and params["time"] == 90 and params["gpus_per_node"] == 1
    assert params["array_parallelism"] == 64 and params["mem"] == "32GB"
    assert params["additional_parameters"] == {"mail-type": "END"}
    assert executor._executor.max_num_timeout == 5
    assert str(executor.folder).startswith(str(tmp_path / ".submitit"))
