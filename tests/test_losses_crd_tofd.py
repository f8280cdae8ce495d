"""CRD and TOFD against independent computations written here, on tiny tensors and on real zoo models."""

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from dih.errors import UserError
from dih.losses.context import LossContext
from dih.losses.crd import CRDLoss, nce_loss
from dih.losses.tofd import TOFDLoss, orthogonality
from dih.models import build_model, feature_shapes
from dih.models.output import ModelOutput
from dih.models.tofd_aux import TOFDAuxHeads
from dih.teacher_side.side import TeacherOutput

EPS = 1e-7


# ----------------------------------------------------------------------------------------------- helpers


def crd_context(train_labels: list[int], s_dim: int = 5, t_dim: int = 6, classes: int = 4) -> LossContext:
    return LossContext(
        num_classes=classes,
        num_train=len(train_labels),
        image_shape=(3, 8, 8),
        student_features={"stage1": (2, 2, 2), "embedding": (s_dim,)},
        student_stages=("stage1",),
        teacher_features={"stage1": (2, 2, 2), "embedding": (t_dim,)},
        teacher_stages=("stage1",),
        train_labels=torch.tensor(train_labels),
    )


def embed_by_hand(linear: torch.nn.Linear, x: torch.Tensor) -> list[list[float]]:
    """``normalise(W x + b)`` row by row, in Python floats."""
    w, b = linear.weight.tolist(), linear.bias.tolist()
    out = []
    for row in x.tolist():
        v = [sum(wi * xi for wi, xi in zip(wrow, row)) + bi for wrow, bi in zip(w, b)]
        n = math.sqrt(sum(e * e for e in v))
        out.append([e / n for e in v])
    return out


def nce_by_hand(anchors, bank, idx, n_data, t=0.07):
    """Returns (NCE, Z) for anchors against ``bank`` rows ``idx`` (positive first), Z estimated from them."""
    raw = [
        [math.exp(sum(a * m for a, m in zip(anchor, bank[j])) / t) for j in row]
        for anchor, row in zip(anchors, idx)
    ]
    z = sum(sum(r) for r in raw) / sum(len(r) for r in raw) * n_data
    m = (len(idx[0]) - 1) / n_data
    total = 0.0
    for r in raw:
        p = [v / z for v in r]
        total += math.log(p[0] / (p[0] + m + EPS)) + sum(math.log(m / (q + m + EPS)) for q in p[1:])
    return -total / len(anchors), z


def crd_inputs(b: int, s_dim: int, t_dim: int, classes: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    student = ModelOutput(
        torch.randn(b, classes, generator=g), {"embedding": torch.randn(b, s_dim, generator=g)}
    )
    t_logits = torch.randn(b, classes, generator=g)
    teacher = TeacherOutput(t_logits, [t_logits], {"embedding": torch.randn(b, t_dim, generator=g)})
    return student, teacher


def nonzero_grad(loss: torch.Tensor, params) -> bool:
    grads = torch.autograd.grad(loss, list(params), retain_graph=True, allow_unused=True)
    return any(g is not None and g.abs().sum() > 0 for g in grads)


# ---------------------------------------------------------------------------------------------------- CRD


def test_nce_loss_on_a_hand_made_score_row():
    scores = torch.tensor([[0.5, 0.1, 0.2]])
    m = 2 / 4
    expected = -(
        math.log(0.5 / (0.5 + m + EPS)) + math.log(m / (0.1 + m + EPS)) + math.log(m / (0.2 + m + EPS))
    )
    assert nce_loss(scores, 4).item() == pytest.approx(expected, rel=1e-6)


def test_crd_matches_an_independent_computation():
    labels = [0, 0, 1, 1, 2, 2, 3, 3]
    torch.manual_seed(0)
    loss = CRDLoss(crd_context(labels), nce_k=3, feat_dim=4)
    bank_s, bank_t = loss.bank_s.tolist(), loss.bank_t.tolist()
    student, teacher = crd_inputs(3, 5, 6, 4, seed=1)
    index = torch.tensor([0, 3, 5])
    batch = SimpleNamespace(labels=torch.tensor(labels)[index], index=index)

    torch.manual_seed(123)
    total, parts = loss(student, teacher, batch)
    torch.manual_seed(123)  # the same draw, replicated: 3 of the 6 other-class samples, without replacement
    weights = torch.tensor([[float(labels[j] != labels[i]) for j in range(8)] for i in index.tolist()])
    negatives = torch.multinomial(weights, 3, replacement=False)
    idx = [[i, *row] for i, row in zip(index.tolist(), negatives.tolist())]

    v_s = embed_by_hand(loss.embed_s.linear, student.features["embedding"])
    v_t = embed_by_hand(loss.embed_t.linear, teacher.features["embedding"])
    nce_s, z_s = nce_by_hand(v_s, bank_t, idx, 8)  # student anchor against the teacher bank
    nce_t, z_t = nce_by_hand(v_t, bank_s, idx, 8)
    assert parts["crd"].item() == pytest.approx(0.8 * (nce_s + nce_t), rel=1e-4)
    assert loss.z.tolist() == pytest.approx([z_s, z_t], rel=1e-5)
    ce = F.cross_entropy(student.logits, batch.labels)
    assert parts["ce"].item() == pytest.approx(ce.item(), rel=1e-6)
    kl = F.kl_div(  # T^2 KL(softmax(z/T) || softmax(s/T)), T = 4, batch mean
        F.log_softmax(student.logits / 4, 1), F.softmax(teacher.logits / 4, 1), reduction="batchmean"
    )
    assert parts["kd"].item() == pytest.approx(0.9 * 16 * kl.item(), rel=1e-6)
    assert total.item() == pytest.approx(sum(p.item() for p in parts.values()), rel=1e-6)


def test_crd_negatives_never_come_from_the_anchor_class():
    train_labels = torch.arange(60) % 5  # 12 per class: 48 negatives each
    loss = CRDLoss(crd_context(train_labels.tolist(), classes=5), nce_k=20, feat_dim=4)
    assert not loss.replacement
    anchors = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2, 3, 4])
    seen: dict[int, set] = {c: set() for c in range(5)}
    torch.manual_seed(0)
    for _ in range(100):
        neg = loss.sample_negatives(anchors)
        assert neg.shape == (10, 20)
        assert (train_labels[neg] != anchors.view(-1, 1)).all()
        assert all(len(set(row)) == 20 for row in neg.tolist())  # without replacement, as the reference
        for c, row in zip(anchors.tolist(), neg.tolist()):
            seen[c].update(row)
    for c in range(5):  # every other-class sample gets drawn: the sampler is not degenerate
        assert seen[c] == {i for i in range(60) if i % 5 != c}

    few = CRDLoss(crd_context(train_labels.tolist(), classes=5), nce_k=100, feat_dim=4)
    assert few.replacement  # more negatives asked for than a class has: with replacement
    neg = few.sample_negatives(anchors)
    assert neg.shape == (10, 100) and (train_labels[neg] != anchors.view(-1, 1)).all()


