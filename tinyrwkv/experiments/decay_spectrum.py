"""How far back does each RWKV-4 channel remember? The decay spectrum and the token-shift mixes, per layer.

Every time-mix channel c of layer l forgets its past at a fixed rate. The checkpoint stores
``time_decay``; the model uses w = -exp(time_decay) < 0, and an old contribution to the WKV sums
is multiplied by e^w per token. After h tokens it has shrunk by e^{w h}; it is halved when

    h_half = ln 2 / (-w) = ln 2 / exp(time_decay)          (tokens)

so a channel with time_decay = -5 keeps half of a token for ~100 tokens, one with time_decay = 2
for a tenth of a token (it sees essentially the current token and its bonus u = time_first).
Sorting the C half-lives of a layer gives its *decay spectrum*: a learned mix of short and long
memories.

Token shift mixes each input with the previous token's, mu x_t + (1 - mu) x_{t-1}, with one mu per
channel for each projection: time-mix key/value/receptance (``att.time_mix_k/_v/_r``) and
channel-mix key/receptance (``ffn.time_mix_k/_r``). mu near 1 reads the current token, near 0 the
previous one.

Figures (of the real RWKV-4 169M when ``tinyrwkv.loading.find_local_model`` finds it, else of the
tiny shipped model; the title says which):

    decay_spectrum.png   per layer: the sorted half-lives (log scale), and their quantiles vs layer
    time_mix.png         per layer: the distribution over channels of each of the five time_mix vectors

    python -m tinyrwkv.experiments.decay_spectrum --out figures/
"""
from __future__ import annotations

import numpy as np

from ..loading import load_real_or_tiny
from ._cli import experiment_main
from ._plotting import figure, finish, output_folder

MIX_NAMES = {"att.time_mix_k": "time-mix key", "att.time_mix_v": "time-mix value",
             "att.time_mix_r": "time-mix receptance", "ffn.time_mix_k": "channel-mix key",
             "ffn.time_mix_r": "channel-mix receptance"}
QUANTILES = (0.1, 0.5, 0.9)


def half_life(time_decay) -> np.ndarray:
    """Tokens until a contribution is halved, per channel: ln 2 / exp(time_decay). Any shape -> same shape."""
    return np.log(2.0) / np.exp(np.asarray(time_decay, dtype=np.float64))


def layer_params(model, name: str) -> np.ndarray:
    """``blocks.{l}.<name>`` of every layer, stacked: (n_layer, C)."""
    return np.stack([model.params[f"blocks.{i}.{name}"] for i in range(model.config.n_layer)]).astype(np.float64)


def decay_spectrum(model) -> dict:
    """The half-lives of every time-mix channel, per layer.

    Returns {"half_life": (L, C) tokens, sorted ascending within each layer; "quantiles": (L, 3)
    at QUANTILES; "max": (L,); "over_10": (L,) fraction of channels with a half-life > 10 tokens}.
    """
    h = np.sort(half_life(layer_params(model, "att.time_decay")), axis=1)        # (L, C)
    return {"half_life": h, "quantiles": np.quantile(h, QUANTILES, axis=1).T, "max": h[:, -1],
            "over_10": (h > 10).mean(axis=1)}


def time_mix_values(model) -> dict:
    """name -> (L, C) time_mix values, for the five names in MIX_NAMES."""
    return {name: layer_params(model, name) for name in MIX_NAMES}


def model_label(model, is_real: bool) -> str:
    """A short name for titles: which checkpoint, and its size."""
    c = model.config
    if not is_real:
        kind = "the tiny shipped RWKV-4 (char-level, small_tales)"
    elif (c.n_layer, c.n_embd, c.vocab_size) == (12, 768, 50277):
        kind = "RWKV-4 169M Pile"
    else:
        kind = f"RWKV-4 from {c.source}"
    return f"{kind}: {c.n_layer} layers x {c.n_embd} channels"


