"""The cohort-output cache: one entry per augmentation variant, read back for exactly the variant drawn,
matching the live teacher side within float16 rounding."""

import dataclasses
import json

import numpy as np
import torch

from dih.data.loader import DeviceLoader, augment, normalize
from dih.losses import DIHLoss
from dih.models import LinearHeads, build_model
from dih.store.artifacts import ArtifactStore
from dih.teacher_side.cohort_cache import CohortCache, all_variants, build, num_variants, variant_index
from dih.teacher_side.side import TeacherSide

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def test_variants_are_numbered_once_each():
    shifts, flips = all_variants(4)
    assert len(flips) == num_variants(4) == 162
    assert variant_index(shifts, flips, 4).tolist() == list(range(162))
    pairs = {(dy, dx, f) for (dy, dx), f in zip(shifts.tolist(), flips.tolist())}
    assert pairs == {(dy, dx, f) for dy in range(-4, 5) for dx in range(-4, 5) for f in (False, True)}


def small_side():
    torch.manual_seed(0)
    teacher = build_model("res8", 5)
    teacher.eval()
    return TeacherSide(teacher, LinearHeads.for_model(teacher, 5, (3, 16, 16)))


def test_cached_logits_match_the_live_teacher(tmp_path):
    side = small_side()
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 5, (6,), generator=g)
    store = ArtifactStore(tmp_path)
    artifact, built = store.get_or_build(
        "cohort-test", {}, lambda work: (build(side, images, MEAN, STD, 4, work, images_per_chunk=4), {})
    )
    assert built and (artifact.path / "cohort.npy").exists()
    assert artifact.meta["files"]["cohort.npy"], "the cache file is checksummed like any payload"
    cache = CohortCache(artifact, torch.device("cpu"))
    assert cache.table.shape == (6, 162, 4, 5)

    loader = DeviceLoader(images, labels, batch_size=4, mean=MEAN, std=STD, device="cpu", train=True, seed=3)
    loss = DIHLoss()
    student = build_model("res8", 5)
    for epoch in (1, 2):
        for batch in loader.epoch(epoch):
            live, cached = side(batch.images), cache(batch)
            for z_live, z_cached in zip(live.cohort, cached.cohort, strict=True):
                torch.testing.assert_close(z_cached, z_live, rtol=2e-3, atol=2e-3)  # float16 rounding
            out = student(batch.images)
            live_loss, _ = loss(out, live, batch)
            cached_loss, _ = loss(out, cached, batch)
            torch.testing.assert_close(cached_loss, live_loss, rtol=1e-3, atol=1e-3)


