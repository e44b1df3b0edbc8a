"""Write five small ONNX models whose architectures no zoo model and no operator space has, for
held-out checks of a predictor ("models never seen"): the shapes, kernels and epilogues of their
operators are not those the predictor was trained or tuned on.

- ``squeeze``: SqueezeNet-1.1-like fire modules (1x1 squeeze, concatenated 1x1 and 3x3 expands) at 96 px;
- ``mbconv``: EfficientNet-B0-like blocks (expand 1x1, 5x5 depthwise, squeeze-and-excite, project) with
  SiLU, channels 16-112, at 96 px;
- ``convnext``: ConvNeXt-like blocks (7x7 depthwise, 1x1 expand by 4 with GELU, 1x1 project) at 64 px;
- ``stem5``: a small CNN with a 5x5 stride-2 stem, 40/72/136 channels and a depthwise layer;
- ``vit``: a two-layer vision transformer (8x8 patches of a 64 px image: 64 tokens, hidden 320,
  5 heads, MLP 1280).

A second set (``--set 2``), drawn up later and measured blind, after the ``act`` operator-space band
was added because of the first:

- ``mnv3``: MobileNetV3-small-like blocks (hard-swish, 3x3 and 5x5 depthwise, hard-sigmoid gates), 96 px;
- ``mixer``: a two-layer MLP-Mixer (8x8 patches of 64 px: 64 tokens, hidden 256, token MLP 128,
  channel MLP 1024, GELU);
- ``regnet``: RegNetX-like blocks (grouped 3x3 convolutions of 8-channel groups), 64 px;
- ``fusedmb``: EfficientNetV2-like fused blocks (3x3 expand with SiLU, 1x1 project), 96 px;
- ``gptmlp``: a GPT-2-style block's MLP with the tanh GELU, 32 tokens, hidden 512, 2048 inner.

A third set (``--set 3``), drawn up and measured blind after the cache-set walk features and the
``nice`` and ``patch`` bands:

- ``dense``: DenseNet-like blocks (batch norm, ReLU, 1x1 bottleneck to 64, 3x3 to a growth of 16,
  concatenated) with a 1x1 + 2x2 average-pool transition, 64 px;
- ``inception``: two Inception-v1-like modules (1x1; 1x1 then 3x3; 1x1 then 5x5; 3x3 max pool then
  1x1; concatenated) at 28 px over 192 and 256 channels;
- ``winattn``: a Swin-like block: 4x4 patches of a 56 px image to 96 channels, attention within 7x7
  windows (4 windows, 3 heads of 32), an MLP of 384 with GELU;
- ``shuffle``: ShuffleNetV2-like units (channel split, 1x1, 3x3 depthwise, 1x1, concatenation, channel
  shuffle), 116 and 232 channels, 64 px;
- ``bertsmall``: a BERT-like encoder layer at hidden 384, 6 heads, 96 tokens, an FFN of 1536 with
  exact GELU.

A fourth set (``--set 4``), drawn up and measured blind after predictors learned from two machines'
rows together (docs/predictor.md, "Training on several machines"):

- ``resnext``: ResNeXt-like bottlenecks (1x1 reduce, 3x3 convolution in 32 groups of 4 channels,
  1x1 expand, residual add), 56 px;
- ``unet``: a small U-Net (two 3x3 convolutions per level at 24/48/96 channels, max pools, nearest
  upsampling and concatenation on the way back, a 1x1 head), 64 px;
- ``t5ffn``: a T5-v1.1-like gated-GELU feed-forward layer with RMS norm, 48 tokens, hidden 448,
  inner 1152;
- ``convmixer``: a ConvMixer (7x7 patches of a 63 px image to 192 channels, 9x9 depthwise and 1x1
  convolutions with GELU and batch norm, three layers);
- ``ghost``: GhostNet-like modules (a 1x1 convolution to half the channels, a cheap 3x3 depthwise one
  for the other half, concatenated), 80 px.

A fifth set (``--set 5``), drawn up and measured blind after predictors learned the compiled kernels'
counts (docs/predictor.md, "The compiled kernel"):

- ``vgglite``: plain 3x3 convolutions at 40, 80 and 160 channels with max pools, 72 px;
- ``res2``: basic residual blocks (two 3x3 convolutions) at 56 and 112 channels, the second stage
  entered by a stride-2 block with a 1x1 projection, 56 px;
- ``crossattn``: cross-attention (32 queries over 80 keys, hidden 256, 8 heads) then an FFN of 768;
- ``aspp``: DeepLab-like atrous convolutions (3x3 at dilations 2 and 4, and a 1x1 branch, 64
  channels, concatenated and fused by a 1x1), 40 px;
- ``mlp8``: a three-layer MLP on a batch of 8 (784 -> 1000 -> 500 -> 10).

A sixth set (``--set 6``), drawn up and measured blind after 420 more space operators were measured
(docs/predictor.md, "What limits it"):

- ``wideres``: WideResNet-like basic blocks at 96 and 192 channels, the second entered at stride 2, 32 px;
- ``xception``: Xception-like separable convolutions (3x3 depthwise, then 1x1) at 128, 256 and 364
  channels with max pools, 48 px;
- ``decoder``: a GPT-like decoder layer at hidden 288, 4 heads of 72, 40 tokens, an FFN of 1152;
- ``effnetlite``: EfficientNet-Lite-like blocks (expand by 4, 3x3 depthwise, project; ReLU6, no
  squeeze-and-excite) at 32, 56 and 88 channels, 80 px;
- ``mlphead``: a classifier head on a batch of 2 (1280 -> 640 -> 1000).

A seventh set (``--set 7``), drawn up and measured blind after a third 420 space operators were
measured (docs/predictor.md, "What limits it"):

- ``yolotiny``: a YOLOv3-tiny-like backbone (3x3 convolutions at 16-256 channels with batch norm and
  leaky ReLU, 2x2 max pools), 80 px;
- ``lenet``: a LeNet-5-like CNN (5x5 convolutions to 6 and 16 channels, average pools, 400 -> 120 ->
  84 -> 10) on a batch of 4, 32 px;
- ``encoder640``: a transformer encoder layer at hidden 640, 10 heads of 64, 64 tokens, an FFN of 2560
  with ReLU;
- ``mobilenetv1``: MobileNetV1-like separable blocks (3x3 depthwise and 1x1, each with batch norm and
  ReLU) at width 0.5 (16-256 channels), 64 px;
- ``mlp32``: a two-layer MLP on a batch of 32 (512 -> 2048 -> 512, GELU).

An eighth set (``--set 8``), drawn up and measured blind after the operator space's ``small`` band
was measured on the Zen 5 VM (docs/predictor.md, "What limits it"):

- ``seresnet``: SE-ResNet-like basic blocks (two 3x3 convolutions, squeeze-and-excite with a reduction
  of 16, residual add) at 48 and 96 channels, the second entered at stride 2, 40 px;
- ``resnet20``: the CIFAR ResNet-20's three stages of basic blocks (16, 32, 64 channels; one block each
  here), 32 px, a 10-way head;
- ``tinybert``: a TinyBERT-like encoder layer at hidden 312, 12 heads of 26, 32 tokens, an FFN of 1200
  with exact GELU;
- ``dlrm``: DLRM-like MLPs on a batch of 16: the bottom one 13 -> 512 -> 256 -> 64, the top one over
  the concatenation with 351 embedding features, 415 -> 512 -> 256 -> 1;
- ``mnasnet``: MnasNet-like inverted residuals (expand by 3 or 6, 3x3 and 5x5 depthwise, project;
  ReLU) at 16-80 channels, 64 px.

A ninth set (``--set 9``), drawn up and measured blind after the ``tiny`` band was measured on the
Zen 5 VM:

- ``repvgg``: RepVGG-A0-like plain 3x3 convolutions (as deployed, the branches merged) at 48, 96 and
  192 channels, stride 2 at each stage's start, 64 px;
- ``pointnet``: PointNet-like shared MLPs over 256 points (3 -> 64 -> 64 -> 128 -> 512), a max pool
  over the points, and a 40-way head (512 -> 256 -> 128 -> 40);
- ``gcn``: a two-layer graph convolution network on 256 nodes: 500 features -> 64 -> 16, each layer a
  feature GEMM then the (dense) normalised adjacency's;
- ``vittiny``: a DeiT-tiny-like encoder layer at hidden 192, 3 heads of 64, 65 tokens (64 patches and
  a class token), an MLP of 768 with GELU;
- ``ncf``: neural collaborative filtering's MLP on a batch of 64 (the user's and item's embeddings of
  64 concatenated, 128 -> 64 -> 32 -> 16, then the prediction layer over it and a GMF product of 64).

A tenth set (``--set 10``), drawn up and measured blind on a Zen 4 VM after the predictor of the
README was trained:

- ``dscnn``: a keyword-spotting DS-CNN over 49 x 10 MFCC frames: a 10 x 4 stride-2 convolution to 64
  channels, four depthwise-separable blocks at 64 channels (3 x 3 depthwise, batch norm, ReLU; 1 x 1
  pointwise), an average pool and a 12-way head;
- ``autoenc``: an MLP autoencoder on a batch of 32 images of 784 pixels: 784 -> 512 -> 128 -> 32 ->
  128 -> 512 -> 784, ReLU, a sigmoid at the end;
- ``perceiver``: a Perceiver-like cross-attention of 32 latents of 128 over 256 inputs of 64 (4
  heads of 32), then the latents' MLP 128 -> 512 -> 128 with GELU;
- ``vgg11c``: a VGG-11-like CIFAR net at 32 px at half width (32-256 channels, 3 x 3 convolutions,
  max pools) and a 10-way head;
- ``resmlp``: ResMLP-like blocks over 16 patches of 8 x 8 px of a 32-px image (dimension 128):
  token mixing by a 16 x 16 linear layer across patches, then the channel MLP 128 -> 512 -> 128
  with GELU, three blocks.

Weights are random (the latency does not depend on them).  Each is exported with torch's TorchScript
ONNX exporter at opset 17, batch 1.

    python benchmarks/heldout_models.py --out heldout/     # writes heldout/<name>.onnx
    python benchmarks/heldout_models.py --set 2 --out heldout2/
    python benchmarks/heldout_models.py --set 3 --out heldout3/
    python benchmarks/heldout_models.py --set 4 --out heldout4/
    python benchmarks/heldout_models.py --set 5 --out heldout5/
    python benchmarks/heldout_models.py --set 6 --out heldout6/
    python benchmarks/heldout_models.py --set 7 --out heldout7/
    python benchmarks/heldout_models.py --set 8 --out heldout8/
    python benchmarks/heldout_models.py --set 9 --out heldout9/
    python benchmarks/heldout_models.py --set 10 --out heldout10/
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

MODELS = ("squeeze", "mbconv", "convnext", "stem5", "vit")
MODELS_2 = ("mnv3", "mixer", "regnet", "fusedmb", "gptmlp")
MODELS_3 = ("dense", "inception", "winattn", "shuffle", "bertsmall")
MODELS_4 = ("resnext", "unet", "t5ffn", "convmixer", "ghost")
MODELS_5 = ("vgglite", "res2", "crossattn", "aspp", "mlp8")
MODELS_6 = ("wideres", "xception", "decoder", "effnetlite", "mlphead")
MODELS_7 = ("yolotiny", "lenet", "encoder640", "mobilenetv1", "mlp32")
MODELS_8 = ("seresnet", "resnet20", "tinybert", "dlrm", "mnasnet")
MODELS_9 = ("repvgg", "pointnet", "gcn", "vittiny", "ncf")
MODELS_10 = ("dscnn", "autoenc", "perceiver", "vgg11c", "resmlp")


def build(name: str):
    """(module, input tensor) of one held-out model."""
    import torch
    from torch import nn

    torch.manual_seed(0)

    class Fire(nn.Module):
        def __init__(self, cin: int, squeeze: int, expand: int) -> None:
            super().__init__()
            self.s = nn.Conv2d(cin, squeeze, 1)
            self.e1 = nn.Conv2d(squeeze, expand, 1)
            self.e3 = nn.Conv2d(squeeze, expand, 3, padding=1)

        def forward(self, x):
            s = torch.relu(self.s(x))
            return torch.cat([torch.relu(self.e1(s)), torch.relu(self.e3(s))], 1)

    class MBConv(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int, expand: int = 6) -> None:
            super().__init__()
            mid = cin * expand
            self.expand = nn.Sequential(nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.SiLU())
            self.dw = nn.Sequential(nn.Conv2d(mid, mid, 5, stride, 2, groups=mid, bias=False),
                                    nn.BatchNorm2d(mid), nn.SiLU())
            self.se1 = nn.Conv2d(mid, max(cin // 4, 4), 1)
            self.se2 = nn.Conv2d(max(cin // 4, 4), mid, 1)
            self.project = nn.Sequential(nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))
            self.skip = stride == 1 and cin == cout

        def forward(self, x):
            h = self.dw(self.expand(x))
            w = torch.sigmoid(self.se2(torch.nn.functional.silu(self.se1(h.mean((2, 3), keepdim=True)))))
            h = self.project(h * w)
            return x + h if self.skip else h

    class NextBlock(nn.Module):
        def __init__(self, c: int) -> None:
            super().__init__()
            self.dw = nn.Conv2d(c, c, 7, padding=3, groups=c)
            self.pw1 = nn.Conv2d(c, 4 * c, 1)
            self.pw2 = nn.Conv2d(4 * c, c, 1)

        def forward(self, x):
            return x + self.pw2(torch.nn.functional.gelu(self.pw1(self.dw(x))))

    class Attention(nn.Module):
        def __init__(self, d: int, heads: int, ffn: int) -> None:
            super().__init__()
            self.heads = heads
            self.n1, self.n2 = nn.LayerNorm(d), nn.LayerNorm(d)
            self.qkv, self.out = nn.Linear(d, 3 * d), nn.Linear(d, d)
            self.fc1, self.fc2 = nn.Linear(d, ffn), nn.Linear(ffn, d)

        def forward(self, x):
            b, t, d = x.shape
            q, k, v = self.qkv(self.n1(x)).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
            a = torch.softmax(q @ k.transpose(-1, -2) / (d // self.heads) ** 0.5, -1) @ v
            x = x + self.out(a.transpose(1, 2).reshape(b, t, d))
            return x + self.fc2(torch.nn.functional.gelu(self.fc1(self.n2(x))))

    class ViT(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.patch = nn.Conv2d(3, 320, 8, 8)
            self.blocks = nn.Sequential(Attention(320, 5, 1280), Attention(320, 5, 1280))
            self.head = nn.Linear(320, 100)

        def forward(self, x):
            return self.head(self.blocks(self.patch(x).flatten(2).transpose(1, 2)).mean(1))

    class MNV3(nn.Module):
        def __init__(self, cin: int, mid: int, cout: int, k: int, stride: int) -> None:
            super().__init__()
            self.expand = nn.Sequential(nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.Hardswish())
            self.dw = nn.Sequential(nn.Conv2d(mid, mid, k, stride, k // 2, groups=mid, bias=False),
                                    nn.BatchNorm2d(mid), nn.Hardswish())
            self.se1, self.se2 = nn.Conv2d(mid, mid // 4, 1), nn.Conv2d(mid // 4, mid, 1)
            self.project = nn.Sequential(nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            h = self.dw(self.expand(x))
            h = h * torch.nn.functional.hardsigmoid(self.se2(torch.relu(self.se1(h.mean((2, 3), keepdim=True)))))
            return self.project(h)

    class Mixer(nn.Module):
        def __init__(self, tokens: int, d: int, tok: int, ch: int) -> None:
            super().__init__()
            self.n1, self.n2 = nn.LayerNorm(d), nn.LayerNorm(d)
            self.t1, self.t2 = nn.Linear(tokens, tok), nn.Linear(tok, tokens)
            self.c1, self.c2 = nn.Linear(d, ch), nn.Linear(ch, d)

        def forward(self, x):
            h = self.n1(x).transpose(1, 2)
            x = x + self.t2(torch.nn.functional.gelu(self.t1(h))).transpose(1, 2)
            return x + self.c2(torch.nn.functional.gelu(self.c1(self.n2(x))))

    class RegBlock(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.a = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())
            self.b = nn.Sequential(nn.Conv2d(cout, cout, 3, stride, 1, groups=cout // 8, bias=False),
                                   nn.BatchNorm2d(cout), nn.ReLU())
            self.c = nn.Sequential(nn.Conv2d(cout, cout, 1, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            return torch.relu(self.c(self.b(self.a(x))))

    class FusedMB(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.e = nn.Sequential(nn.Conv2d(cin, 4 * cin, 3, stride, 1, bias=False), nn.BatchNorm2d(4 * cin),
                                   nn.SiLU())
            self.p = nn.Sequential(nn.Conv2d(4 * cin, cout, 1, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            return self.p(self.e(x))

    class GPTMLP(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.n, self.fc, self.proj = nn.LayerNorm(512), nn.Linear(512, 2048), nn.Linear(2048, 512)

        def forward(self, x):
            return x + self.proj(torch.nn.functional.gelu(self.fc(self.n(x)), approximate="tanh"))

    class DenseLayer(nn.Module):
        def __init__(self, cin: int, growth: int = 16, bottleneck: int = 64) -> None:
            super().__init__()
            self.f = nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(), nn.Conv2d(cin, bottleneck, 1, bias=False),
                                   nn.BatchNorm2d(bottleneck), nn.ReLU(), nn.Conv2d(bottleneck, growth, 3, 1, 1, bias=False))

        def forward(self, x):
            return torch.cat([x, self.f(x)], 1)

    class Inception(nn.Module):
        def __init__(self, cin: int, b1: int, r3: int, b3: int, r5: int, b5: int, bp: int) -> None:
            super().__init__()
            self.b1 = nn.Sequential(nn.Conv2d(cin, b1, 1), nn.ReLU())
            self.b3 = nn.Sequential(nn.Conv2d(cin, r3, 1), nn.ReLU(), nn.Conv2d(r3, b3, 3, 1, 1), nn.ReLU())
            self.b5 = nn.Sequential(nn.Conv2d(cin, r5, 1), nn.ReLU(), nn.Conv2d(r5, b5, 5, 1, 2), nn.ReLU())
            self.bp = nn.Sequential(nn.MaxPool2d(3, 1, 1), nn.Conv2d(cin, bp, 1), nn.ReLU())

        def forward(self, x):
            return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(x)], 1)

    class WindowBlock(nn.Module):
        def __init__(self, d: int = 96, heads: int = 3, window: int = 7, mlp: int = 384) -> None:
            super().__init__()
            self.d, self.h, self.w = d, heads, window
            self.n1, self.qkv, self.proj = nn.LayerNorm(d), nn.Linear(d, 3 * d), nn.Linear(d, d)
            self.n2, self.fc1, self.fc2 = nn.LayerNorm(d), nn.Linear(d, mlp), nn.Linear(mlp, d)

        def forward(self, x):  # x: (1, 14, 14, d); sizes fixed so that the export has static shapes
            hh = ww = 14
            d, w, h = self.d, self.w, self.h
            win = x.reshape(1, hh // w, w, ww // w, w, d).permute(0, 1, 3, 2, 4, 5).reshape(-1, w * w, d)
            q, k, v = self.qkv(self.n1(win)).reshape(-1, w * w, 3, h, d // h).permute(2, 0, 3, 1, 4)
            a = torch.softmax(q @ k.transpose(-2, -1) / (d // h) ** 0.5, -1) @ v
            win = win + self.proj(a.transpose(1, 2).reshape(-1, w * w, d))
            win = win + self.fc2(torch.nn.functional.gelu(self.fc1(self.n2(win))))
            return win.reshape(1, hh // w, ww // w, w, w, d).permute(0, 1, 3, 2, 4, 5).reshape(1, hh, ww, d)

    class Shuffle(nn.Module):
        def __init__(self, c: int, size: int) -> None:
            super().__init__()
            self.c, self.size = c, size
            half = c // 2
            self.f = nn.Sequential(nn.Conv2d(half, half, 1), nn.ReLU(), nn.Conv2d(half, half, 3, 1, 1, groups=half),
                                   nn.Conv2d(half, half, 1), nn.ReLU())

        def forward(self, x):
            c, n = self.c, self.size
            a, b = x[:, : c // 2], x[:, c // 2:]
            y = torch.cat([a, self.f(b)], 1)
            return y.reshape(1, 2, c // 2, n, n).transpose(1, 2).reshape(1, c, n, n)

    class Encoder(nn.Module):
        def __init__(self, d: int = 384, heads: int = 6, ffn: int = 1536, tokens: int = 96) -> None:
            super().__init__()
            self.h, self.d, self.t = heads, d, tokens
            self.qkv, self.o, self.n1 = nn.Linear(d, 3 * d), nn.Linear(d, d), nn.LayerNorm(d)
            self.fc1, self.fc2, self.n2 = nn.Linear(d, ffn), nn.Linear(ffn, d), nn.LayerNorm(d)

        def forward(self, x):  # x: (1, T, d)
            t, d = self.t, self.d
            q, k, v = self.qkv(x).reshape(1, t, 3, self.h, d // self.h).permute(2, 0, 3, 1, 4)
            a = torch.softmax(q @ k.transpose(-2, -1) / (d // self.h) ** 0.5, -1) @ v
            x = self.n1(x + self.o(a.transpose(1, 2).reshape(1, t, d)))
            return self.n2(x + self.fc2(torch.nn.functional.gelu(self.fc1(x))))

    class NeXt(nn.Module):
        def __init__(self, cin: int, width: int, cout: int, stride: int) -> None:
            super().__init__()
            self.f = nn.Sequential(nn.Conv2d(cin, width, 1), nn.ReLU(), nn.Conv2d(width, width, 3, stride, 1, groups=32),
                                   nn.ReLU(), nn.Conv2d(width, cout, 1))
            self.skip = nn.Conv2d(cin, cout, 1, stride) if (cin != cout or stride != 1) else nn.Identity()

        def forward(self, x):
            return torch.relu(self.f(x) + self.skip(x))

    class UNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            def two(a: int, b: int):
                return nn.Sequential(nn.Conv2d(a, b, 3, 1, 1), nn.ReLU(), nn.Conv2d(b, b, 3, 1, 1), nn.ReLU())
            self.e1, self.e2, self.mid = two(3, 24), two(24, 48), two(48, 96)
            self.d2, self.d1, self.head = two(96 + 48, 48), two(48 + 24, 24), nn.Conv2d(24, 4, 1)

        def forward(self, x):
            a = self.e1(x)
            b = self.e2(torch.nn.functional.max_pool2d(a, 2))
            m = self.mid(torch.nn.functional.max_pool2d(b, 2))
            b = self.d2(torch.cat([torch.nn.functional.interpolate(m, scale_factor=2.0, mode="nearest"), b], 1))
            return self.head(self.d1(torch.cat([torch.nn.functional.interpolate(b, scale_factor=2.0, mode="nearest"), a], 1)))

    class GatedFFN(nn.Module):
        def __init__(self, d: int = 448, inner: int = 1152) -> None:
            super().__init__()
            self.g, self.u = nn.Linear(d, inner, bias=False), nn.Linear(d, inner, bias=False)
            self.o, self.scale = nn.Linear(inner, d, bias=False), nn.Parameter(torch.ones(d))

        def forward(self, x):  # x: (1, T, d)
            h = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.scale
            return x + self.o(torch.nn.functional.gelu(self.g(h), approximate="tanh") * self.u(h))

    class MixerLayer(nn.Module):
        def __init__(self, c: int, k: int) -> None:
            super().__init__()
            self.dw = nn.Sequential(nn.Conv2d(c, c, k, 1, k // 2, groups=c), nn.GELU(), nn.BatchNorm2d(c))
            self.pw = nn.Sequential(nn.Conv2d(c, c, 1), nn.GELU(), nn.BatchNorm2d(c))

        def forward(self, x):
            return self.pw(x + self.dw(x))

    class Ghost(nn.Module):
        def __init__(self, cin: int, cout: int) -> None:
            super().__init__()
            half = cout // 2
            self.p = nn.Sequential(nn.Conv2d(cin, half, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU())
            self.c = nn.Sequential(nn.Conv2d(half, half, 3, 1, 1, groups=half, bias=False), nn.BatchNorm2d(half), nn.ReLU())

        def forward(self, x):
            y = self.p(x)
            return torch.cat([y, self.c(y)], 1)

    if name == "resnext":
        net = nn.Sequential(nn.Conv2d(3, 64, 3, 2, 1), nn.ReLU(), NeXt(64, 128, 128, 1), NeXt(128, 128, 128, 1),
                            NeXt(128, 256, 256, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(256, 100))
        return net.eval(), torch.randn(1, 3, 112, 112)
    if name == "unet":
        return UNet().eval(), torch.randn(1, 3, 64, 64)
    if name == "t5ffn":
        return GatedFFN().eval(), torch.randn(1, 48, 448)
    if name == "convmixer":
        net = nn.Sequential(nn.Conv2d(3, 192, 7, 7), nn.GELU(), nn.BatchNorm2d(192),
                            *[MixerLayer(192, 9) for _ in range(3)], nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                            nn.Linear(192, 100))
        return net.eval(), torch.randn(1, 3, 63, 63)
    if name == "ghost":
        net = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU(), Ghost(16, 48), nn.Conv2d(48, 48, 3, 2, 1, groups=48),
                            Ghost(48, 72), Ghost(72, 72), nn.Conv2d(72, 72, 5, 2, 2, groups=72), Ghost(72, 120),
                            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(120, 100))
        return net.eval(), torch.randn(1, 3, 80, 80)
    if name in MODELS_5:
        return _build_5(name)
    if name in MODELS_6:
        return _build_6(name)
    if name in MODELS_7:
        return _build_7(name)
    if name in MODELS_8:
        return _build_8(name)
    if name in MODELS_9:
        return _build_9(name)
    if name in MODELS_10:
        return _build_10(name)
    if name == "dense":
        net = nn.Sequential(nn.Conv2d(3, 32, 3, 2, 1), *[DenseLayer(32 + 16 * i) for i in range(4)],
                            nn.BatchNorm2d(96), nn.ReLU(), nn.Conv2d(96, 48, 1), nn.AvgPool2d(2),
                            *[DenseLayer(48 + 16 * i) for i in range(3)], nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                            nn.Linear(96, 100))
        return net.eval(), torch.randn(1, 3, 64, 64)
    if name == "inception":
        net = nn.Sequential(nn.Conv2d(3, 192, 3, 2, 1), nn.ReLU(), Inception(192, 64, 96, 128, 16, 32, 32),
                            Inception(256, 128, 128, 192, 32, 96, 64), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                            nn.Linear(480, 100))
        return net.eval(), torch.randn(1, 3, 56, 56)
    if name == "winattn":
        class SwinNet(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.patch, self.block, self.head = nn.Conv2d(3, 96, 4, 4), WindowBlock(), nn.Linear(96, 100)

            def forward(self, x):
                return self.head(self.block(self.patch(x).permute(0, 2, 3, 1)).mean((1, 2)))

        return SwinNet().eval(), torch.randn(1, 3, 56, 56)
    if name == "shuffle":
        net = nn.Sequential(nn.Conv2d(3, 116, 3, 2, 1), nn.ReLU(), Shuffle(116, 32), Shuffle(116, 32),
                            nn.Conv2d(116, 232, 3, 2, 1, groups=116), nn.Conv2d(232, 232, 1), nn.ReLU(),
                            Shuffle(232, 16), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(232, 100))
        return net.eval(), torch.randn(1, 3, 64, 64)
    if name == "bertsmall":
        return Encoder().eval(), torch.randn(1, 96, 384)
    if name == "mnv3":
        net = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.Hardswish(), MNV3(16, 72, 24, 3, 2), MNV3(24, 96, 40, 5, 2),
                            MNV3(40, 240, 40, 5, 1), MNV3(40, 288, 96, 5, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                            nn.Linear(96, 100))
        return net.eval(), torch.randn(1, 3, 96, 96)
    if name == "mixer":
        class MixerNet(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.patch = nn.Conv2d(3, 256, 8, 8)
                self.blocks = nn.Sequential(Mixer(64, 256, 128, 1024), Mixer(64, 256, 128, 1024))
                self.head = nn.Linear(256, 100)

            def forward(self, x):
                return self.head(self.blocks(self.patch(x).flatten(2).transpose(1, 2)).mean(1))

        return MixerNet().eval(), torch.randn(1, 3, 64, 64)
    if name == "regnet":
        net = nn.Sequential(nn.Conv2d(3, 32, 3, 2, 1), nn.ReLU(), RegBlock(32, 64, 2), RegBlock(64, 64, 1),
                            RegBlock(64, 152, 2), RegBlock(152, 152, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                            nn.Linear(152, 100))
        return net.eval(), torch.randn(1, 3, 64, 64)
    if name == "fusedmb":
        net = nn.Sequential(nn.Conv2d(3, 24, 3, 2, 1), nn.SiLU(), FusedMB(24, 48, 2), FusedMB(48, 64, 2),
                            FusedMB(64, 64, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 100))
        return net.eval(), torch.randn(1, 3, 96, 96)
    if name == "gptmlp":
        return GPTMLP().eval(), torch.randn(1, 32, 512)
    if name == "squeeze":
        net = nn.Sequential(nn.Conv2d(3, 64, 3, 2), nn.ReLU(), nn.MaxPool2d(3, 2), Fire(64, 16, 64),
                            Fire(128, 16, 64), nn.MaxPool2d(3, 2), Fire(128, 32, 128), Fire(256, 48, 192),
                            Fire(384, 64, 256), nn.Conv2d(512, 100, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                            nn.Flatten())
        size = 96
    elif name == "mbconv":
        net = nn.Sequential(nn.Conv2d(3, 32, 3, 2, 1), nn.SiLU(), MBConv(32, 16, 1, expand=1), MBConv(16, 24, 2),
                            MBConv(24, 40, 2), MBConv(40, 80, 2), MBConv(80, 112, 1), nn.AdaptiveAvgPool2d(1),
                            nn.Flatten(), nn.Linear(112, 100))
        size = 96
    elif name == "convnext":
        net = nn.Sequential(nn.Conv2d(3, 48, 4, 4), NextBlock(48), nn.Conv2d(48, 96, 2, 2), NextBlock(96),
                            nn.Conv2d(96, 192, 2, 2), NextBlock(192), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                            nn.Linear(192, 100))
        size = 64
    elif name == "stem5":
        net = nn.Sequential(nn.Conv2d(3, 40, 5, 2, 2), nn.ReLU(), nn.Conv2d(40, 72, 3, 1, 1), nn.ReLU(),
                            nn.Conv2d(72, 72, 3, 2, 1, groups=72), nn.ReLU(), nn.Conv2d(72, 136, 1), nn.ReLU(),
                            nn.Conv2d(136, 136, 3, 1, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                            nn.Linear(136, 100))
        size = 64
    elif name == "vit":
        net, size = ViT(), 64
    else:
        raise ValueError(f"unknown held-out model {name!r}; known: {', '.join(MODELS + MODELS_2 + MODELS_3 + MODELS_4 + MODELS_5 + MODELS_6 + MODELS_7 + MODELS_8 + MODELS_9 + MODELS_10)}")
    return net.eval(), torch.randn(1, 3, size, size)


def _build_5(name: str):
    """(module, input tensor) of one model of the fifth set."""
    import torch
    from torch import nn

    def conv(i: int, o: int, k: int = 3, stride: int = 1, dilation: int = 1) -> nn.Module:
        return nn.Sequential(nn.Conv2d(i, o, k, stride, dilation * (k // 2), dilation=dilation), nn.ReLU())

    class Basic(nn.Module):
        def __init__(self, i: int, o: int, stride: int) -> None:
            super().__init__()
            self.a, self.b = conv(i, o, stride=stride), nn.Conv2d(o, o, 3, 1, 1)
            self.skip = nn.Conv2d(i, o, 1, stride) if (i, stride) != (o, 1) else nn.Identity()

        def forward(self, x):
            return torch.relu(self.b(self.a(x)) + self.skip(x))

    class Atrous(nn.Module):
        def __init__(self, c: int) -> None:
            super().__init__()
            self.one, self.d2, self.d4 = conv(c, c, 1), conv(c, c, dilation=2), conv(c, c, dilation=4)
            self.fuse = conv(3 * c, c, 1)

        def forward(self, x):
            return self.fuse(torch.cat([self.one(x), self.d2(x), self.d4(x)], 1))

    class CrossAttention(nn.Module):
        def __init__(self, d: int = 256, heads: int = 8, queries: int = 32) -> None:
            super().__init__()
            self.d, self.heads, self.queries = d, heads, queries
            self.q, self.kv, self.out = nn.Linear(d, d), nn.Linear(d, 2 * d), nn.Linear(d, d)
            self.ffn = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, 768), nn.GELU(), nn.Linear(768, d))

        def forward(self, x):
            h, dh = self.heads, self.d // self.heads
            q = self.q(x[:, :self.queries]).reshape(1, -1, h, dh).transpose(1, 2)
            k, v = self.kv(x[:, self.queries:]).reshape(1, -1, 2, h, dh).permute(2, 0, 3, 1, 4)
            a = torch.softmax(q @ k.transpose(-1, -2) / dh ** 0.5, -1) @ v
            y = x[:, :self.queries] + self.out(a.transpose(1, 2).reshape(1, -1, self.d))
            return y + self.ffn(y)

    if name == "vgglite":
        net = nn.Sequential(conv(3, 40), conv(40, 40), nn.MaxPool2d(2), conv(40, 80), conv(80, 80), nn.MaxPool2d(2),
                            conv(80, 160), conv(160, 160), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(160, 100))
        return net.eval(), torch.randn(1, 3, 72, 72)
    if name == "res2":
        net = nn.Sequential(conv(3, 56, stride=2), Basic(56, 56, 1), Basic(56, 112, 2), Basic(112, 112, 1),
                            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(112, 100))
        return net.eval(), torch.randn(1, 3, 56, 56)
    if name == "crossattn":
        return CrossAttention().eval(), torch.randn(1, 112, 256)
    if name == "aspp":
        net = nn.Sequential(conv(3, 64, stride=2), Atrous(64), nn.Conv2d(64, 21, 1))
        return net.eval(), torch.randn(1, 3, 40, 40)
    net = nn.Sequential(nn.Linear(784, 1000), nn.ReLU(), nn.Linear(1000, 500), nn.ReLU(), nn.Linear(500, 10))
    return net.eval(), torch.randn(8, 784)


def _build_6(name: str):
    """(module, input tensor) of one model of the sixth set."""
    import torch
    from torch import nn

    class Wide(nn.Module):
        def __init__(self, i: int, o: int, stride: int) -> None:
            super().__init__()
            self.a = nn.Sequential(nn.Conv2d(i, o, 3, stride, 1), nn.BatchNorm2d(o), nn.ReLU())
            self.b = nn.Conv2d(o, o, 3, 1, 1)
            self.skip = nn.Conv2d(i, o, 1, stride) if (i, stride) != (o, 1) else nn.Identity()

        def forward(self, x):
            return torch.relu(self.b(self.a(x)) + self.skip(x))

    def separable(i: int, o: int) -> nn.Module:
        return nn.Sequential(nn.Conv2d(i, i, 3, 1, 1, groups=i, bias=False), nn.Conv2d(i, o, 1), nn.ReLU())

    class Lite(nn.Module):
        def __init__(self, i: int, o: int, stride: int) -> None:
            super().__init__()
            m = 4 * i
            self.f = nn.Sequential(nn.Conv2d(i, m, 1), nn.ReLU6(), nn.Conv2d(m, m, 3, stride, 1, groups=m), nn.ReLU6(),
                                   nn.Conv2d(m, o, 1))
            self.res = (i, stride) == (o, 1)

        def forward(self, x):
            y = self.f(x)
            return x + y if self.res else y

    class Decoder(nn.Module):
        def __init__(self, d: int = 288, heads: int = 4, ffn: int = 1152, tokens: int = 40) -> None:
            super().__init__()
            self.d, self.heads = d, heads
            self.n1, self.n2 = nn.LayerNorm(d), nn.LayerNorm(d)
            self.qkv, self.out = nn.Linear(d, 3 * d), nn.Linear(d, d)
            self.ffn = nn.Sequential(nn.Linear(d, ffn), nn.GELU(), nn.Linear(ffn, d))
            self.register_buffer("mask", torch.triu(torch.full((tokens, tokens), float("-inf")), 1))

        def forward(self, x):  # x: (1, T, d)
            h, dh = self.heads, self.d // self.heads
            q, k, v = self.qkv(self.n1(x)).reshape(1, -1, 3, h, dh).permute(2, 0, 3, 1, 4)
            a = torch.softmax(q @ k.transpose(-1, -2) / dh ** 0.5 + self.mask, -1) @ v
            y = x + self.out(a.transpose(1, 2).reshape(1, -1, self.d))
            return y + self.ffn(self.n2(y))

    if name == "wideres":
        net = nn.Sequential(nn.Conv2d(3, 32, 3, 1, 1), nn.ReLU(), Wide(32, 96, 1), Wide(96, 96, 1), Wide(96, 192, 2),
                            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(192, 10))
        return net.eval(), torch.randn(1, 3, 32, 32)
    if name == "xception":
        net = nn.Sequential(nn.Conv2d(3, 64, 3, 2, 1), nn.ReLU(), separable(64, 128), separable(128, 128),
                            nn.MaxPool2d(3, 2, 1), separable(128, 256), separable(256, 256), nn.MaxPool2d(3, 2, 1),
                            separable(256, 364), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(364, 100))
        return net.eval(), torch.randn(1, 3, 48, 48)
    if name == "decoder":
        return Decoder().eval(), torch.randn(1, 40, 288)
    if name == "effnetlite":
        net = nn.Sequential(nn.Conv2d(3, 32, 3, 2, 1), nn.ReLU6(), Lite(32, 32, 1), Lite(32, 56, 2), Lite(56, 56, 1),
                            Lite(56, 88, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(88, 100))
        return net.eval(), torch.randn(1, 3, 80, 80)
    net = nn.Sequential(nn.Linear(1280, 640), nn.ReLU(), nn.Linear(640, 1000))
    return net.eval(), torch.randn(2, 1280)


def _build_7(name: str):
    """(module, input tensor) of one model of the seventh set."""
    import torch
    from torch import nn

    def cbl(i: int, o: int) -> list:
        return [nn.Conv2d(i, o, 3, 1, 1, bias=False), nn.BatchNorm2d(o), nn.LeakyReLU(0.1)]

    def dw_sep(i: int, o: int, stride: int) -> list:
        return [nn.Conv2d(i, i, 3, stride, 1, groups=i, bias=False), nn.BatchNorm2d(i), nn.ReLU(),
                nn.Conv2d(i, o, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU()]

    class Encoder(nn.Module):
        def __init__(self, d: int = 640, heads: int = 10, ffn: int = 2560) -> None:
            super().__init__()
            self.d, self.heads = d, heads
            self.qkv, self.out = nn.Linear(d, 3 * d), nn.Linear(d, d)
            self.n1, self.n2 = nn.LayerNorm(d), nn.LayerNorm(d)
            self.ffn = nn.Sequential(nn.Linear(d, ffn), nn.ReLU(), nn.Linear(ffn, d))

        def forward(self, x):  # x: (1, T, d)
            h, dh = self.heads, self.d // self.heads
            q, k, v = self.qkv(x).reshape(1, -1, 3, h, dh).permute(2, 0, 3, 1, 4)
            a = torch.softmax(q @ k.transpose(-1, -2) / dh ** 0.5, -1) @ v
            y = self.n1(x + self.out(a.transpose(1, 2).reshape(1, -1, self.d)))
            return self.n2(y + self.ffn(y))

    if name == "yolotiny":
        layers: list = []
        for i, o in ((3, 16), (16, 32), (32, 64), (64, 128)):
            layers += cbl(i, o) + [nn.MaxPool2d(2, 2)]
        layers += cbl(128, 256) + [nn.Conv2d(256, 64, 1)]
        return nn.Sequential(*layers).eval(), torch.randn(1, 3, 80, 80)
    if name == "lenet":
        net = nn.Sequential(nn.Conv2d(3, 6, 5), nn.ReLU(), nn.AvgPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
                            nn.AvgPool2d(2), nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84),
                            nn.ReLU(), nn.Linear(84, 10))
        return net.eval(), torch.randn(4, 3, 32, 32)
    if name == "encoder640":
        return Encoder().eval(), torch.randn(1, 64, 640)
    if name == "mobilenetv1":
        layers = [nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()]
        for i, o, stride in ((16, 32, 1), (32, 64, 2), (64, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2)):
            layers += dw_sep(i, o, stride)
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(256, 100)]
        return nn.Sequential(*layers).eval(), torch.randn(1, 3, 64, 64)
    net = nn.Sequential(nn.Linear(512, 2048), nn.GELU(), nn.Linear(2048, 512))
    return net.eval(), torch.randn(32, 512)


def _build_8(name: str):
    """(module, input tensor) of one model of the eighth set."""
    import torch
    from torch import nn

    class SEBlock(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                                      nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
            self.se = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cout, cout // 16), nn.ReLU(),
                                    nn.Linear(cout // 16, cout), nn.Sigmoid())
            self.skip = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                         if stride != 1 or cin != cout else nn.Identity())

        def forward(self, x):
            y = self.body(x)
            return torch.relu(y * self.se(y)[:, :, None, None] + self.skip(x))

    class Basic(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                                      nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
            self.skip = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                         if stride != 1 or cin != cout else nn.Identity())

        def forward(self, x):
            return torch.relu(self.body(x) + self.skip(x))

    class TinyEncoder(nn.Module):
        def __init__(self, d: int = 312, heads: int = 12, ffn: int = 1200) -> None:
            super().__init__()
            self.d, self.heads = d, heads
            self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
            self.n1, self.n2 = nn.LayerNorm(d), nn.LayerNorm(d)
            self.ffn = nn.Sequential(nn.Linear(d, ffn), nn.GELU(), nn.Linear(ffn, d))

        def forward(self, x):  # x: (1, T, d)
            h, dh = self.heads, self.d // self.heads

            def split(t):
                return t.reshape(1, -1, h, dh).transpose(1, 2)

            a = torch.softmax(split(self.q(x)) @ split(self.k(x)).transpose(-1, -2) / dh ** 0.5, -1) @ split(self.v(x))
            y = self.n1(x + self.o(a.transpose(1, 2).reshape(1, -1, self.d)))
            return self.n2(y + self.ffn(y))

    class DLRM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bottom = nn.Sequential(nn.Linear(13, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(),
                                        nn.Linear(256, 64), nn.ReLU())
            self.top = nn.Sequential(nn.Linear(415, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(),
                                     nn.Linear(256, 1), nn.Sigmoid())

        def forward(self, x):  # x: (16, 13 + 351): dense features, then the embeddings' interactions
            return self.top(torch.cat([self.bottom(x[:, :13]), x[:, 13:]], 1))

    class Inverted(nn.Module):
        def __init__(self, cin: int, cout: int, k: int, stride: int, expand: int) -> None:
            super().__init__()
            mid = cin * expand
            self.body = nn.Sequential(nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(),
                                      nn.Conv2d(mid, mid, k, stride, k // 2, groups=mid, bias=False),
                                      nn.BatchNorm2d(mid), nn.ReLU(), nn.Conv2d(mid, cout, 1, bias=False),
                                      nn.BatchNorm2d(cout))
            self.res = stride == 1 and cin == cout

        def forward(self, x):
            y = self.body(x)
            return x + y if self.res else y

    if name == "seresnet":
        net = nn.Sequential(nn.Conv2d(3, 48, 3, 1, 1, bias=False), nn.BatchNorm2d(48), nn.ReLU(), SEBlock(48, 48, 1),
                            SEBlock(48, 96, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(96, 100))
        return net.eval(), torch.randn(1, 3, 40, 40)
    if name == "resnet20":
        net = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(), Basic(16, 16, 1),
                            Basic(16, 32, 2), Basic(32, 64, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))
        return net.eval(), torch.randn(1, 3, 32, 32)
    if name == "tinybert":
        return TinyEncoder().eval(), torch.randn(1, 32, 312)
    if name == "dlrm":
        return DLRM().eval(), torch.randn(16, 13 + 351)
    net = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                        Inverted(16, 24, 3, 2, 3), Inverted(24, 24, 3, 1, 3), Inverted(24, 40, 5, 2, 3),
                        Inverted(40, 80, 5, 2, 6), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(80, 100))
    return net.eval(), torch.randn(1, 3, 64, 64)


def _build_9(name: str):
    """(module, input tensor) of one model of the ninth set."""
    import torch
    from torch import nn

    class PointNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.shared = nn.Sequential(nn.Linear(3, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 128),
                                        nn.ReLU(), nn.Linear(128, 512), nn.ReLU())
            self.head = nn.Sequential(nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 40))

        def forward(self, x):  # x: (256, 3) points
            return self.head(self.shared(x).max(0, keepdim=True).values)

    class GCN(nn.Module):
        def __init__(self, nodes: int = 256) -> None:
            super().__init__()
            self.w1, self.w2 = nn.Linear(500, 64, bias=False), nn.Linear(64, 16, bias=False)
            adj = (torch.rand(nodes, nodes) < 0.02).float() + torch.eye(nodes)
            deg = adj.sum(1).rsqrt()
            self.register_buffer("adj", deg[:, None] * adj * deg[None, :])

        def forward(self, x):  # x: (nodes, 500)
            return self.adj @ self.w2(torch.relu(self.adj @ self.w1(x)))

    class Encoder(nn.Module):
        def __init__(self, d: int = 192, heads: int = 3, mlp: int = 768) -> None:
            super().__init__()
            self.d, self.heads = d, heads
            self.qkv, self.out = nn.Linear(d, 3 * d), nn.Linear(d, d)
            self.n1, self.n2 = nn.LayerNorm(d), nn.LayerNorm(d)
            self.mlp = nn.Sequential(nn.Linear(d, mlp), nn.GELU(), nn.Linear(mlp, d))

        def forward(self, x):  # x: (1, T, d), pre-norm
            h, dh = self.heads, self.d // self.heads
            q, k, v = self.qkv(self.n1(x)).reshape(1, -1, 3, h, dh).permute(2, 0, 3, 1, 4)
            a = torch.softmax(q @ k.transpose(-1, -2) / dh ** 0.5, -1) @ v
            x = x + self.out(a.transpose(1, 2).reshape(1, -1, self.d))
            return x + self.mlp(self.n2(x))

    class NCF(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mlp = nn.Sequential(nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 16),
                                     nn.ReLU())
            self.predict = nn.Linear(16 + 64, 1)

        def forward(self, x):  # x: (64, 256): MLP user and item embeddings, then GMF user and item ones
            gmf = x[:, 128:192] * x[:, 192:]
            return torch.sigmoid(self.predict(torch.cat([self.mlp(x[:, :128]), gmf], 1)))

    if name == "repvgg":
        layers: list = []
        for i, o, n in ((3, 48, 1), (48, 96, 2), (96, 192, 2)):
            layers += [nn.Conv2d(i, o, 3, 2, 1), nn.ReLU()]
            for _ in range(n - 1):
                layers += [nn.Conv2d(o, o, 3, 1, 1), nn.ReLU()]
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(192, 100)]
        return nn.Sequential(*layers).eval(), torch.randn(1, 3, 64, 64)
    if name == "pointnet":
        return PointNet().eval(), torch.randn(256, 3)
    if name == "gcn":
        return GCN().eval(), torch.randn(256, 500)
    if name == "vittiny":
        return Encoder().eval(), torch.randn(1, 65, 192)
    return NCF().eval(), torch.randn(64, 256)


def _build_10(name: str):
    """(module, input tensor) of one model of the tenth set."""
    import torch
    from torch import nn

    if name == "dscnn":
        layers: list = [nn.Conv2d(1, 64, (10, 4), 2, (5, 1)), nn.BatchNorm2d(64), nn.ReLU()]
        for _ in range(4):
            layers += [nn.Conv2d(64, 64, 3, 1, 1, groups=64), nn.BatchNorm2d(64), nn.ReLU(),
                       nn.Conv2d(64, 64, 1), nn.BatchNorm2d(64), nn.ReLU()]
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 12)]
        return nn.Sequential(*layers).eval(), torch.randn(1, 1, 49, 10)
    if name == "autoenc":
        dims = (784, 512, 128, 32, 128, 512, 784)
        layers = []
        for i, (a, b) in enumerate(zip(dims, dims[1:])):
            layers += [nn.Linear(a, b), nn.ReLU() if i < len(dims) - 2 else nn.Sigmoid()]
        return nn.Sequential(*layers).eval(), torch.randn(32, 784)

    class Perceiver(nn.Module):
        def __init__(self, latents: int = 32, d: int = 128, din: int = 64, heads: int = 4) -> None:
            super().__init__()
            self.latents = nn.Parameter(torch.randn(1, latents, d))
            self.d, self.heads = d, heads
            self.q, self.k, self.v, self.out = nn.Linear(d, d), nn.Linear(din, d), nn.Linear(din, d), nn.Linear(d, d)
            self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

        def forward(self, x):  # x: (1, 256, 64)
            h, dh = self.heads, self.d // self.heads
            q = self.q(self.latents).reshape(1, -1, h, dh).transpose(1, 2)
            k = self.k(x).reshape(1, -1, h, dh).transpose(1, 2)
            v = self.v(x).reshape(1, -1, h, dh).transpose(1, 2)
            a = torch.softmax(q @ k.transpose(-1, -2) / dh ** 0.5, -1)
            z = self.latents + self.out((a @ v).transpose(1, 2).reshape(1, -1, self.d))
            return z + self.mlp(z)

    class ResMLP(nn.Module):
        def __init__(self, d: int = 128, patches: int = 16, blocks: int = 3) -> None:
            super().__init__()
            self.embed = nn.Conv2d(3, d, 8, 8)
            self.tokens = nn.ModuleList(nn.Linear(patches, patches) for _ in range(blocks))
            self.channels = nn.ModuleList(nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))
                                          for _ in range(blocks))
            self.head = nn.Linear(d, 10)

        def forward(self, x):  # x: (1, 3, 32, 32)
            z = self.embed(x).flatten(2).transpose(1, 2)  # (1, 16, d)
            for tok, ch in zip(self.tokens, self.channels):
                z = z + tok(z.transpose(1, 2)).transpose(1, 2)
                z = z + ch(z)
            return self.head(z.mean(1))

    if name == "perceiver":
        return Perceiver().eval(), torch.randn(1, 256, 64)
    if name == "vgg11c":
        layers = []
        cin = 3
        for c in (32, "M", 64, "M", 128, 128, "M", 256, 256, "M", 256, 256, "M"):
            if c == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(cin, c, 3, 1, 1), nn.ReLU()]
                cin = c
        layers += [nn.Flatten(), nn.Linear(256, 10)]
        return nn.Sequential(*layers).eval(), torch.randn(1, 3, 32, 32)
    return ResMLP().eval(), torch.randn(1, 3, 32, 32)


def write(name: str, out: Path) -> Path:
    import torch

    net, x = build(name)
    path = out / f"{name}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), str(path), dynamo=False, opset_version=17)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="folder for the .onnx files")
    ap.add_argument("--set", type=int, choices=tuple(range(1, 11)), default=1,
                    help="which five models: the first to the tenth")
    ap.add_argument("--models", default=None, help="comma-separated names (default: the set's five)")
    args = ap.parse_args(argv)
    known = MODELS + MODELS_2 + MODELS_3 + MODELS_4 + MODELS_5 + MODELS_6 + MODELS_7 + MODELS_8 + MODELS_9 + MODELS_10
    names = args.models.split(",") if args.models else list({1: MODELS, 2: MODELS_2, 3: MODELS_3, 4: MODELS_4,
                                                             5: MODELS_5, 6: MODELS_6, 7: MODELS_7,
                                                             8: MODELS_8, 9: MODELS_9, 10: MODELS_10}[args.set])
    for name in names:
        if name not in known:
            print(f"error: unknown held-out model {name!r}; known: {', '.join(known)}", file=sys.stderr)
            return 2
    args.out.mkdir(parents=True, exist_ok=True)
    for name in names:
        print(write(name, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
