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
# # 05 · The Transformer: attention is all you need
#
# > **Objectives.** After this lesson you can
# > 1. write scaled dot-product attention with causal and padding masks, and split it into heads;
# > 2. explain why attention needs positional encodings, and build the sinusoidal ones;
# > 3. assemble a Transformer block and train an encoder-decoder on lesson 04's task;
# > 4. run a GPT with a KV cache and measure attention's $O(T^2)$ time and memory.
# >
# > **Prerequisites.** Lesson 04 (attention as a soft lookup); matrix products and broadcasting.
# >
# > **Time.** about 65 minutes: reading 25 (1,546 words, 186 lines of code),
# > running 3 (full mode, measured), exercises 40 (4 x 10). How these are estimated: lesson 00.
#
# GNMT (lesson 04) read the source with LSTMs and used attention only as a bridge between encoder
# and decoder. Every LSTM step still waited for the step before it, so training could not run the
# positions of a sentence in parallel. Vaswani et al. (2017) dropped the recurrence entirely:
# **every layer is attention**, every position reads every other position directly, and all
# positions are computed at once.
#
# This lesson builds it from the pieces in tinyrwkv:
#
# 1. scaled dot-product attention and its masks (causal, padding);
# 2. multi-head attention;
# 3. sinusoidal positional encoding (attention alone cannot tell order);
# 4. the position-wise feed-forward net, residual connections and layer norm;
# 5. the encoder-decoder on the same dates task as lesson 04;
# 6. a GPT (decoder only) and its **KV cache**;
# 7. the price: **O(T²)**, measured.
#
# **Notation** (one symbol, one meaning, in this lesson):
#
# | symbol | meaning |
# |---|---|
# | $B$, $T$ | batch size, sequence length ($T_q$, $T_k$: of the queries, of the keys) |
# | $t$ | the position being generated (section 6) |
# | $i$, $j$ | a query position, a key position |
# | $p$, $p'$; $\Delta$ | two positions (subscripts of $PE$); an offset between positions |
# | $E$ | model width (lessons 06–11 call RWKV's width $C$) |
# | $H$ | number of heads; $D = E / H$ the width of one head (of $q$, $k$, $v$) |
# | $L$ | number of layers |
# | $q_i, k_j, v_j$; $Q, K, V$ | one query, key, value; all of them stacked as matrices |
# | $M$ | the mask added to the scores: $0$ = may attend, $-\infty$ = may not |
# | $W_q, W_k, W_v, W_o$ | the projections; $W_1, W_2$ the feed-forward net's |
# | $m$, $\omega_m$ | a frequency index of the positional encoding, and its frequency |

# %%
import os

# The matrices here are small: one BLAS thread is faster than several (and never spins on a busy
# machine), and makes the timings below steadier. This must be set before NumPy is first imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import inspect
import time
import tracemalloc

import matplotlib.pyplot as plt
import numpy as np

from tinyrwkv.data.translation import BOS, EOS, PAD, DateTask
from tinyrwkv.diagrams import draw
from tinyrwkv.exercises import check
from tinyrwkv.experiments.attention_cost import measure_cost
from tinyrwkv.models.decoding import greedy_decode
from tinyrwkv.models.transformer import GPT, EncoderLayer, Transformer, residual_forward, sinusoidal_positions
from tinyrwkv.nn.attention import MultiHeadAttention, causal_mask, padding_mask, scaled_dot_product_attention
from tinyrwkv.training import train

FAST = os.environ.get("TINYRWKV_FAST") == "1"         # CI: small and quick; the numbers then mean little
STEPS = 60 if FAST else 800                            # Adam steps for the translation Transformer
N_EVAL = 40 if FAST else 300                           # held-out dates for exact match
ATTN_LENGTHS = [32, 64, 128, 256] if FAST else [64, 128, 256, 512, 1024, 2048]
GEN_LENGTHS = [8, 16, 32, 64] if FAST else [16, 32, 64, 128, 256, 512]
SEED = 0
print(f"FAST={FAST}: {STEPS} training steps, attention up to T={ATTN_LENGTHS[-1]}, generation up to T={GEN_LENGTHS[-1]}")

