"""Larger preset networks: CIFAR-shaped ResNets and a small character-level transformer.

Coding needs a loss that is a sum over samples, so no layer may mix samples: the ResNets use
GroupNorm instead of BatchNorm (whose batch statistics would make a chunk's gradient depend on
which other samples share its batch), and the transformer has no dropout.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, channels // 4) or 1, channels)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        cout = width * self.expansion
        self.body = nn.Sequential(
            nn.Conv2d(cin, width, 3, stride, 1, bias=False), _norm(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, cout, 3, 1, 1, bias=False), _norm(cout))
        self.skip = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), _norm(cout))

    def forward(self, x):
        return torch.relu(self.body(x) + self.skip(x))


class Bottleneck(BasicBlock):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int):
        nn.Module.__init__(self)
        cout = width * self.expansion
        self.body = nn.Sequential(
            nn.Conv2d(cin, width, 1, bias=False), _norm(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, stride, 1, bias=False), _norm(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, cout, 1, bias=False), _norm(cout))
        self.skip = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), _norm(cout))


class ResNet(nn.Module):
    """The CIFAR variant of ResNet (3×3 stem, no max-pool), GroupNorm throughout."""

    def __init__(self, block: type[BasicBlock], layers: tuple[int, ...], input_shape: tuple[int, ...],
                 num_classes: int, width: int = 64):
        super().__init__()
        if len(input_shape) != 3:
            raise ValueError(f"a ResNet needs (C, H, W) inputs, got input_shape={input_shape}")
        self.input_shape = tuple(input_shape)
        stages, cin = [], width
        for i, blocks in enumerate(layers):
            for j in range(blocks):
                stride = 2 if i > 0 and j == 0 else 1
                stages.append(block(cin, width * 2 ** i, stride))
                cin = width * 2 ** i * block.expansion
        self.net = nn.Sequential(
            nn.Conv2d(input_shape[0], width, 3, 1, 1, bias=False), _norm(width), nn.ReLU(inplace=True),
            *stages, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes))

    def forward(self, x):
        return self.net(x.reshape(x.shape[0], *self.input_shape))


def resnet18(input_shape, num_classes, width: int = 64) -> ResNet:
    return ResNet(BasicBlock, (2, 2, 2, 2), input_shape, num_classes, width)


def resnet50(input_shape, num_classes, width: int = 64) -> ResNet:
    return ResNet(Bottleneck, (3, 4, 6, 3), input_shape, num_classes, width)


class CharTransformer(nn.Module):
    """A causal character-level transformer: tokens (N, L) -> logits (N, L, vocab)."""

    def __init__(self, input_shape, num_classes, dim: int = 64, layers: int = 2, heads: int = 4):
        super().__init__()
        (block,) = input_shape
        self.embed = nn.Embedding(num_classes, dim)
        self.position = nn.Parameter(torch.randn(block, dim) / math.sqrt(dim))
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, batch_first=True,
                                           norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        self.register_buffer("causal", nn.Transformer.generate_square_subsequent_mask(block),
                             persistent=False)

    def forward(self, tokens):
        length = tokens.shape[1]
        h = self.embed(tokens) + self.position[:length]
        h = self.blocks(h, mask=self.causal[:length, :length], is_causal=True)
        return self.head(self.norm(h))
