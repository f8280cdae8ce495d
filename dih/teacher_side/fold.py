"""Batch norm folded into the convolution before it: a frozen, eval-mode copy of a model that computes the
same outputs (up to rounding) with one layer fewer per fold. Used for the frozen teacher side only."""

import copy

import torch
from torch import nn


def folded_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """``bn(conv(x))`` with ``bn``'s running statistics, as one convolution with a bias. The new weights
    are computed in float64, so folding adds no rounding beyond the final cast."""
    scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
    fused = copy.deepcopy(conv)
    fused.weight = nn.Parameter((conv.weight.double() * scale.view(-1, 1, 1, 1)).to(conv.weight.dtype))
    fused.bias = nn.Parameter(
        ((bias - bn.running_mean.double()) * scale + bn.bias.double()).to(conv.weight.dtype)
    )
    return fused


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    return (
        type(conv) is nn.Conv2d
        and type(bn) is nn.BatchNorm2d
        and bn.track_running_stats
        and bn.affine
        and conv.out_channels == bn.num_features
    )


def fold_batch_norm(model: nn.Module) -> nn.Module:
    """A frozen eval-mode copy of ``model`` in which every batch norm that directly follows a convolution is
    folded into it and replaced by ``nn.Identity`` (so indices into a ``Sequential`` keep their meaning).
    Foldable pairs are adjacent entries of an ``nn.Sequential`` and the ``(conv, bn)`` attribute names a
    block lists in ``conv_bn_pairs``: its forward applies that bn to that conv's output and nothing else
    reads the conv's output. Any other batch norm (a pre-activation one, say) stays as it is."""
    folded = copy.deepcopy(model).eval().requires_grad_(False)
    for module in list(folded.modules()):
        for conv_name, bn_name in getattr(module, "conv_bn_pairs", ()):
            conv, bn = getattr(module, conv_name), getattr(module, bn_name)
            if _foldable(conv, bn):
                setattr(module, conv_name, folded_conv(conv, bn))
                setattr(module, bn_name, nn.Identity())
        if isinstance(module, nn.Sequential):
            for i in range(len(module) - 1):
                if _foldable(module[i], module[i + 1]):
                    module[i], module[i + 1] = folded_conv(module[i], module[i + 1]), nn.Identity()
    return folded.requires_grad_(False)
