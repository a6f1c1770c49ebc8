"""What WKV "attends" to: the attention matrix hidden inside RWKV's recurrence.

For one channel, WKV is a weighted average of the values seen so far,

    wkv_t = sum_{i<=t} a[t, i] v_i,    a[t, i] = softmax_i( bias[t, i] + k_i ),
    bias[t, i] = (t-1-i) w   for i < t      (the past fades by e^w per step; w < 0)
               = u           for i = t      (the current token's bonus)
               = -inf        for i > t      (no peeking at the future)

which is AFT (the Attention Free Transformer, Zhai et al. 2021): softmax attention whose scores
are a key plus a *position bias*, with no query-key dot product. RWKV picks the cheapest bias, a
per-channel linear decay in the distance, and that choice is what lets the sum run as an O(1)
per-token recurrence. Nobody builds this T x T matrix when running RWKV; we build it here to
*look* at it, next to a causal softmax attention map, for channels of different decay:

    wkv_attention_maps.png   left: softmax attention (random q, k); then WKV's a[t, i] for a slow,
                             a medium and a fast channel; below: the last row of each against the
                             distance t - i, on a log scale (straight lines: geometric decay).

The returned numbers include max |A @ v - wkv_forward(...)|, which shows the matrix is right.

    python -m tinyrwkv.experiments.rwkv_wkv_maps --out figures/ [--fast]
"""
from __future__ import annotations

import numpy as np

from ..kernels import wkv_numpy
from ..nn import functional as F
from ..nn.attention import causal_mask, scaled_dot_product_attention
from ._cli import experiment_main
from ._plotting import figure, finish, output_folder

# Decays per step e^w for three channels: half-lives of ~14, 1 and ~0.3 tokens.
CHANNELS = {"slow channel": -0.05, "medium channel": -0.7, "fast channel": -3.0}
BONUS_U = 0.5                      # time_first: a mild preference for the current token


def rwkv_position_bias(w: float, u: float, T: int) -> np.ndarray:
    """(T, T) bias[t, i]: (t-1-i) w below the diagonal, u on it, -inf above (the future)."""
    t = np.arange(T)[:, None]
    i = np.arange(T)[None, :]
    bias = np.where(i < t, (t - 1 - i) * float(w), -np.inf)
    return np.where(i == t, float(u), bias)


def aft_weights(k: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """AFT's attention weights for one channel: a[t, i] = softmax_i(bias[t, i] + k[i]).

    k: (T,) keys of one channel; bias: (T, T) position biases, -inf where a key is not allowed.
    Returns (T, T); every row sums to 1.
    """
    return F.softmax(bias + np.asarray(k, np.float64)[None, :], axis=-1)


def wkv_attention_matrix(w: float, u: float, k: np.ndarray) -> np.ndarray:
    """The T x T matrix A with wkv = A @ v for one channel of decay w (< 0) and bonus u; k: (T,)."""
    return aft_weights(k, rwkv_position_bias(w, u, len(k)))


def softmax_attention_matrix(q: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Causal softmax(q k^T / sqrt(D)) for one head: q, k (T, D) -> (T, T)."""
    T = q.shape[0]
    _, weights = scaled_dot_product_attention(q, k, np.zeros((T, 1)), causal_mask(T))
    return weights


def compute_maps(T: int, seed: int = 0, head_dim: int = 16) -> dict:
    """The matrices behind the figure, and a check that each WKV matrix reproduces wkv_forward.

    Returns {"softmax": (T, T), "wkv": {label: (T, T)}, "k": (T,), "max_abs_diff": {label: float}}.
    """
    rng = np.random.default_rng(seed)
    q, kq = rng.standard_normal((2, T, head_dim))
    k = rng.standard_normal(T)                           # one key per token, shared by the channels
    v = rng.standard_normal((1, T, len(CHANNELS)))       # (B=1, T, C) values to check with
    w = np.array(list(CHANNELS.values()))                # (C,)
    u = np.full(len(CHANNELS), BONUS_U)
    y, _ = wkv_numpy.wkv_forward(w, u, np.repeat(k[None, :, None], len(CHANNELS), axis=2), v)
    maps, diffs = {}, {}
    for c, (label, wc) in enumerate(CHANNELS.items()):
        A = wkv_attention_matrix(wc, BONUS_U, k)
        maps[label] = A
        diffs[label] = float(np.max(np.abs(A @ v[0, :, c] - y[0, :, c])))
    return {"softmax": softmax_attention_matrix(q, kq), "wkv": maps, "k": k, "max_abs_diff": diffs}


def plot_maps(maps: dict, path=None, fig=None):
    """Draws the figure (into ``fig`` when given); saves it to ``path`` when given. Returns the Figure."""
    T = maps["softmax"].shape[0]
    panels = [("causal softmax attention\n(random q, k; one head)", maps["softmax"])]
    panels += [(f"WKV, {label}\nw = {CHANNELS[label]}, decay e^w = {np.exp(CHANNELS[label]):.2f}/step", A)
               for label, A in maps["wkv"].items()]
    fig = figure(fig, (4.0 * len(panels), 8.0))
    grid = fig.add_gridspec(2, len(panels), height_ratios=[1.25, 1.0])
    for col, (title, A) in enumerate(panels):
        ax = fig.add_subplot(grid[0, col])
        im = ax.imshow(np.where(np.tril(np.ones_like(A)) > 0, A, np.nan), cmap="viridis", vmin=0, vmax=1)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("key position i (token index)")
        ax.set_ylabel("query position t (token index)")
        fig.colorbar(im, ax=ax, fraction=0.046, label="weight a[t, i]")
    ax = fig.add_subplot(grid[1, :])
    distance = np.arange(T)                               # t - i for the last query t = T-1
    for title, A in panels:
        ax.semilogy(distance, A[-1, ::-1], "o-", ms=3, label=title.replace("\n", ", "))
    ax.set_xlabel("distance t - i (tokens back from the last query)")
    ax.set_ylabel("weight a[T-1, i] (log scale)")
    ax.set_ylim(1e-8, 1.5)
    ax.set_title("Last query's weights: WKV falls off geometrically (slope w; the wiggles are the random "
                 "keys k_i ~ N(0, 1)); softmax follows q.k")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.suptitle(f"What WKV attends to vs softmax attention (T = {T}, time_first u = {BONUS_U})")
    return finish(fig, path)


def make_figures(outdir, fast=False) -> dict:
    """Writes wkv_attention_maps.png to ``outdir``; returns the numbers behind it."""
    outdir = output_folder(outdir)
    T = 16 if fast else 32
    maps = compute_maps(T)
    plot_maps(maps, outdir / "wkv_attention_maps.png")
    last = {label: {"weight_on_current_token": float(A[-1, -1]),
                    "mean_distance_looked_back": float(A[-1, ::-1] @ np.arange(T))}
            for label, A in maps["wkv"].items()}
    return {"T": T, "decays_w": dict(CHANNELS), "u": BONUS_U, "last_query": last,
            "max_abs_diff_matrix_vs_wkv_forward": maps["max_abs_diff"], "files": ["wkv_attention_maps.png"]}


def main(argv=None):
    experiment_main(make_figures, "WKV's implied attention maps next to softmax attention.",
                    fast_help="a shorter sequence", argv=argv)


if __name__ == "__main__":
    main()