def test_cache_entry_is_the_teacher_on_that_exact_view(tmp_path):
    """Entry [i, v] holds the cohort on image i cropped and flipped as variant v says."""
    side = small_side()
    images = torch.randint(
        0, 256, (3, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(2)
    )
    store = ArtifactStore(tmp_path)
    artifact, _ = store.get_or_build("cohort-x", {}, lambda w: (build(side, images, MEAN, STD, 4, w), {}))
    cache = CohortCache(artifact, torch.device("cpu"))
    shifts, flips = all_variants(4)
    for i, v in ((0, 0), (1, 81), (2, 161), (2, 40)):
        view = augment(images[i : i + 1], shifts[v : v + 1], flips[v : v + 1], 4)
        expected = torch.stack(side(normalize(view, MEAN, STD)).cohort, 1)[0]
        torch.testing.assert_close(cache.table[i, v].float(), expected, rtol=2e-3, atol=2e-3)


def test_killed_build_resumes_where_it_stopped(tmp_path):
    side = small_side()
    images = torch.randint(
        0, 256, (5, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(4)
    )
    whole = tmp_path / "whole"
    build(side, images, MEAN, STD, 4, whole, images_per_chunk=2)

    class Stop(Exception):
        pass

    calls = {"n": 0}
    original = side.forward

    def dying_forward(x):  # dies during the second chunk, after the first was written
        calls["n"] += 1
        if calls["n"] > 2:
            raise Stop
        return original(x)

    parts = tmp_path / "parts"
    side.forward = dying_forward
    try:
        build(side, images, MEAN, STD, 4, parts, images_per_chunk=2)
    except Stop:
        pass
    side.forward = original
    assert json.loads((parts / "progress.json").read_text())["images_done"] == 2
    build(side, images, MEAN, STD, 4, parts, images_per_chunk=2)
    a = np.load(whole / "files" / "cohort.npy")
    b = np.load(parts / "files" / "cohort.npy")
    assert np.array_equal(a, b)


def _built_cache(tmp_path, n=7):
    side = small_side()
    g = torch.Generator().manual_seed(5)
    images = torch.randint(0, 256, (n, 3, 16, 16), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 5, (n,), generator=g)
    store = ArtifactStore(tmp_path)
    artifact, _ = store.get_or_build("cohort-g", {}, lambda w: (build(side, images, MEAN, STD, 4, w), {}))
    loader = DeviceLoader(images, labels, batch_size=3, mean=MEAN, std=STD, device="cpu", train=True, seed=6)
    return artifact, loader


def test_device_and_host_gathers_equal_the_memory_mapped_rows_exactly(tmp_path):
    """Loaded whole (the device path: on the CPU, a float16 tensor in memory) or left memory-mapped (the host
    path, ``device_share=0``), every batch's rows are the stored float16 values as float32, bit for bit."""
    artifact, loader = _built_cache(tmp_path)
    mapped = np.load(artifact.path / "cohort.npy", mmap_mode="r")
    on_device = CohortCache(artifact, torch.device("cpu"))
    on_host = CohortCache(artifact, torch.device("cpu"), device_share=0.0)
    assert on_device.on_device and not on_host.on_device
    assert on_device.table.dtype == torch.float16 and on_device.table.shape == mapped.shape
    for epoch in (1, 2):
        for batch in loader.epoch(epoch):
            variant = variant_index(batch.shifts, batch.flips, 4).numpy()
            expected = torch.from_numpy(np.ascontiguousarray(mapped[batch.index.numpy(), variant])).float()
            for cache in (on_device, on_host):
                out = cache(batch)
                got = torch.stack(out.cohort, 1)
                assert got.dtype == torch.float32 and torch.equal(got, expected)
                assert torch.equal(out.logits, expected[:, -1])
    assert np.array_equal(np.load(artifact.path / "cohort.npy"), mapped), "the file is never written"


def test_host_path_gathers_the_next_batch_ahead_and_any_batch_exactly(tmp_path):
    """On the host path a loader's batch carries its epoch's draws: the next batch's rows are gathered ahead
    (and used when that batch comes); batches out of order, or made without the draws, still get their own
    rows exactly."""
    artifact, loader = _built_cache(tmp_path)
    mapped = np.load(artifact.path / "cohort.npy", mmap_mode="r")
    cache = CohortCache(artifact, torch.device("cpu"), device_share=0.0)

    def expected(batch):
        variant = variant_index(batch.shifts, batch.flips, 4).numpy()
        return torch.from_numpy(np.ascontiguousarray(mapped[batch.index.numpy(), variant])).float()

    batches = list(loader.epoch(4))
    assert len(batches) == 3
    got = torch.stack(cache(batches[0]).cohort, 1)
    assert torch.equal(got, expected(batches[0]))
    plan, start, _ = cache._ahead
    assert plan is batches[1].plan and start == batches[1].start == 3, "the next batch is being gathered"
    for batch in (batches[1], batches[2], batches[0], batches[2]):  # in order, then out of it
        assert torch.equal(torch.stack(cache(batch).cohort, 1), expected(batch))
    assert cache._ahead is None or cache._ahead[1] == 3
    bare = dataclasses.replace(batches[1], plan=None)
    assert torch.equal(torch.stack(cache(bare).cohort, 1), expected(batches[1]))