def test_crd_bank_momentum_update_and_fixed_z():
    labels = [0, 0, 1, 1, 2, 2, 3, 3]
    torch.manual_seed(0)
    assert CRDLoss(crd_context(labels), nce_k=3, feat_dim=4).momentum == 0.5  # the default
    loss = CRDLoss(crd_context(labels), nce_k=3, feat_dim=4, nce_momentum=0.7)  # asymmetric: catches a swap
    old_s, old_t = loss.bank_s.clone(), loss.bank_t.clone()
    student, teacher = crd_inputs(2, 5, 6, 4, seed=2)
    index = torch.tensor([1, 6])
    batch = SimpleNamespace(labels=torch.tensor(labels)[index], index=index)
    loss(student, teacher, batch)

    for bank, old, linear, x in (
        (loss.bank_s, old_s, loss.embed_s.linear, student.features["embedding"]),
        (loss.bank_t, old_t, loss.embed_t.linear, teacher.features["embedding"]),
    ):
        for row, i in zip(embed_by_hand(linear, x), index.tolist()):
            mixed = [0.7 * o + 0.3 * v for o, v in zip(old[i].tolist(), row)]
            n = math.sqrt(sum(e * e for e in mixed))
            assert bank[i].tolist() == pytest.approx([e / n for e in mixed], rel=1e-5)
        untouched = [i for i in range(8) if i not in index.tolist()]
        assert torch.equal(bank[untouched], old[untouched])

    z = loss.z.clone()
    assert (z > 0).all()
    student2, teacher2 = crd_inputs(2, 5, 6, 4, seed=3)
    loss(student2, teacher2, SimpleNamespace(labels=torch.tensor([0, 3]), index=torch.tensor([0, 7])))
    assert torch.equal(loss.z, z)  # estimated once, then fixed
    state = loss.state_dict()  # banks and Z are checkpointed with the loss, the labels are not
    assert {"bank_s", "bank_t", "z"} <= set(state) and "train_labels" not in state
    assert not torch.equal(state["bank_s"], old_s)


# --------------------------------------------------------------------------------------------------- TOFD


def test_orthogonality_by_hand():
    q, _ = torch.linalg.qr(torch.randn(5, 5, generator=torch.Generator().manual_seed(0)))
    assert orthogonality(q).item() == pytest.approx(0.0, abs=1e-5)
    # orthonormal columns, 3x2: W^T W = I, and W W^T - I = -(projection on the missing axis), norm 1
    w = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    assert orthogonality(w).item() == pytest.approx(1.0, abs=1e-6)
    w2 = torch.tensor([[2.0, 0.0], [0.0, 1.0]])  # W W^T - I = W^T W - I = diag(3, 0): 3 + 3
    assert orthogonality(w2).item() == pytest.approx(6.0, abs=1e-6)


# ------------------------------------------------------------------------------ real zoo models, gradients


