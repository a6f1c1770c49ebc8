# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · GNMT-style sequence-to-sequence with attention
#
# > **Objectives.** After this lesson you can
# > 1. explain the fixed-vector bottleneck of an encoder-decoder and how attention removes it;
# > 2. write additive (Bahdanau) attention with a padding mask;
# > 3. describe GNMT's stack (bidirectional bottom layer, residuals, attention from the bottom decoder layer);
# > 4. compare greedy decoding with beam search and its length penalty.
# >
# > **Prerequisites.** Lesson 02 (LSTM); softmax.
# >
# > **Time.** about 60 minutes: reading 20 (1,380 words, 129 lines of code),
# > running 2 (full mode, measured), exercises 40 (4 x 10). How these are estimated: lesson 00.
#
# Lessons 01–03 built recurrent networks that read a sequence and predict its next token. Translation
# is harder: read a whole sentence in one language, then *write* a sentence in another, of a
# different length and word order. This lesson builds the answer that dominated machine
# translation from 2014 to 2017, in the shape Google shipped it (Wu et al. 2016, *Google's Neural
# Machine Translation System*, "GNMT"):
#
# * an **encoder** LSTM stack reads the source, a **decoder** LSTM stack writes the target;
# * **attention** lets the decoder look back at every source position at every step;
# * GNMT's engineering: stacked LSTMs, a **bidirectional** first encoder layer, **residual**
#   connections, attention fed from the **bottom** decoder layer;
# * **greedy** decoding and **beam search** with GNMT's length normalisation.
#
# Everything runs on a toy task that trains in under a minute on a laptop CPU: rewriting dates
# as people write them into ISO 8601 (`"March 3, 2021" -> "2021-03-03"`).

# %%
import os

# The matrices here are tiny: one BLAS thread is faster than several (and never spins on a busy
# machine). This must be set before NumPy is first imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import time

import matplotlib.pyplot as plt
import numpy as np

from tinyrwkv.data.translation import BOS, EOS, PAD, DateTask
from tinyrwkv.diagrams import draw
from tinyrwkv.exercises import check
from tinyrwkv.models.decoding import beam_search, greedy_decode, length_penalty
from tinyrwkv.models.seq2seq import GNMT, AdditiveAttention
from tinyrwkv.training import train

FAST = os.environ.get("TINYRWKV_FAST") == "1"     # CI: small and quick; the numbers then mean little
STEPS = 60 if FAST else 600                        # Adam steps on batches of 32 dates
N_EVAL = 40 if FAST else 300                       # held-out dates for greedy exact-match
N_BEAM = 8 if FAST else 40                         # beam search decodes one sentence at a time: fewer
SEED = 0
np.random.seed(SEED)
print(f"FAST={FAST}: {STEPS} training steps")

# %% [markdown]
# ## 1. The task: dates, character by character
#
# Each pair is a date in one of four source formats and its ISO form. The tokens are characters.
# Both vocabularies start with three specials: `PAD = 0` (fills a batch to its longest
# sentence), `BOS = 1` (the decoder's first input) and `EOS = 2` (the decoder's "done").
#
# The task is small but not trivial: the year moves from the *end* of the source to the *start*
# of the target, the month is a word that must become two digits, and `03/04/2021` is day-first.
# A model must learn *where to look* — which is exactly what attention is for.

# %%
task = DateTask()
for source, target in task.pairs(6, seed=1):
    print(f"{source:>20s}  ->  {target}")

src, tgt_in, tgt_out = task.encode_pairs(task.pairs(4, seed=2))
print("\nsrc", src.shape, " tgt_in", tgt_in.shape, " tgt_out", tgt_out.shape)
print("source vocabulary:", len(task.src_vocab), "characters;  target vocabulary:", len(task.tgt_vocab))
print("first sentence, ids:", src[0].tolist())
print("tgt_in  = BOS + target:", tgt_in[0].tolist())
print("tgt_out = target + EOS:", tgt_out[0].tolist())
assert src.shape[0] == tgt_in.shape[0] == tgt_out.shape[0] == 4
assert tgt_in.shape == tgt_out.shape and (tgt_in[:, 0] == BOS).all()

