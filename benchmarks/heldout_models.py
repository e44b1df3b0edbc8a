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

Weights are random (the latency does not depend on them).  Each is exported with torch's TorchScript
ONNX exporter at opset 17, batch 1.

    python benchmarks/heldout_models.py --out heldout/     # writes heldout/<name>.onnx
    python benchmarks/heldout_models.py --set 2 --out heldout2/
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

MODELS = ("squeeze", "mbconv", "convnext", "stem5", "vit")
MODELS_2 = ("mnv3", "mixer", "regnet", "fusedmb", "gptmlp")


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
        raise ValueError(f"unknown held-out model {name!r}; known: {', '.join(MODELS + MODELS_2)}")
    return net.eval(), torch.randn(1, 3, size, size)


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
    ap.add_argument("--set", type=int, choices=(1, 2), default=1, help="the first five models or the second")
    ap.add_argument("--models", default=None, help="comma-separated names (default: the set's five)")
    args = ap.parse_args(argv)
    known = MODELS + MODELS_2
    names = args.models.split(",") if args.models else list(MODELS if args.set == 1 else MODELS_2)
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