# %% [markdown]
# ## 1. Scaled dot-product attention
#
# Each position $i$ emits a **query** $q_i$, and each position $j$ a **key** $k_j$ and a **value**
# $v_j$ (three learned linear maps of its input). Query $i$ scores key $j$ with a dot product —
# cheaper than lesson 04's additive score and a single matrix product for all pairs:
#
# $$ \mathrm{Attention}(Q, K, V) = \mathrm{softmax}\!\left(\frac{Q K^\top}{\sqrt{D}} + M\right) V,
#    \qquad Q \in \mathbb{R}^{T_q \times D},\ K \in \mathbb{R}^{T_k \times D},\ V \in \mathbb{R}^{T_k \times D_v}. $$
#
# $M$ is a mask: $0$ where query $i$ may look at key $j$, $-\infty$ where it may not. Why divide by
# $\sqrt{D}$? If the entries of $q$ and $k$ have unit variance, $q \cdot k$ is a sum of $D$ such
# products, with variance $D$. Large scores push the softmax into a one-hot corner where its
# gradient vanishes. Dividing by $\sqrt{D}$ brings the variance back to 1, whatever the head size:

# %%
rng = np.random.default_rng(SEED)
for D in (4, 16, 64, 256):
    q = rng.normal(size=(1000, 1, D))                          # 1000 trials of one query ...
    k = rng.normal(size=(1000, 8, D))                          # ... against 8 keys, unit-variance entries
    dots = (q @ k.transpose(0, 2, 1))[:, 0]                    # (1000, 8)
    raw = np.exp(dots - dots.max(-1, keepdims=True))
    scaled = np.exp((dots - dots.max(-1, keepdims=True)) / np.sqrt(D))
    print(f"D = {D:3d}: std(q.k) = {dots.std():5.2f}, std(q.k / sqrt(D)) = {(dots / np.sqrt(D)).std():.2f};  "
          f"mean largest softmax weight of 8: raw {np.mean(raw.max(-1) / raw.sum(-1)):.2f}, "
          f"scaled {np.mean(scaled.max(-1) / scaled.sum(-1)):.2f}")

# %% [markdown]
# In tinyrwkv masks are boolean and say where attention is **allowed** (True), the convention of
# torch's `F.scaled_dot_product_attention`. Two kinds:
#
# * **causal**: query $i$ may see keys $0..i$ only — a language model must not read the token it
#   is asked to predict;
# * **padding**: nobody attends to PAD keys.
#
# They combine with `&`.

# %%
print("causal_mask(5):\n", causal_mask(5).astype(int))
ids = np.array([[5, 6, 7, 0, 0]])                       # one sentence of 3 tokens, right-padded with PAD = 0
print("padding_mask:", padding_mask(ids, pad_id=0).astype(int))
combined = causal_mask(5) & padding_mask(ids, pad_id=0)  # (1, 5, 5)
print("causal & padding:\n", combined[0].astype(int))

T, D = 5, 8
q, k, v = rng.normal(size=(3, 1, T, D)).astype(np.float32)      # (B=1, T, D) each
y, weights = scaled_dot_product_attention(q, k, v, causal_mask(T))
print("y", y.shape, " weights", weights.shape)
print(np.round(weights[0], 2))
assert y.shape == (1, T, D) and weights.shape == (1, T, T)
assert np.allclose(weights.sum(-1), 1, atol=1e-6)               # each query: a distribution over keys
assert np.all(np.triu(weights[0], k=1) == 0)                    # ... with no weight on the future

