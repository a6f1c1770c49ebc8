"""Where does RWKV carry a fact? Causal tracing, as in the RWKV paper, for "The Eiffel Tower is located in the city of".

The RWKV-4 paper (Peng et al. 2023, appendix "model behavior visualization") follows the causal
tracing of Meng et al. (2022, "Locating and Editing Factual Associations in GPT"):

1. **Clean run.** Run the prompt and record every layer's output and recurrent state at every
   token. P(answer) = P(" Paris") at the last position is high.
2. **Corrupted run.** Add Gaussian noise to the input embeddings of the *subject* tokens
   ("Eiffel Tower"): the model no longer knows what the subject is, and P(" Paris") drops.
3. **Restore one place.** Rerun the corrupted input, but at one layer l and one token position i
   put back the clean run's values: the block's output x at (l, i) *and* the layer's recurrent
   state after token i (token-shift inputs and the WKV numerator, denominator and max). Measure
   P(" Paris") again.

The heatmap shows, for every (token i, layer l), how much of the answer one clean place brings
back. High values mark where the model keeps the information that the answer needs. In a
Transformer, later tokens read earlier ones through attention at any layer. In RWKV, information
about token i can only reach the last token through some layer's recurrent state, so the picture
shows *when* (which layer) the fact is looked up and how it then travels through time.

Restoring at (l, i) leaves layer l's outputs before i corrupted, and everything after layer l is
recomputed from the patched sequence. Rows of tokens *before* the subject can restore nothing
(the corruption is downstream of them), which is a built-in sanity check.

With the tiny shipped char-level model (no Eiffel Tower in its tales) the same method runs on
something a character model must carry along the sequence: whether a quotation is open. After
'He smiled. "The sea is yours again.' it expects the closing '"', and the only evidence is the
opening '"' 24 characters earlier: that one character is the "subject" we corrupt.

Figure: ``information_flow.png``. Numbers: P(answer) clean, corrupted, and the best restoring place.

    python -m tinyrwkv.experiments.information_flow --out figures/ [--fast]
"""
from __future__ import annotations

import numpy as np

from ..loading import load_real_or_tiny
from ..models.rwkv import RWKVState, channel_mix, time_mix
from ..nn import functional as F
from ._cli import experiment_main
from ._plotting import figure, finish, output_folder

# (prompt, subject to corrupt, answer) for the real Pile model and for the tiny tales model.
REAL_PROMPT = ("The Eiffel Tower is located in the city of", "Eiffel Tower", " Paris")
TINY_PROMPT = ('He smiled. "The sea is yours again.', '"', '"')     # is a quotation open? only its first " says so
NOISE_SCALE = 3.0        # noise std = 3 x the std of the embedding matrix (Meng et al. use 3 sigma)


# --------------------------------------------------------------------------- the model, one block at a time


def embed(model, ids, noise=None):
    """The residual stream entering block 0: ln0(emb[ids] + noise). ids (T,) -> (B, T, C),
    B = 1, or the number of noise draws when ``noise`` (B, T, C) is given."""
    p, eps = model.params, model.config.layer_norm_epsilon
    e = p["emb.weight"][np.asarray(ids)][None]                        # (1, T, C)
    if noise is not None:
        e = e + noise                                                 # (B, T, C)
    return F.layer_norm(e, p["ln0.weight"], p["ln0.bias"], eps)[0]


def block_forward(model, layer: int, x, state: RWKVState | None = None):
    """Block ``layer`` of ``model`` on the residual stream x (B, T, C), from ``state`` (a one-layer
    RWKVState, None = no past); the same arithmetic as one iteration of ``RWKV._run``.
    Returns (x_out (B, T, C), the one-layer state after the last token)."""
    p, eps = model.params, model.config.layer_norm_epsilon
    att, ffn = model.blocks[layer]
    s = state if state is not None else RWKVState.zeros(1, x.shape[-1], x.shape[0])
    b = f"blocks.{layer}."
    h = F.layer_norm(x, p[b + "ln1.weight"], p[b + "ln1.bias"], eps)[0]
    dx, att_x, (aa, bb, pp) = time_mix(h, s.att_x[0], (s.aa[0], s.bb[0], s.pp[0]), att, model.wkv)
    x = x + dx
    h = F.layer_norm(x, p[b + "ln2.weight"], p[b + "ln2.bias"], eps)[0]
    dx, ffn_x = channel_mix(h, s.ffn_x[0], ffn)
    new = RWKVState(att_x[None], aa[None], bb[None], pp[None], ffn_x[None])
    return x + dx, new