# %% [markdown]
# **Teacher forcing.** While training, the decoder reads the *true* previous character
# (`tgt_in`) and is scored on predicting the next one (`tgt_out`, shifted by one). PAD targets
# count for nothing in the loss.
#
# ## 2. The bottleneck, and attention as a soft lookup
#
# The first neural translators (Sutskever et al. 2014) ran an encoder RNN over the source and
# handed its **final state** $h_S$ to the decoder as its initial state:
#
# $$ h_S = \mathrm{Encoder}(x_1, \dots, x_S), \qquad
#    y_i \sim \mathrm{Decoder}(y_{<i} \mid h_S). $$
#
# Everything the decoder ever learns about the source must squeeze through one fixed-size vector,
# whatever the sentence's length: the **bottleneck**. Quality fell quickly with sentence length.
#
# Bahdanau et al. (2015) let the decoder *look things up* instead. Keep every encoder output
# $m_1 \dots m_S$ (the **memory**). At each decoder step, a query $q_i$ (the decoder's state)
# scores every memory position, a softmax turns the scores into weights, and the decoder reads
# their weighted average:
#
# $$ e_{ij} = v^\top \tanh(W_q q_i + b_q + W_k m_j), \qquad
#    p_{ij} = \frac{\exp e_{ij}}{\sum_{j'} \exp e_{ij'}}, \qquad
#    a_i = \sum_j p_{ij}\, m_j . $$
#
# A Python `dict` lookup returns the value whose key *equals* the query. Attention is a **soft**
# lookup: every key matches a little, the weights say how much, and the result is a blend of the
# values. Because it is differentiable, the network learns what to look for. The score is a tiny
# one-hidden-layer network — hence *additive* attention (the Transformer of lesson 05 uses a dot
# product instead). PAD positions get score $-\infty$, so weight exactly 0.
#
# tinyrwkv's `AdditiveAttention.forward` (in `tinyrwkv/models/seq2seq.py`) computes all scores at
# once by broadcasting: a `(B, T, 1, A)` array of projected queries plus a `(B, 1, S, A)` array of
# projected memories gives every (query $i$, memory $j$) pair, `(B, T, S, A)`. Writing it is
# exercise 1, so read the library's version after you have tried. Here it is at work:

# %%
rng = np.random.default_rng(SEED)
B, T, S, H = 2, 3, 5, 8
attention = AdditiveAttention(query_size=H, memory_size=H, attention_size=6, rng=rng)
queries = rng.normal(size=(B, T, H)).astype(np.float32)         # (B, T, H) decoder states
memory = rng.normal(size=(B, S, H)).astype(np.float32)          # (B, S, H) encoder outputs
mask = np.array([[True] * 5, [True] * 3 + [False] * 2])         # (B, S): sentence 2 has 2 PADs
context, weights, _ = attention.forward(queries, memory, mask)
print("context", context.shape, " weights", weights.shape)
print("weights of sentence 2, query 1:", np.round(weights[1, 0], 3))
assert context.shape == (B, T, H) and weights.shape == (B, T, S)
assert np.allclose(weights.sum(axis=-1), 1.0, atol=1e-6)        # a distribution over the source ...
assert np.all(weights[1, :, 3:] == 0.0)                         # ... that never looks at PAD

# %% [markdown]
# ## 3. GNMT: deep, bidirectional at the bottom, residual, attention from the bottom

# %%
draw('gnmt_stack')

# %% [markdown]
# ```
#  encoder                                   decoder
#  layer 3:  LSTM(layer 2) + layer 2         layer 3:  LSTM([h² ; a]) + h²   -> softmax over characters
#  layer 2:  LSTM(layer 1)                   layer 2:  LSTM([h¹ ; a])
#  layer 1:  [LSTM→(x) ; LSTM←(x)]           layer 1:  h¹ = LSTM(embed(y_{i-1}))  --query-->  attention
#            (bidirectional)                                          a = attend(h¹, memory = encoder layer 3)
# ```
#
# Each choice in the paper has a reason:
#
# * **Stacked LSTMs** (8 + 8 in the paper, 3 + 3 here): depth buys capacity.
# * **Residual connections** from layer 3 up ($y = \mathrm{LSTM}(x) + x$): without them, the paper
#   found stacks deeper than about 4 layers stopped training; the identity path carries the
#   gradient straight down (the same trick the Transformer and RWKV use in every block).
#   Layer 2 cannot have one here: its input is $2H$ wide, its output $H$.
# * **Bidirectional first layer only**: every source position then knows its left *and* right
#   context; the upper layers stay unidirectional so that each can start as soon as the layer
#   below has produced its first outputs (GNMT ran each layer on its own GPU).
# * **Attention queried by the bottom decoder layer** and fed to every upper layer: the bottom
#   layer never reads the attention, so it can run first; the upper layers all see the context.
#
# tinyrwkv's `GNMT` follows this (its docstring says where it differs from the paper: the query
# is the bottom layer's *current* output, as in TF-NMT's `gnmt_v2`).

