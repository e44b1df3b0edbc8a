"""A small multilayer perceptron on log latency, blended with the XGBoost boosters.

Trees cut the feature space into boxes and predict a box's mean; a network fits one smooth function
of all features at once.  Their errors on operators neither has seen differ enough that their average
beats either (docs/predictor.md, "Results: a network beside the trees").  Trained with torch (a dependency
already); saved as plain arrays in an ``.npz`` without pickles and evaluated with numpy, so a
loaded predictor needs no torch.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from opscope.errors import PredictorError

MLP_FILE = "model.mlp.npz"
#: standardised inputs are clipped to this many training standard deviations
CLIP_SD = 8.0
#: rows evaluated together when predicting
PREDICT_CHUNK = 4096


def _silu(x: np.ndarray) -> np.ndarray:
    """x / (1 + e^-x), with x clipped to +-60 inside the exponential; in place of ``x``."""
    t = np.clip(x, -60.0, 60.0)
    np.negative(t, out=t)
    np.exp(t, out=t)
    t += 1.0
    return np.divide(x, t, out=x)


class MLPEngine:
    """Fully connected layers of ``hidden`` widths with SiLU between them, on standardised features
    (a missing feature is the training mean, 0 after standardising; a column that never varied in
    training is 0; every input is clipped to the range training saw of it and to ``CLIP_SD`` standard
    deviations), regressing the centred target by
    weighted squared error; AdamW with a one-cycle learning rate, ``epochs`` passes of batches of 256.

    Its output is clipped to the training targets' range widened by one (a factor e in latency): a
    network extrapolates linearly, and an operator far outside the training rows must not get a
    prediction a thousand times off.
    """

    def __init__(self, hidden: tuple[int, ...] = (256, 256, 128), epochs: int = 60, learning_rate: float = 2e-3,
                 weight_decay: float = 1e-4, seed: int = 0) -> None:
        if not hidden or not all(isinstance(h, int) and h > 0 for h in hidden):
            raise PredictorError(f"MLP hidden widths must be positive integers, got {hidden!r}")
        if not (isinstance(epochs, int) and epochs >= 1):
            raise PredictorError(f"MLP epochs must be an integer >= 1, got {epochs!r}")
        self.hidden, self.epochs, self.learning_rate = tuple(hidden), epochs, learning_rate
        self.weight_decay, self.seed = weight_decay, seed
        self.arrays: dict[str, np.ndarray] = {}

    def _standardise(self, X: np.ndarray) -> np.ndarray:
        Z = np.subtract(X, self.arrays["mean"])
        with np.errstate(invalid="ignore"):  # inf / inf for a column that never varied: 0 below
            np.divide(Z, self.arrays["scale"], out=Z)
        np.copyto(Z, 0.0, where=~np.isfinite(Z))  # missing, or infinite: the training mean
        lo, hi = -CLIP_SD, CLIP_SD
        if "low" in self.arrays:  # the training range (a network saved before it: the CLIP_SD clip alone)
            lo, hi = np.maximum(self.arrays["low"], -CLIP_SD), np.minimum(self.arrays["high"], CLIP_SD)
        return np.clip(Z, lo, hi, out=Z).astype(np.float32)

    def fit(self, X: np.ndarray, y: np.ndarray, weight: np.ndarray | None = None) -> MLPEngine:
        import torch

        X = np.asarray(X, dtype=float)
        finite = np.where(np.isfinite(X), X, np.nan)
        with warnings.catch_warnings():  # an all-missing column is fine: it never varied (below)
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(finite, axis=0)
            scale = np.nanstd(finite, axis=0)
        # a column that never varied in training taught the network nothing: it is 0 for every row
        # (a scale of inf), never a huge standardised value (bert's attention logits, the only rows
        # with a sequence length, came out 55-77x too slow before)
        varied = np.isfinite(scale) & (scale > 1e-9)
        mean = np.where(varied, np.nan_to_num(mean, nan=0.0), 0.0)
        scale = np.where(varied, scale, np.inf)
        y = np.asarray(y, dtype=float)
        w = np.ones(len(y)) if weight is None else np.asarray(weight, dtype=float)
        centre = float(np.average(y, weights=w))
        self.arrays = {"mean": mean, "scale": scale, "centre": np.array(centre),
                       "range": np.array([y.min() - 1.0, y.max() + 1.0])}
        Z = self._standardise(X)
        # every input stays within what training saw of it, as a tree's does: on a machine it was not
        # trained on (threads, vector lanes, cache ratios it never saw) the network extrapolated, and
        # the schedules it ranked first on a 16-core AVX2 Xeon fell from 0.85 to 0.75 of the best
        self.arrays["low"], self.arrays["high"] = Z.min(axis=0).astype(float), Z.max(axis=0).astype(float)

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # one thread, as the boosters: two shared cores spin otherwise
        try:
            torch.manual_seed(self.seed)
            widths = (Z.shape[1], *self.hidden)
            layers: list[Any] = []
            for a, b in zip(widths[:-1], widths[1:]):
                layers += [torch.nn.Linear(a, b), torch.nn.SiLU()]
            net = torch.nn.Sequential(*layers, torch.nn.Linear(widths[-1], 1))
            steps = self.epochs * ((len(Z) + 255) // 256)
            opt = torch.optim.AdamW(net.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay)
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.learning_rate, total_steps=steps)
            xt, yt = torch.tensor(Z), torch.tensor((y - centre).astype(np.float32))
            wt = torch.tensor((w / w.mean()).astype(np.float32))
            gen = torch.Generator().manual_seed(self.seed)
            for _ in range(self.epochs):
                order = torch.randperm(len(Z), generator=gen)
                for i in range(0, len(Z), 256):
                    idx = order[i:i + 256]
                    loss = (wt[idx] * (net(xt[idx]).squeeze(1) - yt[idx]) ** 2).mean()
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    sched.step()
        finally:
            torch.set_num_threads(threads)
        linear = [m for m in net if isinstance(m, torch.nn.Linear)]
        for j, m in enumerate(linear):
            self.arrays[f"w{j}"] = m.weight.detach().numpy().T.astype(np.float32).copy()
            self.arrays[f"b{j}"] = m.bias.detach().numpy().astype(np.float32).copy()
        return self

    @property
    def n_layers(self) -> int:
        return sum(1 for k in self.arrays if k.startswith("w"))

    def predict(self, X: np.ndarray, threads: int = 1) -> np.ndarray:
        """The network's output for each row of ``X``, in chunks of ``PREDICT_CHUNK`` rows (a chunk's layers
        stay in cache); with ``threads`` > 1 the chunks are shared among that many threads, each with a
        one-thread BLAS."""
        X = np.asarray(X, dtype=float)
        out = np.empty(len(X))
        starts = range(0, len(X), PREDICT_CHUNK)
        threads = max(1, min(threads, len(starts)))

        def run(lo: int) -> None:
            out[lo:lo + PREDICT_CHUNK] = self._forward(X[lo:lo + PREDICT_CHUNK])

        if threads == 1:
            for lo in starts:
                run(lo)
        else:
            from concurrent.futures import ThreadPoolExecutor

            from threadpoolctl import threadpool_limits

            with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(threads) as pool:
                list(pool.map(run, starts))
        out += float(self.arrays["centre"])
        lo, hi = (float(v) for v in self.arrays["range"])
        return np.clip(out, lo, hi)

    def _forward(self, X: np.ndarray) -> np.ndarray:
        h = self._standardise(X)
        n = self.n_layers
        for j in range(n):
            h = h @ self.arrays[f"w{j}"]
            h += self.arrays[f"b{j}"]
            if j < n - 1:
                h = _silu(h)
        return h[:, 0]

    def save(self, directory: Path) -> str:
        with open(Path(directory) / MLP_FILE, "wb") as fh:
            np.savez(fh, **self.arrays)
        return MLP_FILE

    @classmethod
    def load(cls, path: Path) -> MLPEngine:
        if not path.is_file():
            raise PredictorError(f"{path}: missing MLP model file")
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: np.asarray(data[k]) for k in data.files}
        except (OSError, ValueError) as exc:
            raise PredictorError(f"{path}: not a readable MLP model ({exc})") from None
        n = sum(1 for k in arrays if k.startswith("w"))
        need = {"mean", "scale", "centre", "range"} | {f"w{j}" for j in range(n)} | {f"b{j}" for j in range(n)}
        if n == 0 or set(arrays) not in (need, need | {"low", "high"}):
            raise PredictorError(f"{path}: not an opscope MLP model (arrays {sorted(arrays)})")
        widths = [arrays["mean"].shape[0]] + [arrays[f"w{j}"].shape[1] for j in range(n)]
        for j in range(n):
            if arrays[f"w{j}"].shape != (widths[j], widths[j + 1]) or arrays[f"b{j}"].shape != (widths[j + 1],):
                raise PredictorError(f"{path}: layer {j} has shape {arrays[f'w{j}'].shape}, "
                                     f"expected {(widths[j], widths[j + 1])}")
        bounds = [arrays[k].shape for k in ("low", "high") if k in arrays]
        if (widths[-1] != 1 or arrays["scale"].shape != arrays["mean"].shape or arrays["range"].shape != (2,)
                or any(b != arrays["mean"].shape for b in bounds)):
            raise PredictorError(f"{path}: not an opscope MLP model (shapes do not fit)")
        engine = cls.__new__(cls)
        engine.hidden, engine.epochs, engine.learning_rate = tuple(widths[1:-1]), 0, 0.0
        engine.weight_decay, engine.seed, engine.arrays = 0.0, 0, arrays
        return engine