# %% [markdown]
# ## 2. Multi-head attention
#
# One attention computes one weighted average per query: it can look for one thing at a time.
# **Multi-head** attention runs $H$ attentions side by side, each on its own $E/H$-sized slice of
# learned projections, then concatenates the heads and mixes them with $W_o$:
#
# $$ \mathrm{head}_h = \mathrm{Attention}(X W_q^{(h)}, X W_k^{(h)}, X W_v^{(h)}), \qquad
#    Y = [\mathrm{head}_1; \dots; \mathrm{head}_H]\, W_o . $$
#
# The cost is the same as one big head; the slicing is just a reshape:
# `(B, T, E) -> (B, T, H, E/H) -> (B, H, T, E/H)`.

# %%
B, T, E, H = 2, 6, 16, 4                                      # (split_heads itself is exercise 4)
mha = MultiHeadAttention(E, H, rng=rng)
x = rng.normal(size=(B, T, E)).astype(np.float32)
heads = mha.split_heads(x)
y, cache = mha.forward(x, x, x, causal_mask(T))               # self-attention: query = key = value = x
print("x", x.shape, "-> heads", heads.shape, "-> y", y.shape, "  attention weights", cache.weights.shape)
assert heads.shape == (B, H, T, E // H)
assert np.array_equal(mha.merge_heads(heads), x)               # merge undoes split
assert y.shape == (B, T, E) and cache.weights.shape == (B, H, T, T)

# %% [markdown]
# ## 3. Positional encoding: attention cannot see order
#
# Attention is a weighted *set* operation: shuffle the input positions and (without a mask) the
# outputs are shuffled the same way, nothing else changes. "3 March" and "March 3" would look
# alike. A Transformer therefore **adds** a position signal to each token's embedding. The
# original uses fixed sinusoids, one pair of channels per frequency:
#
# $$ PE_{p, 2m} = \sin\!\left(\frac{p}{10000^{2m/E}}\right), \qquad PE_{p, 2m+1} = \cos\!\left(\frac{p}{10000^{2m/E}}\right). $$
#
# Each channel pair is a clock running at its own speed (wavelengths from $2\pi$ to
# $10000 \cdot 2\pi$). Moving $\Delta$ positions turns every clock by a fixed angle, so $PE_{p+\Delta}$ is a
# fixed rotation of $PE_p$ and attention can learn relative offsets; and any position can be
# computed, even past the training length.

# %%
layer = EncoderLayer(E, H, 2 * E, rng=rng)
x = rng.normal(size=(1, T, E)).astype(np.float32)
permutation = rng.permutation(T)
y, _ = layer.forward(x)
y_perm, _ = layer.forward(x[:, permutation])
print("without positions, permuting the input permutes the output:",
      np.allclose(y_perm, y[:, permutation], atol=1e-5))
assert np.allclose(y_perm, y[:, permutation], atol=1e-5)
pe = sinusoidal_positions(T, E)
y_pe, _ = layer.forward(x + pe)
y_pe_perm, _ = layer.forward(x[:, permutation] + pe)
print("with positions added, it does not:", not np.allclose(y_pe_perm, y_pe[:, permutation], atol=1e-5))

# %%
table = sinusoidal_positions(64, 32)                          # (T, E)
assert table.shape == (64, 32)
similarity = table @ table.T                                  # (T, T): PE_p . PE_p'
fig, (ax_table, ax_sim) = plt.subplots(1, 2, figsize=(11, 4))
image = ax_table.imshow(table.T, cmap="RdBu", vmin=-1, vmax=1, aspect="auto")
ax_table.set(title="Sinusoidal positional encoding (E = 32)", xlabel="position p (tokens)",
             ylabel="channel (even: sin, odd: cos)")
fig.colorbar(image, ax=ax_table, label="PE value (unitless)")
image = ax_sim.imshow(similarity, cmap="viridis", aspect="auto")
ax_sim.set(title="Dot product of two positions' encodings", xlabel="position p' (tokens)", ylabel="position p (tokens)")
fig.colorbar(image, ax=ax_sim, label="PE_p · PE_p' (unitless)")
fig.tight_layout()
plt.show()

# %% [markdown]
# The right panel depends only on $|p - p'|$ (constant along diagonals): the dot product of two
# encodings is a sum of $\cos(\omega_m (p - p'))$, a function of the distance alone.
#
# ## 4. The block: attention, FFN, residual + layer norm

# %%
draw('transformer_block')

# %% [markdown]
# A Transformer layer has two **sublayers**: self-attention (positions talk to each other) and a
# position-wise **feed-forward network** $\mathrm{FFN}(x) = W_2\, \mathrm{relu}(W_1 x + b_1) + b_2$
# (each position thinks on its own, usually $4\times$ wider inside). Each sublayer is wrapped in a
# **residual connection** and a **layer norm**:
#
# * post-norm (the paper, torch's default): $x \leftarrow \mathrm{LayerNorm}(x + \mathrm{Sublayer}(x))$;
# * pre-norm (GPT-2 and RWKV): $x \leftarrow x + \mathrm{Sublayer}(\mathrm{LayerNorm}(x))$ — the
#   residual stream runs untouched from the embedding to the output, which trains deep stacks
#   more easily.
#
# The residual is the same identity path GNMT used between LSTM layers; layer norm keeps each
# position's features at zero mean and unit variance. tinyrwkv writes both variants in one function:

# %%
print(inspect.getsource(residual_forward))
for norm_first in (False, True):
    block = EncoderLayer(E, H, 4 * E, norm_first=norm_first, rng=rng)
    x = rng.normal(size=(B, T, E)).astype(np.float32)
    y, _ = block.forward(x, causal_mask(T))
    print(f"norm_first={norm_first!s:5}: x {x.shape} -> y {y.shape};  per-position std of y: {y.std(-1).mean():.2f}")
    assert y.shape == x.shape                                    # a block keeps the shape: stack as many as you like

# %% [markdown]
# With post-norm every output position has unit variance (the layer norm comes last); with
# pre-norm the stream keeps the scale of its input plus what the sublayers added.
#
# ## 5. The encoder-decoder on dates
#
# The translation Transformer puts it together. The **encoder** is a stack of self-attention
# blocks over the source (PAD keys masked). The **decoder** block has three sublayers: causal
# self-attention over the target so far, **cross-attention** (queries from the decoder, keys and
# values from the encoder output — the role lesson 04's attention played) and the FFN.
#
# $$ \text{memory} = \mathrm{Encoder}(\mathrm{embed}(x) + PE), \qquad
#    \text{logits} = W_{out}\, \mathrm{Decoder}(\mathrm{embed}(y_{<i}) + PE,\ \text{memory}). $$
#
# Training is teacher-forced and, unlike GNMT, **all target positions run at once**: the causal
# mask alone keeps position $i$ from seeing $y_{\ge i}$.

# %%
task = DateTask()
model = Transformer(len(task.src_vocab), len(task.tgt_vocab), dim=48, n_heads=4, n_encoder_layers=2,
                    n_decoder_layers=2, ffn_dim=96, rng=np.random.default_rng(SEED))
src, tgt_in, tgt_out = task.encode_pairs(task.pairs(4, seed=2))
memory, src_mask, _ = model.encode(src)
logits, cache = model.forward(src, tgt_in)
print(f"{model.num_parameters()} parameters;  src {src.shape} -> memory {memory.shape};  "
      f"tgt_in {tgt_in.shape} -> logits {logits.shape}")
assert memory.shape == (*src.shape, 48) and src_mask.shape == (src.shape[0], 1, src.shape[1])
assert logits.shape == (*tgt_in.shape, len(task.tgt_vocab))

held_out = task.pairs(N_EVAL, seed=99)


def greedy_translate(m):
    return lambda src: greedy_decode(m, src, BOS, EOS, task.max_tgt_len)[0]


before = task.evaluate(greedy_translate(model), held_out)["exact_match"]
history = train(model, task.batches(32), STEPS, lr=2e-3, seed=SEED, log_every=max(STEPS // 5, 1))
result = task.evaluate(greedy_translate(model), held_out)
print(f"trained {STEPS} steps in {history.seconds:.1f} s;  held-out exact match {before:.1%} -> {result['exact_match']:.1%}"
      f"  (characters right: {result['char_accuracy']:.1%})")
for source, target, output in result["examples"]:
    print(f"{source:>20s} -> {output:12s} {'ok' if output == target else 'expected ' + target}")

# %% [markdown]
# Decoding still runs one character at a time (each output is the next input), but each step is
# cheap: `Transformer.decode_step` keeps the decoder's past keys and values (a KV cache, section 6)
# and the encoder output projected once. Here is what the last decoder layer's cross-attention
# (averaged over its 4 heads) looks at:

# %%
sources = ["3 March 2021", "March 3, 2021", "03/03/2021"]
fig, axes = plt.subplots(1, len(sources), figsize=(4.4 * len(sources), 4.2))
for ax, source in zip(axes, sources):
    ids, _, attn = greedy_decode(model, task.encode_sources([source]), BOS, EOS, task.max_tgt_len)   # attn (1, L, S)
    out_chars = ["EOS" if i == EOS else task.tgt_vocab.itos[i] for i in ids[0] if i != PAD]
    image = ax.imshow(attn[0, :len(out_chars)], cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(source)), list(source))
    ax.set_yticks(range(len(out_chars)), out_chars)
    ax.set(xlabel="source character", ylabel="generated character", title=f"'{source}' -> '{task.tgt_vocab.decode(ids[0])}'")
    fig.colorbar(image, ax=ax, fraction=0.046, label="attention weight (0..1)")
fig.suptitle("Transformer cross-attention (last decoder layer, mean over heads)")
fig.tight_layout()
plt.show()

# %% [markdown]
# The picture resembles GNMT's: year first, then month, then day. It is the mean over 4 heads,
# each free to look somewhere else, so it is smoother than GNMT's single attention.
#
# ## 6. GPT and the KV cache
#
# Drop the encoder and the cross-attention and you have a **decoder-only** language model: a stack
# of causal self-attention blocks (pre-norm), trained to predict the next token — GPT.
#
# Generating token $t$ needs the queries, keys and values of all earlier tokens. A naive loop runs
# the full forward over the prefix for every new token: $O(t^2)$ attention work per token. But
# the keys and values of old tokens never change (the causal mask means a position never sees
# later ones), so we can **cache** them: each step computes $q, k, v$ for the new token only,
# appends $k, v$ to the cache, and attends with one query — $O(t)$ per token. The price is memory:
# the cache holds $2 \times L \times t \times E$ floats and grows with the context,
# while an RNN (and RWKV) carries a fixed-size state.

# %%
gpt = GPT(vocab_size=32, dim=32, n_heads=4, n_layers=2, rng=np.random.default_rng(SEED))
ids = np.random.default_rng(1).integers(0, 32, size=(2, 10))  # (B, T)
full_logits, _ = gpt.forward(ids)                             # (B, T, V), all positions at once
state = gpt.init_state(batch_size=2)
step_logits = []
for t in range(ids.shape[1]):
    logits_t, state = gpt.step(ids[:, t], state)              # (B, V): one token, the cache grows by one
    step_logits.append(logits_t)
step_logits = np.stack(step_logits, axis=1)                   # (B, T, V)
keys, values = state["kv"][0]
print("cache after 10 tokens, layer 0: keys", keys.shape, "values", values.shape, " (B, H, t, D)")
print("max |step - forward| over all positions:", float(np.abs(step_logits - full_logits).max()))
print("KV-cache floats per sequence at T = 10, 100, 1000:", [gpt.state_size(t) for t in (10, 100, 1000)])
assert keys.shape == (2, 4, 10, 8)
assert np.allclose(step_logits, full_logits, atol=1e-4)      # the cache changes the cost, not the answer

# %% [markdown]
# ## 7. O(T²), measured
#
# **Attention itself.** Self-attention over $T$ positions forms a $T \times T$ score matrix: time and
# memory both grow as $T^2$. We time one causal attention (4 heads of size 16) and record the peak
# memory NumPy allocates (with `tracemalloc`), against $T$.

# %%
def attention_cost(T, heads=4, head_dim=16, repeats=3):
    """Best-of wall time (ms) and peak NumPy allocation (MiB) of one causal self-attention over T positions."""
    q, k, v = np.random.default_rng(0).normal(size=(3, 1, heads, T, head_dim)).astype(np.float32)
    mask = causal_mask(T)
    scaled_dot_product_attention(q, k, v, mask)                  # warm-up, untimed: first-call allocations
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        scaled_dot_product_attention(q, k, v, mask)
        best = min(best, time.perf_counter() - t0)
    tracemalloc.start()
    scaled_dot_product_attention(q, k, v, mask)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return 1000 * best, peak / 2**20


attn_ms, attn_mib = zip(*(attention_cost(T) for T in ATTN_LENGTHS))
slope_time = np.polyfit(np.log(ATTN_LENGTHS[-3:]), np.log(attn_ms[-3:]), 1)[0]
slope_mem = np.polyfit(np.log(ATTN_LENGTHS[-3:]), np.log(attn_mib[-3:]), 1)[0]
for T, ms, mib in zip(ATTN_LENGTHS, attn_ms, attn_mib):
    print(f"T = {T:5d}: {ms:8.2f} ms  {mib:8.2f} MiB")
print(f"growth exponent over the largest T: time ~ T^{slope_time:.2f}, memory ~ T^{slope_mem:.2f}  (2 = quadratic)")

# %% [markdown]
# **Generation.** Now generate $T$ tokens one at a time with a small GPT (2 layers, width 64),
# with and without the KV cache, beside an RNN of the same width. `measure_cost` (from
# `tinyrwkv.experiments.attention_cost`, which also draws the README's figure) reports the time per
# generated token, the floats carried from one token to the next, and the peak memory.

# %%
cost = measure_cost(GEN_LENGTHS, repeats=2 if FAST else 3, seed=SEED)
labels = {"rnn": "RNN (fixed state)", "gpt_kv_cache": "GPT with KV cache", "gpt_no_cache": "GPT without cache"}
for name, label in labels.items():
    if name in cost:
        per_token = ", ".join(f"{ms:.2f}" for ms in cost[name]["ms_per_token"])
        print(f"{label:20s} ms per token at T = {GEN_LENGTHS}: {per_token}")

# %%
fig, axes = plt.subplots(1, 3, figsize=(16, 4.4))
ax = axes[0]
ax.plot(ATTN_LENGTHS, attn_ms, "o-", label="attention time (ms)")
ax.plot(ATTN_LENGTHS, attn_mib, "s-", label="attention peak memory (MiB)")
reference = np.array(ATTN_LENGTHS, dtype=float) ** 2
ax.plot(ATTN_LENGTHS, reference * attn_ms[-1] / reference[-1], "k--", alpha=0.5, label="∝ T² (reference)")
ax.set(title="One causal self-attention (4 heads × 16)", xlabel="sequence length T (tokens)",
       ylabel="time (ms) / peak memory (MiB)")
for name, label in labels.items():
    if name in cost:
        axes[1].plot(GEN_LENGTHS, cost[name]["ms_per_token"], "o-", label=label)
        axes[2].plot(GEN_LENGTHS, cost[name]["peak_mib"], "o-", label=label)
axes[1].set(title="Generating T tokens: time per token", xlabel="tokens generated T", ylabel="time per token (ms)")
axes[2].set(title="Generating T tokens: peak memory", xlabel="tokens generated T",
            ylabel="peak NumPy allocation (MiB, tracemalloc)")
for ax in axes:
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
fig.suptitle("What attention costs against sequence length (NumPy, CPU, batch 1)")
fig.tight_layout()
plt.show()

# %% [markdown]
# Read the three panels:
#
# * one attention costs $\propto T^2$ in time and memory: the growth exponents printed above are
#   close to 2 once $T$ is large enough for the $T \times T$ matrix to dominate (time can exceed 2
#   when the matrices outgrow the CPU caches);
# * without a cache, every new token reruns the whole prefix, so the time *per token* climbs
#   with $T$, heading for $T^2$ per token ($T^3$ for the whole sequence); with the cache it
#   barely moves at these sizes (only the one new query's $O(T)$ attention grows), and the RNN
#   is flat and cheapest;
# * memory: without a cache each forward builds a $T \times T$ attention matrix, so the peak grows
#   as $T^2$; the KV cache grows linearly ($2 \cdot L \cdot T \cdot E$ floats); the RNN's state
#   does not grow at all.
#
# That last point is RWKV's opening: a model that trains in parallel like a Transformer but
# generates like an RNN, with a fixed-size state.
#
# ## Summary
#
# * $\mathrm{softmax}(QK^\top/\sqrt{D})\,V$: a dot-product soft lookup; $\sqrt{D}$ keeps the scores at unit scale.
# * Masks say who may look at whom: **causal** for language models, **padding** for batches.
# * **Multi-head** = $H$ attentions on $E/H$ slices, concatenated and mixed by $W_o$.
# * Attention ignores order, so **positional encodings** (sin/cos clocks) are added to the embeddings.
# * A block = attention + **FFN**, each inside a **residual** with **layer norm** (post- or pre-norm).
# * The encoder-decoder translates dates like GNMT, but trains all positions in parallel.
# * A **KV cache** makes each generated token $O(T)$ instead of recomputing the $O(T^2)$ prefix,
#   at the cost of memory that grows with $T$.
#
# ## Exercises

# %% tags=["exercise"]
def causal_attention(q, k, v):
    """Scaled dot-product attention with a causal mask, one head, no batch.

    q, k (T, D), v (T, Dv). Query i may attend keys 0..i only.
    Return (y (T, Dv), weights (T, T)) with weights = softmax(q k^T / sqrt(D), future masked) and y = weights v.
    """
    raise NotImplementedError


check.causal_attention(causal_attention)


# %% tags=["exercise"]
def sinusoidal_encoding(n_positions, dim):
    """The (n_positions, dim) table PE[p, 2i] = sin(p / 10000^(2i/dim)), PE[p, 2i+1] = cos(p / 10000^(2i/dim))."""
    raise NotImplementedError


check.sinusoidal_encoding(sinusoidal_encoding)


# %% tags=["exercise"]
def kv_cache_step(q, k, v, cache_k, cache_v):
    """One generation step of a single attention head with a KV cache.

    q, k, v (D,): the new token's query, key and value. cache_k, cache_v (Tp, D): the past (Tp may be 0).
    Append k and v to the cache, then attend with q over every cached position (scaled by 1/sqrt(D)).
    Return (y (D,), cache_k (Tp+1, D), cache_v (Tp+1, D)). Fed token by token, y must equal the
    full causal attention's row for that token.
    """
    raise NotImplementedError


check.kv_cache_step(kv_cache_step)


# %% tags=["exercise"]
def split_heads(x, n_heads):
    """(B, T, E) -> (B, H, T, E/H) with H = n_heads: head h gets the features h*E/H .. (h+1)*E/H - 1."""
    raise NotImplementedError


check.split_heads(split_heads)

# %% [markdown]
# **Going further:** train the `GPT` on the `small_tales` corpus (`tinyrwkv.data.corpus`) and
# compare its loss with lesson 02's LSTM; then swap the sinusoids for a learned position
# embedding and generate past the training length — what breaks?
#
# Next: [06 · From attention to AFT to RWKV](06_attention_to_rwkv.ipynb) — keep the parallel training, lose the $T^2$.