# %%
model = GNMT(len(task.src_vocab), len(task.tgt_vocab), embed_dim=32, hidden_size=64,
             n_encoder_layers=3, n_decoder_layers=3, rng=np.random.default_rng(SEED))
parts = {"embeddings": ("src_embed", "tgt_embed"), "encoder layer 1 (both directions)": ("encoder_forward", "encoder_backward"),
         "encoder layers 2-3": ("encoder_layers",), "decoder layers 1-3": ("decoder_layers",),
         "attention": ("attention",), "output head": ("head",)}
for part, prefixes in parts.items():
    n = sum(p.size for name, p in model.parameters().items() if name.startswith(prefixes))
    print(f"{part:36s} {n:7d} parameters")
print(f"{'total':36s} {model.num_parameters():7d}")
print("residual connection on layer l:", {l: model.residual(l) for l in (2, 3)})

src, tgt_in, tgt_out = task.encode_pairs(task.pairs(4, seed=2))
memory, src_mask, _ = model.encode(src)
logits, weights, _ = model.forward(src, tgt_in)
print("\nsrc", src.shape, "-> memory", memory.shape, "  tgt_in", tgt_in.shape, "-> logits", logits.shape,
      "  attention", weights.shape)
assert memory.shape == (*src.shape, 64)                         # (B, S, H): the encoder's top layer
assert logits.shape == (*tgt_in.shape, len(task.tgt_vocab))      # (B, T, V)
assert weights.shape == (tgt_in.shape[0], tgt_in.shape[1], src.shape[1])   # (B, T, S): one row per target char
assert np.all(weights[~src_mask[:, None, :].repeat(tgt_in.shape[1], 1)] == 0)   # PAD never attended

# %% [markdown]
# ## 4. Experiment: train it, and watch attention learn to align
#
# `tinyrwkv.training.train` is the one loop every model in the course uses: forward, loss,
# backward through time, clip the gradient norm, Adam. Every few steps we measure exact match
# (the whole date right) on held-out dates with greedy decoding, and on a smaller set with beam
# search.

# %%
held_out = task.pairs(N_EVAL, seed=99)                          # never seen in training (own seed)


def greedy_translate(m):
    return lambda src: greedy_decode(m, src, BOS, EOS, task.max_tgt_len)[0]


def beam_exact_match(m, pairs, beam_size=4):
    hits = 0
    for source, target in pairs:
        best = beam_search(m, task.encode_sources([source])[0], BOS, EOS, task.max_tgt_len, beam_size)[0]
        hits += task.tgt_vocab.decode(best["ids"]) == target
    return hits / len(pairs)


def evaluate(m):
    return {"greedy": task.evaluate(greedy_translate(m), held_out)["exact_match"],
            "beam": beam_exact_match(m, held_out[:N_BEAM])}


