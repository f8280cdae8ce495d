"""The CIFAR ResNets of He et al.: res8, res14, res20, res110 (16/32/64 channels, n = (depth-2)/6)."""

from dih.models.resnet import ResNet


def cifar_resnet(depth: int, num_classes: int) -> ResNet:
    """A CIFAR ResNet of the given depth (6n + 2): three stages of n basic blocks, strides 1, 2, 2."""
    if (depth - 2) % 6:
        raise ValueError(f"CIFAR ResNet depth must be 6n + 2, got {depth}")
    n = (depth - 2) // 6
    return ResNet(16, (16, 32, 64), (1, 2, 2), (n, n, n), num_classes)


def res8(num_classes: int) -> ResNet:
    """CIFAR ResNet-8 (one block a stage)."""
    return cifar_resnet(8, num_classes)


def res14(num_classes: int) -> ResNet:
    """CIFAR ResNet-14 (two blocks a stage)."""
    return cifar_resnet(14, num_classes)


def res20(num_classes: int) -> ResNet:
    """CIFAR ResNet-20 (three blocks a stage)."""
    return cifar_resnet(20, num_classes)


def res110(num_classes: int) -> ResNet:
    """CIFAR ResNet-110 (eighteen blocks a stage)."""
    return cifar_resnet(110, num_classes)
