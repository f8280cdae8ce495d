"""KD, DIH, CRD and TOFD against their reference code (SPEC s.5), value and gradient.

Each reference below is written here from the reference's own code (the DIH repository's ``kd_loss`` and
training loop, RepDistiller's ``CRDLoss``/``ContrastMemory``/``ContrastLoss``, the official TOFD
``distill.py``), in float64 with plain torch, never with this project's functions. Both sides see identical
tensors of realistic shapes (CIFAR-100 logits, res8/res110 feature widths); the value and the gradient on
the student's logits and features must agree to 1e-5 relative.
"""

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from conftest import ROOT
from torch import nn

from dih.config.groups import option_file
from dih.losses import CRDLoss, DIHLoss, KDLoss, Needs, TOFDLoss, build_loss, loss_class
from dih.losses.context import LossContext
from dih.models import build_model, feature_shapes, heads_class
from dih.models.output import ModelOutput
from dih.teacher_side.side import TeacherOutput

B, CLASSES = 16, 100


def randn(*shape, seed: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


def leaf(t: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    return t.detach().to(dtype).clone().requires_grad_(True)


def close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal to 1e-5 relative to the expected tensor's scale (float32 against a float64 reference)."""
    expected = expected.detach().to(actual.dtype)
    scale = expected.abs().max().item()
    torch.testing.assert_close(actual.detach(), expected, rtol=1e-5, atol=1e-5 * scale + 1e-30)


def grads(total: torch.Tensor, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    return list(torch.autograd.grad(total, tensors))


# ------------------------------------------------------------------------------------------ KD and DIH


def reference_kd(out_s, out_t, target, alpha, temperature):
    """The DIH repository's ``kd_loss``: batchmean KLDivLoss(log_softmax(s/T), softmax(z/T)) a T^2 plus
    (1 - a) CE."""
    kl = nn.KLDivLoss(reduction="batchmean")(
        F.log_softmax(out_s / temperature, dim=1), F.softmax(out_t / temperature, dim=1)
    )
    return kl * (alpha * temperature * temperature) + F.cross_entropy(out_s, target) * (1.0 - alpha)


def reference_dih(out_s, cohort, target, alphas, temperature):
    """The DIH training loop: one ``kd_loss`` per cohort classifier whose alpha is not 0, summed."""
    loss = 0.0
    for z, alpha in zip(cohort, alphas):
        if alpha != 0.0:
            loss = loss + reference_kd(out_s, z, target, alpha, temperature)
    return loss


def logits_case(cohort_size: int, seed: int = 0):
    s = randn(B, CLASSES, seed=seed, scale=3.0)
    cohort = [randn(B, CLASSES, seed=seed + 1 + j, scale=4.0) for j in range(cohort_size)]
    y = torch.randint(0, CLASSES, (B,), generator=torch.Generator().manual_seed(seed + 99))
    return s, cohort, y


def test_kd_equals_the_reference():
    s, cohort, y = logits_case(1)
    s32, s64 = leaf(s), leaf(s, torch.float64)
    teacher = TeacherOutput(cohort[0], cohort, {})
    total, _ = KDLoss(alpha=0.1, temperature=5.0)(ModelOutput(s32), teacher, SimpleNamespace(labels=y))
    expected = reference_kd(s64, cohort[0].double(), y, 0.1, 5.0)
    close(total, expected)
    close(grads(total, [s32])[0], grads(expected, [s64])[0])


@pytest.mark.parametrize(
    "alpha, reduction",
    [(0.1, "sum"), ([0.3, 0.0, 0.2, 0.1], "sum"), ([0.0, 0.5, 0.0, 0.1], "mean"), (0.1, "mean")],
)
def test_dih_equals_the_reference_loop(alpha, reduction):
    """The default sum over the k+1 classifiers; a classifier whose alpha is 0 leaves the sum with its CE
    share; ``mean`` divides by the classifiers left."""
    s, cohort, y = logits_case(4, seed=10)
    s32, s64 = leaf(s), leaf(s, torch.float64)
    teacher = TeacherOutput(cohort[-1], cohort, {})
    loss = DIHLoss(alpha=alpha, temperature=5.0, reduction=reduction)
    total, parts = loss(ModelOutput(s32), teacher, SimpleNamespace(labels=y))
    alphas = alpha if isinstance(alpha, list) else [alpha] * 4
    expected = reference_dih(s64, [z.double() for z in cohort], y, alphas, 5.0)
    if reduction == "mean":
        expected = expected / sum(a != 0 for a in alphas)
    close(total, expected)
    close(grads(total, [s32])[0], grads(expected, [s64])[0])
    kept = sum(1 - a for a in alphas if a != 0) / (sum(a != 0 for a in alphas) if reduction == "mean" else 1)
    close(parts["ce"], kept * F.cross_entropy(s.double(), y))


# ------------------------------------------------------------------------------------------------- CRD


def reference_crd(f_s, f_t, logits_s, logits_t, target, idx, memory_s, memory_t, embed_s, embed_t, n_data):
    """RepDistiller's CRD step with KD (a_kd 0.9, T 4, b 0.8, NCE temperature 0.07): ``Embed`` is linear then
    L2 normalisation; ``ContrastMemory`` scores each side's anchor against the other side's memory rows
    ``idx`` (the positive first) with ``exp(<w, v> / T)``, normalised by Z = mean score x N from this first
    batch; ``ContrastLoss`` is ``-(sum log(P0 / (P0 + m Pn + eps)) + sum log(m Pn / (Pj + m Pn + eps))) / B``.
    Returns (loss, Z_s, Z_t)."""
    eps, nce_t, k = 1e-7, 0.07, idx.shape[1] - 1

    def embed(x, linear):
        x = F.linear(x.view(x.shape[0], -1), linear.weight.double(), linear.bias.double())
        return x / x.pow(2).sum(1, keepdim=True).pow(0.5)

    def contrast_loss(x):
        pn, pos, neg = 1.0 / n_data, x.select(1, 0), x.narrow(1, 1, k)
        log_d1 = torch.div(pos, pos + k * pn + eps).log()
        log_d0 = torch.div(torch.full_like(neg, k * pn), neg + k * pn + eps).log()
        return -(log_d1.sum(0) + log_d0.view(-1, 1).sum(0)) / x.shape[0]

    v1, v2 = embed(f_s, embed_s), embed(f_t, embed_t)
    b, d = v1.shape
    weight_v1 = torch.index_select(memory_s, 0, idx.view(-1)).view(b, k + 1, d)
    out_v2 = torch.exp(torch.bmm(weight_v1, v2.view(b, d, 1)) / nce_t)  # teacher anchor, student memory
    weight_v2 = torch.index_select(memory_t, 0, idx.view(-1)).view(b, k + 1, d)
    out_v1 = torch.exp(torch.bmm(weight_v2, v1.view(b, d, 1)) / nce_t)  # student anchor, teacher memory
    z_v1, z_v2 = (out_v1.mean() * n_data).detach(), (out_v2.mean() * n_data).detach()
    crd = contrast_loss(out_v1 / z_v1) + contrast_loss(out_v2 / z_v2)
    kd_div = F.kl_div(F.log_softmax(logits_s / 4.0, 1), F.softmax(logits_t / 4.0, 1), reduction="sum")
    kd_div = kd_div * 16.0 / logits_s.shape[0]
    return F.cross_entropy(logits_s, target) + 0.9 * kd_div + 0.8 * crd.squeeze(), z_v1, z_v2


def test_crd_equals_the_reference():
    n_data, k, width = 2000, 1024, 64
    train_labels = torch.arange(n_data) % CLASSES
    ctx = LossContext(
        num_classes=CLASSES,
        num_train=n_data,
        image_shape=(3, 32, 32),
        student_features={"embedding": (width,)},
        student_stages=(),
        teacher_features={"embedding": (width,)},
        teacher_stages=(),
        train_labels=train_labels,
    )
    torch.manual_seed(0)
    loss = CRDLoss(ctx, nce_k=k)
    memory_s, memory_t = loss.bank_s.double().clone(), loss.bank_t.double().clone()
    s, f_s = randn(B, CLASSES, seed=1, scale=3.0), randn(B, width, seed=2).relu()
    z, f_t = randn(B, CLASSES, seed=3, scale=3.0), randn(B, width, seed=4).relu()
    index = torch.randperm(n_data, generator=torch.Generator().manual_seed(5))[:B]
    batch = SimpleNamespace(labels=train_labels[index], index=index)
    s32, f32 = leaf(s), leaf(f_s)
    teacher = TeacherOutput(z, [z], {"embedding": f_t})

    torch.manual_seed(7)
    total, _ = loss(ModelOutput(s32, {"embedding": f32}), teacher, batch)
    torch.manual_seed(7)  # the same negatives: K indices per anchor, drawn from the other classes
    other = (train_labels.unsqueeze(0) != batch.labels.unsqueeze(1)).float()
    idx = torch.cat([index.view(-1, 1), torch.multinomial(other, k, replacement=False)], dim=1)
    s64, f64 = leaf(s, torch.float64), leaf(f_s, torch.float64)
    expected, z_s, z_t = reference_crd(
        f64, f_t.double(), s64, z.double(), batch.labels, idx, memory_s, memory_t,
        loss.embed_s.linear, loss.embed_t.linear, n_data,
    )  # fmt: skip
    close(total, expected)
    close(loss.z, torch.stack([z_s, z_t]))
    for got, want in zip(grads(total, [s32, f32]), grads(expected, [s64, f64])):
        close(got, want)


# ------------------------------------------------------------------------------------------------ TOFD


def reference_sep_conv(x, weights: dict, prefix: str, stride: int):
    """The TOFD reference's ``SepConv`` (training mode): depthwise 3x3 (stride), pointwise 1x1, BN, ReLU,
    depthwise 3x3, pointwise 1x1, BN, ReLU; the weights of one block of the student's auxiliary classifier."""
    w = lambda i: weights[f"{prefix}.{i}.weight"].double()
    c = x.shape[1]
    x = F.conv2d(x, w(0), stride=stride, padding=1, groups=c)
    x = F.relu(F.batch_norm(F.conv2d(x, w(1)), None, None, w(2), weights[f"{prefix}.2.bias"].double(), True))
    x = F.conv2d(x, w(4), padding=1, groups=x.shape[1])
    return F.relu(
        F.batch_norm(F.conv2d(x, w(5)), None, None, w(6), weights[f"{prefix}.6.bias"].double(), True)
    )


def reference_student_tofd(features: dict, logits, embedding, weights: dict, strides: list[list[int]]):
    """The TOFD student network's outputs as the reference returns them, deep first: the final classifier
    then the auxiliary ones, each with the pooled vector its linear layer reads."""
    outputs, pooled = [logits], [embedding]
    for i in reversed(range(len(strides))):
        x = features[f"stage{i + 1}"]
        for j, stride in enumerate(strides[i]):
            x = reference_sep_conv(x, weights, f"heads.heads.{i}.{j}", stride)
        p = x.mean((2, 3))
        n = len(strides[i]) + 2  # the linear layer's index in the head
        outputs.append(
            F.linear(
                p,
                weights[f"heads.heads.{i}.{n}.weight"].double(),
                weights[f"heads.heads.{i}.{n}.bias"].double(),
            )
        )
        pooled.append(p)
    return outputs, pooled


def reference_tofd(outputs, student_feature, teacher_logits, teacher_feature, labels, links, epoch0, epochs):
    """The official ``distill.py`` step (alpha 0.05, beta 0.03, t 3): lists deep first, ``links[index]`` a
    bias-free linear weight; the temperature ``1 + (t / E) (1 + epoch)`` for the 0-based epoch."""
    loss = torch.zeros(1, dtype=torch.float64)
    temperature = 1 + (3.0 / epochs) * float(1 + epoch0)
    for index in range(len(student_feature)):
        feature = F.linear(student_feature[index], links[index])
        loss = loss + torch.dist(feature, teacher_feature[index], p=2) * 0.05
        loss = loss + F.cross_entropy(outputs[index], labels)
        soft = F.softmax(teacher_logits[index] / temperature, dim=1)
        loss = loss - (F.log_softmax(outputs[index] / temperature, dim=1) * soft).sum(dim=1).mean()
    for weight in links:
        loss = (
            loss + torch.dist(weight @ weight.t(), torch.eye(weight.shape[0], dtype=weight.dtype), p=2) * 0.03
        )
        loss = (
            loss + torch.dist(weight.t() @ weight, torch.eye(weight.shape[1], dtype=weight.dtype), p=2) * 0.03
        )
    return loss.squeeze()


RES8 = {"stage1": (16, 32, 32), "stage2": (32, 16, 16), "stage3": (64, 8, 8), "embedding": (64,)}


def res8_student_context(teacher_features: dict, epochs: int) -> LossContext:
    """A res8 student (shapes of RES8) under a teacher of ``teacher_features``, for ``epochs``."""
    return LossContext(
        num_classes=CLASSES,
        num_train=1000,
        image_shape=(3, 32, 32),
        student_features=RES8,
        student_stages=("stage1", "stage2", "stage3"),
        teacher_features=teacher_features,
        teacher_stages=tuple(name for name in teacher_features if name.startswith("stage")),
        epochs=epochs,
    )


def tofd_case(epochs: int):
    torch.manual_seed(0)
    loss = TOFDLoss(res8_student_context(RES8, epochs))  # res110: the same widths as res8
    features = {name: randn(B, *shape, seed=20 + i).relu() for i, (name, shape) in enumerate(RES8.items())}
    logits = randn(B, CLASSES, seed=30, scale=3.0)
    cohort = [randn(B, CLASSES, seed=31 + j, scale=4.0) for j in range(3)]
    embeddings = [randn(B, 64, seed=40 + j).relu() for j in range(3)]
    teacher = TeacherOutput(cohort[-1], cohort, {}, embeddings)
    labels = torch.randint(0, CLASSES, (B,), generator=torch.Generator().manual_seed(50))
    return loss, features, logits, teacher, labels


@pytest.mark.parametrize("epoch", [1, 100, 200])
def test_tofd_equals_the_official_code(epoch):
    """At the first, a middle and the last of 200 epochs (T_e = 1.015, 2.5, 4)."""
    loss, features, logits, teacher, labels = tofd_case(epochs=200)
    student_32 = {name: leaf(f) for name, f in features.items()}
    logits_32 = leaf(logits)
    batch = SimpleNamespace(labels=labels, epoch=epoch)
    total, parts = loss(ModelOutput(logits_32, student_32), teacher, batch)

    weights = {k: v.detach().clone() for k, v in loss.state_dict().items()}
    student_64 = {name: leaf(f, torch.float64) for name, f in features.items()}
    logits_64 = leaf(logits, torch.float64)
    outputs, pooled = reference_student_tofd(
        student_64, logits_64, student_64["embedding"], weights, strides=[[2, 2], [2]]
    )
    links = [weights[f"links.{i}.weight"].double() for i in reversed(range(3))]  # deep first, like the rest
    deep_first = lambda xs: [x.double() for x in reversed(xs)]
    expected = reference_tofd(
        outputs, pooled, deep_first(teacher.cohort), deep_first(teacher.embeddings), labels, links,
        epoch0=epoch - 1, epochs=200,
    )  # fmt: skip
    close(total, expected)
    assert loss.temperature(epoch) == pytest.approx(1 + 3 * epoch / 200)
    used = ("stage1", "stage2", "embedding")  # the deepest stage feeds only the final classifier's embedding
    ours = grads(total, [logits_32, *(student_32[n] for n in used)])
    theirs = grads(expected, [logits_64, *(student_64[n] for n in used)])
    for got, want in zip(ours, theirs, strict=True):
        close(got, want)


def test_tofd_pairs_from_the_deepest_with_unequal_stage_counts():
    """A 4-stage teacher (res34's widths) over a 3-stage student: as the reference indexes both deep-first
    lists by the student's classifier, the final classifiers pair, then the student's stage2 head with the
    teacher's stage3 head, its stage1 head with the teacher's stage2 head; links map 64 to 512 widths."""
    res34 = {"stage1": (64, 32, 32), "stage2": (128, 16, 16), "stage3": (256, 8, 8), "stage4": (512, 4, 4)}
    loss = TOFDLoss(res8_student_context({**res34, "embedding": (512,)}, epochs=10))
    assert loss.teacher_index == [1, 2, 3]  # the teacher's cohort: heads on stages 1-3, then its own
    assert [tuple(link.weight.shape) for link in loss.links] == [(512, 64)] * 3
    assert loss.heads.stage_names == ("stage1", "stage2")


# ------------------------------------------------------------------------------- no gradient to the teacher


def teacher_methods() -> list[tuple[str, dict, str | None]]:
    """(loss name, settings, heads kind) of every loss that reads a teacher, with the settings and heads of
    the first method under conf/method/ that uses it (CRD's negatives cut to the 40 images here)."""
    found = {}
    for method in sorted((ROOT / "conf" / "method").glob("*.yaml")):
        config = option_file("method", method.stem)
        settings = dict(config["loss"])
        name = settings.pop("name")
        if loss_class(name).needs is not Needs.NOTHING and name not in found:
            small = {"nce_k": 16} if name == "crd" else {}
            found[name] = (name, {**settings, **small}, config.get("heads"))
    return [found[name] for name in sorted(found)]


@pytest.mark.parametrize("name, settings, heads", teacher_methods())
def test_no_gradient_reaches_the_teacher_even_with_autograd_on(name, settings, heads):
    """The teacher side runs with autograd on here (the stage runs it without): only the loss's own
    detaching keeps the teacher's and its heads' parameters out of the backward pass. Every loss that reads
    a teacher, as its method configures it."""
    torch.manual_seed(0)
    student, teacher = build_model("res8", 10), build_model("res14", 10).eval()
    mounted = heads_class(heads).for_model(teacher, 10) if heads else None
    images, labels = randn(4, 3, 32, 32, seed=60), torch.tensor([0, 3, 5, 9])
    out = teacher(images)
    head_logits, head_embeddings = mounted.classify(out.features) if mounted else ([], [])
    embeddings = [*head_embeddings, out.features["embedding"]] if head_embeddings else []
    side = TeacherOutput(out.logits, [*head_logits, out.logits], out.features, embeddings)
    ctx = LossContext(
        num_classes=10,
        num_train=40,
        image_shape=(3, 32, 32),
        student_features=feature_shapes(student, (3, 32, 32)),
        student_stages=student.stage_names,
        teacher_features=feature_shapes(teacher, (3, 32, 32)),
        teacher_stages=teacher.stage_names,
        train_labels=torch.arange(40) % 10,
        epochs=5,
    )
    loss = build_loss({"name": name, **settings}, ctx)
    batch = SimpleNamespace(labels=labels, index=torch.tensor([0, 13, 25, 39]), epoch=1)
    total, _ = loss(student(images), side, batch)
    assert side.logits.requires_grad  # the side is in the graph: the check below can fail
    total.backward()
    frozen = [*teacher.parameters(), *(mounted.parameters() if mounted else [])]
    assert all(p.grad is None for p in frozen)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