def answer_probability(model, x_last, answer_id: int) -> np.ndarray:
    """P(answer) from the residual stream at the last position: x_last (B, C) -> (B,)."""
    p, eps = model.params, model.config.layer_norm_epsilon
    h = F.layer_norm(x_last, p["ln_out.weight"], p["ln_out.bias"], eps)[0]
    probs = F.softmax(F.linear(h, p["head.weight"]).astype(np.float64), axis=-1)   # (B, V)
    return probs[:, answer_id]


def run_blocks(model, x, start: int):
    """Blocks ``start`` .. n_layer-1 on x (B, T, C) from the empty state; returns the final residual stream."""
    for layer in range(start, model.config.n_layer):
        x, _ = block_forward(model, layer, x)
    return x


# --------------------------------------------------------------------------- causal tracing


def locate_subject(tokenizer, prompt: str, subject: str, answer: str):
    """Token ids of ``prompt``, the positions of the tokens that spell ``subject``, and the id of the
    answer's first token. ValueError when the subject is not in the prompt."""
    start = prompt.find(subject)
    if start < 0:
        raise ValueError(f"the subject {subject!r} is not in the prompt {prompt!r}")
    ids = list(tokenizer.encode(prompt))
    # token j spells prompt[ends[j-1]:ends[j]]; the subject's tokens are those overlapping its characters
    ends = [len(tokenizer.decode(ids[:j + 1])) for j in range(len(ids))]
    starts = [0] + ends[:-1]
    positions = [j for j in range(len(ids)) if starts[j] < start + len(subject) and ends[j] > start]
    answer_id = int(tokenizer.encode(answer)[0])
    return ids, positions, answer_id


def causal_trace(model, ids, subject_positions, answer_id: int, n_noise: int = 10,
                 noise_scale: float = NOISE_SCALE, seed: int = 0) -> dict:
    """P(answer) after restoring each (token, layer) of a run whose subject embeddings were noised.

    ids: (T,) prompt token ids; subject_positions: the positions to corrupt; answer_id: the token
    whose probability at the last position is measured; n_noise draws of Gaussian noise of std
    ``noise_scale`` x std(emb.weight), averaged. Returns {"restored": (T, L) mean P(answer),
    "clean": P, "corrupted": mean P, "noise_std": float}.
    """
    ids = np.asarray(ids)
    T, L, C = len(ids), model.config.n_layer, model.config.n_embd
    rng = np.random.default_rng(seed)
    noise_std = noise_scale * float(np.std(model.params["emb.weight"]))
    noise = np.zeros((n_noise, T, C), np.float32)
    noise[:, subject_positions] = noise_std * rng.standard_normal((n_noise, len(subject_positions), C))

    # 1. clean run: every layer's input and output, and its state after every prefix 0..i
    clean_in, clean_out, clean_state = [], [], []
    x = embed(model, ids)                                             # (1, T, C)
    for layer in range(L):
        clean_in.append(x)
        out, _ = block_forward(model, layer, x)
        clean_out.append(out)
        clean_state.append([block_forward(model, layer, x[:, :i + 1])[1] for i in range(T)])
        x = out
    clean = float(answer_probability(model, x[:, -1], answer_id)[0])

    # 2. corrupted run: every layer's input and output, for all noise draws at once
    corrupt_in, corrupt_out = [], []
    x = embed(model, ids, noise)                                      # (N, T, C)
    for layer in range(L):
        corrupt_in.append(x)
        x, _ = block_forward(model, layer, x)
        corrupt_out.append(x)
    corrupted = float(answer_probability(model, x[:, -1], answer_id).mean())

    # 3. restore (layer, i): clean output at i and clean state after i; recompute what follows
    restored = np.zeros((T, L))
    for layer in range(L):
        patched = []
        for i in range(T):
            out = corrupt_out[layer].copy()                           # (N, T, C): positions < i stay corrupted
            out[:, i] = clean_out[layer][0, i]
            if i + 1 < T:
                state = RWKVState(*(np.repeat(getattr(clean_state[layer][i], f), n_noise, axis=1)
                                    for f in RWKVState.FIELDS))
                out[:, i + 1:], _ = block_forward(model, layer, corrupt_in[layer][:, i + 1:], state)
            patched.append(out)
        x = run_blocks(model, np.concatenate(patched), layer + 1)     # (T * N, T, C), all i at once
        restored[:, layer] = answer_probability(model, x[:, -1], answer_id).reshape(T, n_noise).mean(axis=1)
    return {"restored": restored, "clean": clean, "corrupted": corrupted, "noise_std": noise_std}