before = evaluate(model)
t0 = time.perf_counter()
history = train(model, task.batches(32), STEPS, lr=3e-3, seed=SEED, log_every=max(STEPS // 6, 1),
                eval_fn=evaluate, eval_every=max(STEPS // 6, 1))
print(f"trained {STEPS} steps in {time.perf_counter() - t0:.1f} s")
print("exact match before:", before, " after:", history.evals[-1][1])

# %%
fig, (ax_loss, ax_em) = plt.subplots(1, 2, figsize=(11, 3.8))
ax_loss.plot(history.losses, alpha=0.35, label="per step")
ax_loss.plot(history.smoothed(20), label="running mean (20 steps)")
ax_loss.set_yscale("log")
ax_loss.set(title="GNMT on dates: training loss", xlabel="training step", ylabel="cross-entropy (nats per character)")
ax_loss.legend()
steps_done = [0] + [s for s, _ in history.evals]
for key, label in (("greedy", f"greedy ({N_EVAL} dates)"), ("beam", f"beam 4 ({N_BEAM} dates)")):
    ax_em.plot(steps_done, [100 * before[key]] + [100 * e[key] for _, e in history.evals], "o-", label=label)
ax_em.set(title="Held-out exact match", xlabel="training step", ylabel="dates entirely right (%)", ylim=(-3, 103))
ax_em.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# The loss falls steadily, but exact match jumps from almost nothing to almost everything within
# a couple of hundred steps: once the attention has learned *where* each output character comes
# from, whole dates come out right. Before that, the decoder can only guess likely characters.
#
# ## 5. Looking at the attention
#
# Each row of the heatmap is one generated character; each column a source character; the colour
# is the weight $p_{ij}$. For `03/03/2021` a trained model reads the year first (the source's last
# four characters), then walks back to the month and the day; for `March 3, 2021` it reads the
# month *name* while writing the month digits.

# %%
sources = ["3 March 2021", "March 3, 2021", "03/03/2021"]
fig, axes = plt.subplots(1, len(sources), figsize=(4.4 * len(sources), 4.2))
for ax, source in zip(axes, sources):
    ids, logprob, attn = greedy_decode(model, task.encode_sources([source]), BOS, EOS, task.max_tgt_len)
    out_chars = ["EOS" if i == EOS else task.tgt_vocab.itos[i] for i in ids[0] if i != PAD]
    image = ax.imshow(attn[0, :len(out_chars)], cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(source)), list(source))
    ax.set_yticks(range(len(out_chars)), out_chars)
    ax.set(xlabel="source character", ylabel="generated character",
           title=f"'{source}' -> '{task.tgt_vocab.decode(ids[0])}'")
    fig.colorbar(image, ax=ax, fraction=0.046, label="attention weight (0..1)")
fig.suptitle("GNMT additive attention (greedy decoding)")
fig.tight_layout()
plt.show()

# %% [markdown]
# **The bottleneck, measured.** This decoder starts from zero states: *everything* it knows about
# the source arrives through attention. Setting $v = 0$ makes every score $e_{ij} = 0$, so the
# weights become uniform and the context collapses to the plain mean of the memory — one
# fixed vector per sentence, the bottleneck of 2014. Watch what that does to the translations:

# %%
v_saved = model.attention.params["v"].copy()
model.attention.params["v"][...] = 0.0                          # uniform attention: a fixed-vector summary
uniform = task.evaluate(greedy_translate(model), held_out)
model.attention.params["v"][...] = v_saved                      # restore the learned attention
learned = task.evaluate(greedy_translate(model), held_out)
print(f"exact match, learned attention: {learned['exact_match']:.1%}   uniform attention: {uniform['exact_match']:.1%}")
for (source, target, out_learned), (_, _, out_uniform) in zip(learned["examples"][:3], uniform["examples"][:3]):
    print(f"{source:>20s}  learned -> {out_learned:12s} uniform -> {out_uniform}")

# %% [markdown]
# ## 6. Greedy decoding against beam search
#
# At inference there is no true previous character to feed: the decoder feeds back its own output.
# **Greedy** decoding takes the most likely character at each step. A choice that looks best now
# can lead to a worse sentence overall, so **beam search** keeps the $K$ best partial translations
# (by total log-probability $\log P(Y \mid X) = \sum_i \log p(y_i \mid y_{<i}, X)$), extends each by
# every character, and keeps the $K$ best of the $K \times V$ candidates.
#
# A log-probability only falls as a sentence grows, so raw scores favour short outputs. GNMT
# divides by a **length penalty**:
#
# $$ s(Y) = \frac{\log P(Y \mid X)}{lp(Y)}, \qquad lp(Y) = \frac{(5 + |Y|)^\alpha}{(5 + 1)^\alpha}, $$
#
# with $\alpha \approx 0.6$; $\alpha = 0$ ranks by log-probability alone, and beam size 1 is then
# exactly greedy.

# %%
source = "March 3, 2021"
src_ids = task.encode_sources([source])
ids, logprob, _ = greedy_decode(model, src_ids, BOS, EOS, task.max_tgt_len)
print(f"greedy: {task.tgt_vocab.decode(ids[0])!r}  log P = {logprob[0]:.4f}")
hypotheses = beam_search(model, src_ids[0], BOS, EOS, task.max_tgt_len, beam_size=4, alpha=0.6)
for rank, h in enumerate(hypotheses, 1):
    print(f"beam #{rank}: {task.tgt_vocab.decode(h['ids'])!r:14s} log P = {h['logprob']:8.4f}  "
          f"lp = {length_penalty(len(h['ids']), 0.6):.3f}  score = {h['score']:8.4f}")
assert len(hypotheses) <= 4 and hypotheses[0]["attention"].shape[1] == src_ids.shape[1]
# beam search with one beam and alpha = 0 is greedy decoding
one = beam_search(model, src_ids[0], BOS, EOS, task.max_tgt_len, beam_size=1, alpha=0.0)[0]
assert one["ids"] == [i for i in ids[0].tolist() if i != PAD]

# %%
final = history.evals[-1][1]
print(f"held-out exact match after {STEPS} steps:  greedy {final['greedy']:.1%} ({N_EVAL} dates), "
      f"beam 4 {final['beam']:.1%} ({N_BEAM} dates)")

# %% [markdown]
# On dates, beam search and greedy decoding agree almost everywhere, even early in training
# (the two curves above lie on top of each other): the model is rarely torn between two
# continuations whose fate is only decided later. Beam search pays off where many continuations
# are plausible, as in real language; GNMT reports about one BLEU point from beam search's length
# normalisation and coverage penalty.
#
# ## Summary
#
# * An encoder-decoder without attention squeezes the source into one fixed vector: the
#   **bottleneck**. Uniform attention (a mean of the memory) shows how little survives it.
# * **Attention** is a soft, learned lookup: scores → softmax → weighted sum of the memory.
#   Additive (Bahdanau) attention scores with $v^\top \tanh(W_q q + b_q + W_k m)$; PAD gets $-\infty$.
# * **GNMT** = stacked LSTMs + a bidirectional first encoder layer + residual connections
#   (from layer 3) + attention queried by the bottom decoder layer and fed to all upper ones.
# * Train with **teacher forcing**; decode with **greedy** search or **beam search**, ranking
#   finished hypotheses by $\log P / lp$.
# * Each decoder step still waits for the previous one, and attention costs $O(S)$ per step. The
#   Transformer (next) drops the recurrence and uses attention for everything.
#
# ## Exercises
#
# Each cell defines a function for you to complete, then checks it against tinyrwkv's own code.

# %% tags=["exercise"]
def additive_attention(query, memory, W_q, b_q, W_k, v):
    """Bahdanau attention for ONE decoder query.

    query (Hq,), memory (S, Hm), W_q (A, Hq), b_q (A,), W_k (A, Hm), v (A,).
    score_j = v . tanh(W_q query + b_q + W_k memory_j); weights = softmax over j; context = sum_j weights_j memory_j.
    Return (weights (S,), context (Hm,)).
    """
    raise NotImplementedError


check.additive_attention(additive_attention)


# %% tags=["exercise"]
def masked_softmax(scores, mask):
    """Softmax over the last axis of scores (B, S) where mask (B, S) is True (a real source token).

    PAD positions (mask False) must get weight exactly 0, and each row's real weights sum to 1.
    Keep it stable for large scores (e.g. 800).
    """
    raise NotImplementedError


check.masked_softmax(masked_softmax)


# %% tags=["exercise"]
def length_normalised_score(logprob, length, alpha):
    """GNMT's beam score: logprob / lp, with lp = (5 + length)^alpha / (5 + 1)^alpha. Return a float."""
    raise NotImplementedError


check.length_normalised_score(length_normalised_score)


# %% tags=["exercise"]
def beam_expand(beam_logprobs, next_logprobs, beam_size):
    """One beam-search step.

    beam_logprobs (K,): log P of each live hypothesis; next_logprobs (K, V): log p(token | hypothesis).
    Return (rows, tokens, totals), each (beam_size,), the best beam_size (hypothesis, token) pairs
    over all K * V candidates, best first: totals[n] = beam_logprobs[rows[n]] + next_logprobs[rows[n], tokens[n]].
    """
    raise NotImplementedError


check.beam_expand(beam_expand)

# %% [markdown]
# **Going further:** give the decoder the encoder's final states as its initial states (TF-NMT's
# option) and train with `v` frozen at 0 — how much of the bottleneck does that recover? Then try
# `residual_from=4` with 4 + 4 layers, and compare loss curves.
#
# Next: [05 · The Transformer](05_transformer.ipynb) — attention is all you need.