def plot_decay_spectrum(spectrum: dict, label: str = "", path=None, fig=None):
    """Left: each layer's sorted half-lives against the channel's rank (percent), log scale.
    Right: the 10/50/90 % quantiles and the longest half-life per layer. Returns the Figure."""
    import matplotlib

    h = spectrum["half_life"]
    L, C = h.shape
    fig = figure(fig, (13.0, 4.8))
    ax, ax_q = fig.subplots(1, 2)
    colors = matplotlib.colormaps["viridis"](np.linspace(0, 0.9, L))
    rank = 100.0 * (np.arange(C) + 0.5) / C
    for layer in range(L):
        ax.semilogy(rank, h[layer], color=colors[layer], lw=1.3, label=f"layer {layer}")
    ax.axhline(1.0, color="gray", ls=":", lw=1)
    ax.set_xlabel("channel rank within the layer (% of channels, fastest first)")
    ax.set_ylabel("half-life ln2 / exp(time_decay) (tokens, log scale)")
    ax.set_title("Decay spectrum: each curve is one layer's channels, sorted")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2 if L > 6 else 1)
    layers = np.arange(L)
    for j, q in enumerate(QUANTILES):
        ax_q.semilogy(layers, spectrum["quantiles"][:, j], "o-", ms=4, label=f"{int(100 * q)}th percentile")
    ax_q.semilogy(layers, spectrum["max"], "k^--", ms=4, lw=1, label="longest channel")
    ax_q.set_xlabel("layer (0 = next to the embedding)")
    ax_q.set_ylabel("half-life (tokens, log scale)")
    ax_q.set_title("How long each layer remembers")
    ax_q.set_xticks(layers)
    ax_q.grid(True, which="both", alpha=0.3)
    ax_q.legend(fontsize=8)
    fig.suptitle(f"Time-mix decay per channel, {label}" if label else "Time-mix decay per channel")
    return finish(fig, path)


def plot_time_mix(mixes: dict, label: str = "", path=None, fig=None):
    """One panel per time_mix vector: a box per layer over its channels (box 25-75 %, whiskers
    10-90 %, line = median). Returns the Figure."""
    fig = figure(fig, (3.0 * len(mixes), 4.2))
    axes = fig.subplots(1, len(mixes), sharey=True)
    everything = np.concatenate([v.ravel() for v in mixes.values()])
    for ax, (name, values) in zip(axes, mixes.items()):
        L = values.shape[0]
        ax.boxplot(list(values), positions=np.arange(L), whis=(10, 90), showfliers=False, widths=0.6)
        ax.axhline(1.0, color="gray", ls=":", lw=1)
        ax.axhline(0.0, color="gray", ls=":", lw=1)
        ax.set_title(MIX_NAMES.get(name, name), fontsize=10)
        ax.set_xlabel("layer")
        ax.set_xticks(np.arange(L), [str(i) if L <= 12 or i % 2 == 0 else "" for i in range(L)])
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("mu (1 = current token, 0 = previous token)")
    axes[0].set_ylim(min(-0.05, everything.min() - 0.05), max(1.05, everything.max() + 0.05))
    fig.suptitle("Token-shift mixes per layer over channels (box 25-75 %, whiskers 10-90 %)"
                 + (f", {label}" if label else ""), fontsize=11)
    return finish(fig, path)


def summarize(model) -> dict:
    """The numbers behind both figures, rounded, per layer."""
    s = decay_spectrum(model)
    return {"median_half_life_tokens": np.round(s["quantiles"][:, 1], 3).tolist(),
            "longest_half_life_tokens": np.round(s["max"], 1).tolist(),
            "fraction_over_10_tokens": np.round(s["over_10"], 3).tolist(),
            "time_mix_median": {name: np.round(np.median(v, axis=1), 3).tolist()
                                for name, v in time_mix_values(model).items()}}


def make_figures(outdir, fast=False) -> dict:
    """Writes decay_spectrum.png and time_mix.png (real 169M if downloaded, else the tiny model)."""
    outdir = output_folder(outdir)
    model, _, is_real = load_real_or_tiny(verbose=False)
    label = model_label(model, is_real)
    plot_decay_spectrum(decay_spectrum(model), label, outdir / "decay_spectrum.png")
    plot_time_mix(time_mix_values(model), label, outdir / "time_mix.png")
    return {"model": label, **summarize(model), "files": ["decay_spectrum.png", "time_mix.png"]}


def main(argv=None):
    experiment_main(make_figures, "RWKV-4's decay spectrum and time_mix values per layer.",
                    fast_help="(the same figures: they are fast anyway)", argv=argv)


if __name__ == "__main__":
    main()