def trace_prompt(model, tokenizer, prompt: str, subject: str, answer: str, n_noise: int = 10, seed: int = 0) -> dict:
    """``causal_trace`` on a prompt given as text; adds "tokens" (strings), "subject_positions", "prompt", "answer"."""
    ids, positions, answer_id = locate_subject(tokenizer, prompt, subject, answer)
    result = causal_trace(model, ids, positions, answer_id, n_noise=n_noise, seed=seed)
    return {**result, "tokens": [tokenizer.decode([i]) for i in ids], "subject_positions": positions,
            "prompt": prompt, "answer": answer}


def plot_trace(result: dict, label: str = "", path=None, fig=None):
    """The heatmap: rows = prompt tokens (subject marked *), columns = layers, colour = P(answer)
    after restoring that one place. Returns the Figure."""
    R = result["restored"]                                            # (T, L)
    T, L = R.shape
    fig = figure(fig, (max(5.5, 0.45 * L + 3.5), max(3.5, 0.32 * T + 1.8)))
    ax = fig.subplots()
    im = ax.imshow(R, cmap="Purples", aspect="auto", vmin=min(R.min(), result["corrupted"]),
                   vmax=max(R.max(), result["clean"]))
    shown = [repr(t)[1:-1].replace(" ", "\u2423") for t in result["tokens"]]        # a space shows as the open box
    names = [name + (" *" if i in result["subject_positions"] else "") for i, name in enumerate(shown)]
    ax.set_yticks(np.arange(T), names, fontsize=8)
    ax.set_xticks(np.arange(L))
    ax.set_xlabel("layer whose output and state at that token are restored")
    ax.set_ylabel("token (* = corrupted subject)")
    fig.colorbar(im, ax=ax, label=f"P({result['answer']!r}) at the last token")
    ax.set_title(f"Causal trace of {result['prompt']!r} -> {result['answer']!r}\n"
                 f"clean P = {result['clean']:.3f}, subject corrupted P = {result['corrupted']:.3f}"
                 + (f"\n{label}" if label else ""), fontsize=9)
    return finish(fig, path)


def summarize(result: dict) -> dict:
    R = result["restored"]
    i, layer = np.unravel_index(int(np.argmax(R)), R.shape)
    last_subject = result["subject_positions"][-1]
    return {"prompt": result["prompt"], "answer": result["answer"], "clean_p": round(result["clean"], 4),
            "corrupted_p": round(result["corrupted"], 4),
            "best_restore": {"token": result["tokens"][i], "position": int(i), "layer": int(layer),
                             "p": round(float(R[i, layer]), 4)},
            "last_subject_token_by_layer": np.round(R[last_subject], 4).tolist(),
            "last_token_by_layer": np.round(R[-1], 4).tolist()}


def make_figures(outdir, fast=False) -> dict:
    """Writes information_flow.png: the real 169M on the Eiffel Tower prompt if downloaded, else the
    tiny model on its lighthouse prompt."""
    from .decay_spectrum import model_label

    outdir = output_folder(outdir)
    model, tokenizer, is_real = load_real_or_tiny(verbose=False)
    prompt, subject, answer = REAL_PROMPT if is_real else TINY_PROMPT
    result = trace_prompt(model, tokenizer, prompt, subject, answer, n_noise=3 if fast else 10)
    plot_trace(result, model_label(model, is_real), outdir / "information_flow.png")
    return {"model": model_label(model, is_real), **summarize(result), "files": ["information_flow.png"]}


def main(argv=None):
    experiment_main(make_figures, "Causal tracing heatmap of RWKV-4 on a factual prompt.",
                    fast_help="3 noise draws instead of 10", argv=argv)


if __name__ == "__main__":
    main()