def zoo_setup(student_name: str, teacher_name: str, classes: int = 10, b: int = 4, num_train: int = 40):
    torch.manual_seed(0)
    student, teacher = build_model(student_name, classes), build_model(teacher_name, classes)
    aux = TOFDAuxHeads.for_model(teacher, classes)
    train_labels = torch.arange(num_train) % classes
    ctx = LossContext(
        num_classes=classes,
        num_train=num_train,
        image_shape=(3, 32, 32),
        student_features=feature_shapes(student, (3, 32, 32)),
        student_stages=student.stage_names,
        teacher_features=feature_shapes(teacher, (3, 32, 32)),
        teacher_stages=teacher.stage_names,
        train_labels=train_labels,
        epochs=10,
    )
    images = torch.randn(b, 3, 32, 32)
    index = torch.randperm(num_train)[:b]
    batch = SimpleNamespace(images=images, labels=train_labels[index], index=index)
    batch.epoch = 1
    with torch.no_grad():  # what reaches the teacher is tested in test_faithful, with autograd on
        t_out = teacher(images)
        logits, pooled = aux.classify(t_out.features)
        cohort, embeddings = [*logits, t_out.logits], [*pooled, t_out.features["embedding"]]
        t_side = TeacherOutput(t_out.logits, cohort, t_out.features, embeddings)
    return student, teacher, aux, ctx, batch, t_side


def test_tofd_gradients_reach_student_heads_and_links_never_the_teacher():
    student, teacher, aux, ctx, batch, t_side = zoo_setup("res8", "res14")
    loss = TOFDLoss(ctx)
    total, parts = loss(student(batch.images), t_side, batch)
    assert nonzero_grad(parts["feat"], student.parameters())
    assert nonzero_grad(parts["feat"], loss.links.parameters())
    assert nonzero_grad(parts["kd"], loss.heads.parameters())
    assert nonzero_grad(parts["ce"], loss.heads.parameters())
    assert nonzero_grad(parts["orth"], loss.links.parameters())
    assert not nonzero_grad(parts["orth"], student.parameters())
    assert len(loss.heads) == 2 and loss.teacher_index == [0, 1, 2]


def test_tofd_orthogonality_vanishes_for_orthogonal_square_links():
    student, _, _, ctx, batch, t_side = zoo_setup("res8", "res14")
    loss = TOFDLoss(ctx)
    out = student(batch.images)
    assert loss(out, t_side, batch)[1]["orth"].item() > 0.01  # default init is far from orthogonal
    with torch.no_grad():
        for link in loss.links:  # res8 and res14 have the same widths: every link is square
            q, _ = torch.linalg.qr(torch.randn(link.weight.shape))
            link.weight.copy_(q)
    assert loss(out, t_side, batch)[1]["orth"].item() == pytest.approx(0.0, abs=1e-5)


def test_crd_gradients_reach_student_and_embeddings_never_the_teacher():
    student, teacher, aux, ctx, batch, t_side = zoo_setup("res8", "res14")
    loss = CRDLoss(ctx, nce_k=16)
    total, parts = loss(student(batch.images), t_side, batch)
    assert nonzero_grad(parts["crd"], student.parameters())
    assert nonzero_grad(parts["crd"], loss.embed_s.parameters())
    assert nonzero_grad(parts["crd"], loss.embed_t.parameters())
    assert not loss.bank_s.requires_grad and not loss.bank_t.requires_grad


def test_unequal_stage_counts_run():
    student, teacher, aux, ctx, batch, t_side = zoo_setup("res8", "res18")
    tofd = TOFDLoss(ctx)
    assert tofd.teacher_index == [1, 2, 3]
    assert [tuple(link.weight.shape) for link in tofd.links] == [(512, 64)] * 3
    total, _ = tofd(student(batch.images), t_side, batch)
    total.backward()
    assert torch.isfinite(total)
    crd = CRDLoss(ctx, nce_k=16)
    total, _ = crd(student(batch.images), t_side, batch)
    total.backward()
    assert torch.isfinite(total)
    bare = TeacherOutput(t_side.logits, [t_side.logits], t_side.features)  # no aux classifiers in the cohort
    with pytest.raises(UserError, match="auxiliary classifiers"):
        tofd(student(batch.images), bare, batch)


@pytest.mark.parametrize("name", ["res110", "vgg11"])
@pytest.mark.parametrize("size", [32, 64])
def test_tofd_aux_heads_shapes(name, size):
    model = build_model(name, 7)
    heads = TOFDAuxHeads.for_model(model, 7, (3, size, size))
    k = len(model.stage_names)
    assert len(heads) == k - 1 and heads.stage_names == model.stage_names[:-1]
    assert list(heads.feature_shapes) == list(model.stage_names)
    deepest = heads.feature_shapes[model.stage_names[-1]]
    for i, head in enumerate(heads.heads):  # one separable block per later stage, then pool, flatten, linear
        assert len(head) == (k - 1 - i) + 3 and head[-1].in_features == deepest[0]
    with torch.no_grad():
        logits = heads(model(torch.randn(2, 3, size, size)).features)
    assert len(logits) == k - 1 and all(z.shape == (2, 7) for z in logits)
    rebuilt = TOFDAuxHeads(heads.feature_shapes, 7)  # what the heads artifact stores rebuilds the module
    rebuilt.load_state_dict(heads.state_dict())
