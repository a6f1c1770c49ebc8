"""The Transformer (Vaswani et al. 2017): attention instead of recurrence.

An RNN squeezes the whole past into one state vector and walks the sequence step by step. A
Transformer layer lets every position look at every other position directly:

    x = x + PE(position)                                   sinusoidal positional encoding
    x = LayerNorm(x + MultiHeadAttention(x, x, x, mask))    every position reads the others
    x = LayerNorm(x + W2 relu(W1 x + b1) + b2)              a position-wise feed-forward net (FFN)

Every output position is computed in parallel (good for training), but each position looks at all
T others, so a layer costs O(T^2) time and memory in the sequence length. A language model that
generates one token at a time keeps the keys and values of the past in a *KV cache*, so each new
token costs O(T) instead of recomputing the O(T^2) prefix; the cache itself grows with T
(2 * n_layers * T * dim floats), where an RNN (and RWKV) carries a fixed-size state.

This file builds
    EncoderLayer   torch.nn.TransformerEncoderLayer (relu, dropout 0, batch_first); post-norm by
                   default as torch and the paper, pre-norm (``norm_first=True``) as GPT-2
    DecoderLayer   torch.nn.TransformerDecoderLayer: causal self-attention, cross-attention
                   over the encoder output, FFN
    Transformer    the encoder-decoder for the translation task (an ``EncoderDecoder``; decodes with
                   ``tinyrwkv.models.decoding``)
    GPT            a decoder-only language model with a KV cache (a ``LanguageModel``)
Parameter names follow torch's (``self_attn.in_proj_weight``, ``linear1``, ``norm1`` ...), so a
layer's weights load straight from a torch layer's ``state_dict()``. No dropout anywhere.
"""
from __future__ import annotations

import numpy as np

from ..nn import Embedding, LayerNorm, Linear
from ..nn import functional as F
from ..nn.attention import MultiHeadAttention, causal_mask, padding_mask
from ..nn.module import Module, check_float, check_tokens
from .base import EncoderDecoder, LanguageModel

# --------------------------------------------------------------------------- positions


def sinusoidal_positions(n_positions: int, dim: int, start: int = 0, dtype=np.float32) -> np.ndarray:
    """(T, C) table of positional encodings for positions start .. start+T-1:

        PE[p, 2i]   = sin(p / 10000^(2i / C))
        PE[p, 2i+1] = cos(p / 10000^(2i / C))

    Each pair of channels is a clock at its own frequency (wavelengths 2 pi ... 10000 * 2 pi), so
    PE[p + k] is a fixed rotation of PE[p]: attention can learn relative offsets. Nothing to learn,
    and any position can be computed, which a KV cache needs when generating past the training length.
    """
    if dim % 2:
        raise ValueError(f"sinusoidal_positions: dim must be even (sin/cos pairs), got {dim}")
    position = np.arange(start, start + n_positions, dtype=np.float64)[:, None]     # (T, 1)
    frequency = 1.0 / 10000.0 ** (np.arange(0, dim, 2, dtype=np.float64) / dim)     # (C/2,)
    angle = position * frequency                                                     # (T, C/2)
    pe = np.empty((n_positions, dim), dtype=np.float64)
    pe[:, 0::2] = np.sin(angle)
    pe[:, 1::2] = np.cos(angle)
    return pe.astype(dtype)


# --------------------------------------------------------------------------- sublayers


def residual_forward(norm: LayerNorm, norm_first: bool, x, sublayer):
    """One residual sublayer. ``sublayer(h) -> (y, cache)``; x: (B, T, C).

        post-norm (torch's default, the paper):  y = LayerNorm(x + sublayer(x))
        pre-norm  (GPT-2, norm_first=True):      y = x + sublayer(LayerNorm(x))

    Pre-norm leaves an un-normalised "residual stream" x from the embedding to the output, which
    trains deep stacks without warm-up; post-norm normalises after every sublayer.
    Returns (y, (norm cache, sublayer cache)).
    """
    if norm_first:
        h, norm_cache = norm.forward(x)
        s, sub_cache = sublayer(h)
        return x + s, (norm_cache, sub_cache)
    s, sub_cache = sublayer(x)
    y, norm_cache = norm.forward(x + s)
    return y, (norm_cache, sub_cache)


def residual_backward(norm: LayerNorm, norm_first: bool, dy, cache, sublayer_backward):
    """Backward of ``residual_forward``; ``sublayer_backward(ds, cache) -> dh``. Returns dx.

    The residual's identity path is why gradients reach the bottom of a deep stack: dx always
    contains dy (pre-norm) or the layer norm's dx (post-norm) unchanged by the sublayer.
    """
    norm_cache, sub_cache = cache
    if norm_first:
        return dy + norm.backward(sublayer_backward(dy, sub_cache), norm_cache)
    dsum = norm.backward(dy, norm_cache)                          # d(x + s)
    return dsum + sublayer_backward(dsum, sub_cache)


def feed_forward(layer, x):
    """FFN(x) = W2 relu(W1 x + b1) + b2, position by position. x: (B, T, C) -> (B, T, C) via (B, T, F)."""
    h, cache1 = layer.linear1.forward(x)                          # (B, T, F)
    y, cache2 = layer.linear2.forward(F.relu(h))                  # (B, T, C)
    return y, (cache1, h, cache2)


def feed_forward_backward(layer, dy, cache):
    """Backward of ``feed_forward``: adds into linear1/linear2 grads, returns dx (B, T, C)."""
    cache1, h, cache2 = cache
    dh = F.relu_backward(layer.linear2.backward(dy, cache2), h)   # (B, T, F)
    return layer.linear1.backward(dh, cache1)


def self_attention_step(attn: MultiHeadAttention, h, past_keys, past_values):
    """Self-attention for the newest position(s) only, reading the cached keys and values of the past.

    h: (B, Tn, C) the new positions (normalised input), past_keys/values: (B, H, Tp, Dh).
    Returns (y (B, Tn, C), (keys, values) (B, H, Tp+Tn, Dh)). The new queries may see every past
    key and, causally, the new ones: so generating token t costs O(t), not the O(t^2) of a full pass.
    """
    q = attn.project(h, "q")                                      # (B, H, Tn, Dh)
    keys = np.concatenate([past_keys, attn.project(h, "k")], axis=2)       # (B, H, Tp+Tn, Dh)
    values = np.concatenate([past_values, attn.project(h, "v")], axis=2)
    y, _ = attn.attend(q, keys, values, causal_mask(h.shape[1], keys.shape[2]))
    return y, (keys, values)


# --------------------------------------------------------------------------- layers


class EncoderLayer(Module):
    """Self-attention + FFN, each a residual sublayer: torch.nn.TransformerEncoderLayer's twin.

    x: (B, T, C). ``mask`` (bool, True = may attend): None for a full encoder, ``causal_mask(T)``
    for a GPT block, a ``padding_mask`` to skip PAD keys.
    """

    def __init__(self, dim: int, n_heads: int, ffn_dim: int, norm_first=False, rng=None, dtype=np.float32):
        super().__init__()
        rng = rng or np.random.default_rng()
        self.dim, self.norm_first = dim, norm_first
        self.self_attn = MultiHeadAttention(dim, n_heads, rng=rng, dtype=dtype)
        self.linear1 = Linear(dim, ffn_dim, rng=rng, dtype=dtype)
        self.linear2 = Linear(ffn_dim, dim, rng=rng, dtype=dtype)
        self.norm1 = LayerNorm(dim, dtype=dtype)
        self.norm2 = LayerNorm(dim, dtype=dtype)

    def forward(self, x, mask=None):
        """x: (B, T, C) -> (y (B, T, C), cache). ``cache[0][1].weights`` (B, H, T, T): the attention map."""
        check_float("EncoderLayer input", x)
        if x.ndim != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"EncoderLayer: expected input of shape (B, T, {self.dim}), got {x.shape}")
        x, attn_cache = residual_forward(self.norm1, self.norm_first, x,
                                         lambda h: self.self_attn.forward(h, h, h, mask))
        x, ffn_cache = residual_forward(self.norm2, self.norm_first, x, lambda h: feed_forward(self, h))
        return x, (attn_cache, ffn_cache)

    def backward(self, dy, cache):
        """dy: (B, T, C) -> dx (B, T, C); adds parameter gradients."""
        attn_cache, ffn_cache = cache
        dx = residual_backward(self.norm2, self.norm_first, dy, ffn_cache,
                               lambda d, c: feed_forward_backward(self, d, c))
        # self-attention: x fed the query, key and value projections, so its gradient is their sum
        return residual_backward(self.norm1, self.norm_first, dx, attn_cache,
                                 lambda d, c: sum(self.self_attn.backward(d, c)))

    def step(self, x, past):
        """Causal layer on new positions x (B, Tn, C) with ``past`` = (keys, values) (B, H, Tp, Dh).

        Inference only (no cache for backward). Returns (y (B, Tn, C), (keys, values) grown by Tn).
        """
        x, (_, kv) = residual_forward(self.norm1, self.norm_first, x,
                                      lambda h: self_attention_step(self.self_attn, h, *past))
        x, _ = residual_forward(self.norm2, self.norm_first, x, lambda h: feed_forward(self, h))
        return x, kv


class DecoderLayer(Module):
    """Causal self-attention, cross-attention over the encoder output, FFN: torch.nn.TransformerDecoderLayer.

    x: (B, T, C) the target so far, memory: (B, S, C) the encoder output. Post-norm by default.
    """

    def __init__(self, dim: int, n_heads: int, ffn_dim: int, norm_first=False, rng=None, dtype=np.float32):
        super().__init__()
        rng = rng or np.random.default_rng()
        self.dim, self.norm_first = dim, norm_first
        self.self_attn = MultiHeadAttention(dim, n_heads, rng=rng, dtype=dtype)
        self.multihead_attn = MultiHeadAttention(dim, n_heads, rng=rng, dtype=dtype)   # torch's name
        self.linear1 = Linear(dim, ffn_dim, rng=rng, dtype=dtype)
        self.linear2 = Linear(ffn_dim, dim, rng=rng, dtype=dtype)
        self.norm1 = LayerNorm(dim, dtype=dtype)
        self.norm2 = LayerNorm(dim, dtype=dtype)
        self.norm3 = LayerNorm(dim, dtype=dtype)

    def forward(self, x, memory, self_mask=None, memory_mask=None):
        """x: (B, T, C), memory: (B, S, C); self_mask e.g. causal_mask(T), memory_mask (B, 1, S) padding.

        Returns (y (B, T, C), cache); ``cache[1][1].weights`` (B, H, T, S) is the cross-attention map.
        """
        for name, a in (("input", x), ("memory", memory)):
            check_float(f"DecoderLayer {name}", a)
            if a.ndim != 3 or a.shape[-1] != self.dim:
                raise ValueError(f"DecoderLayer: expected {name} of shape (B, T, {self.dim}), got {a.shape}")
        x, self_cache = residual_forward(self.norm1, self.norm_first, x,
                                         lambda h: self.self_attn.forward(h, h, h, self_mask))
        x, cross_cache = residual_forward(self.norm2, self.norm_first, x,
                                          lambda h: self.multihead_attn.forward(h, memory, memory, memory_mask))
        x, ffn_cache = residual_forward(self.norm3, self.norm_first, x, lambda h: feed_forward(self, h))
        return x, (self_cache, cross_cache, ffn_cache)

    def backward(self, dy, cache):
        """dy: (B, T, C) -> (dx (B, T, C), dmemory (B, S, C)); adds parameter gradients."""
        self_cache, cross_cache, ffn_cache = cache
        dmemory = []

        def cross_backward(d, c):
            dquery, dkey, dvalue = self.multihead_attn.backward(d, c)
            dmemory.append(dkey + dvalue)                         # memory fed both keys and values
            return dquery

        dx = residual_backward(self.norm3, self.norm_first, dy, ffn_cache,
                               lambda d, c: feed_forward_backward(self, d, c))
        dx = residual_backward(self.norm2, self.norm_first, dx, cross_cache, cross_backward)
        dx = residual_backward(self.norm1, self.norm_first, dx, self_cache,
                               lambda d, c: sum(self.self_attn.backward(d, c)))
        return dx, dmemory[0]

    def step(self, x, past, memory_kv, memory_mask=None):
        """Inference on new positions x (B, Tn, C): ``past`` = cached self-attention (keys, values),
        ``memory_kv`` = the encoder output already projected to cross-attention (keys, values) (B, H, S, Dh).

        Returns (y (B, Tn, C), (keys, values) grown by Tn, cross-attention weights (B, H, Tn, S)).
        """
        x, (_, kv) = residual_forward(self.norm1, self.norm_first, x,
                                      lambda h: self_attention_step(self.self_attn, h, *past))
        cross = self.multihead_attn
        x, (_, weights) = residual_forward(self.norm2, self.norm_first, x,
                                           lambda h: cross.attend(cross.project(h, "q"), *memory_kv, memory_mask))
        x, _ = residual_forward(self.norm3, self.norm_first, x, lambda h: feed_forward(self, h))
        return x, kv, weights


# --------------------------------------------------------------------------- helpers


def embed_with_positions(embedding: Embedding, ids, start: int = 0):
    """token embedding + sinusoidal position: ids (B, T) -> x (B, T, C), and the embedding's cache.

    The embedding is N(0, 1) (torch's init), the same scale as the sin/cos table, so no sqrt(C)
    factor is needed (the paper multiplies because its embeddings start at scale C^-1/2).
    """
    e, cache = embedding.forward(ids)                             # (B, T, C)
    return e + sinusoidal_positions(ids.shape[1], embedding.dim, start, e.dtype), cache


# --------------------------------------------------------------------------- encoder-decoder


class Transformer(EncoderDecoder):
    """Encoder-decoder Transformer for translation (post-norm, as the paper and torch's default).

        memory = Encoder(embed(src) + PE)                    (B, S, C), PAD keys masked
        h      = Decoder(embed(tgt_in) + PE, memory)         (B, T, C), causal self-attention
        logits = h W_out^T + b_out                           (B, T, V_tgt)

    ``loss(batch)`` with batch = (src (B, S), tgt_in (B, T), tgt_out (B, T)) ints, padded with
    ``pad_id`` (targets equal to pad_id count for nothing): the teacher-forced cross-entropy.
    Decoding (greedy, beam) lives in ``tinyrwkv.models.decoding`` and uses
    ``start_decoding`` / ``decode_step`` / ``reorder_state``; each decode step reuses a KV cache.
    """

    def __init__(self, src_vocab_size: int, tgt_vocab_size: int, dim=64, n_heads=4, n_encoder_layers=2,
                 n_decoder_layers=2, ffn_dim=None, pad_id=0, rng=None, dtype=np.float32):
        super().__init__()
        rng = rng or np.random.default_rng()
        ffn_dim = ffn_dim or 4 * dim
        self.src_vocab_size, self.tgt_vocab_size, self.dim, self.pad_id = src_vocab_size, tgt_vocab_size, dim, pad_id
        self.src_embed = Embedding(src_vocab_size, dim, rng=rng, dtype=dtype)
        self.tgt_embed = Embedding(tgt_vocab_size, dim, rng=rng, dtype=dtype)
        self.encoder_layers = [EncoderLayer(dim, n_heads, ffn_dim, rng=rng, dtype=dtype)
                               for _ in range(n_encoder_layers)]
        self.decoder_layers = [DecoderLayer(dim, n_heads, ffn_dim, rng=rng, dtype=dtype)
                               for _ in range(n_decoder_layers)]
        self.head = Linear(dim, tgt_vocab_size, rng=rng, dtype=dtype)

    # -- training --------------------------------------------------------------------------

    def encode(self, src):
        """src (B, S) ids -> (memory (B, S, C), src_mask (B, 1, S), cache)."""
        src = check_tokens("Transformer src", src, self.src_vocab_size, "(B, T)")
        src_mask = padding_mask(src, self.pad_id)                 # (B, 1, S): never attend to PAD
        x, embed_cache = embed_with_positions(self.src_embed, src)
        caches = []
        for layer in self.encoder_layers:
            x, c = layer.forward(x, src_mask)
            caches.append(c)
        return x, src_mask, (embed_cache, caches)

    def forward(self, src, tgt_in):
        """src (B, S), tgt_in (B, T) ids -> (logits (B, T, V_tgt), cache)."""
        tgt_in = check_tokens("Transformer tgt_in", tgt_in, self.tgt_vocab_size, "(B, T)")
        if np.shape(src)[:1] != tgt_in.shape[:1]:
            raise ValueError(f"Transformer: src (B, S) and tgt_in (B, T) need the same B, got "
                             f"{np.shape(src)} and {tgt_in.shape}")
        memory, src_mask, enc_cache = self.encode(src)
        # Causal mask only: with right padding, PAD keys lie after every real query, so no real
        # position can see them; PAD queries produce outputs whose loss (and gradient) is zero.
        self_mask = causal_mask(tgt_in.shape[1])                  # (T, T)
        x, tgt_cache = embed_with_positions(self.tgt_embed, tgt_in)
        dec_caches = []
        for layer in self.decoder_layers:
            x, c = layer.forward(x, memory, self_mask, src_mask)
            dec_caches.append(c)
        logits, head_cache = self.head.forward(x)                 # (B, T, V)
        return logits, (enc_cache, tgt_cache, dec_caches, head_cache)

    def backward(self, dlogits, cache):
        """dlogits (B, T, V) -> adds every parameter gradient (embeddings have no input gradient)."""
        (src_embed_cache, enc_caches), tgt_cache, dec_caches, head_cache = cache
        dx = self.head.backward(dlogits, head_cache)              # (B, T, C)
        dmemory = 0.0
        for layer, c in zip(reversed(self.decoder_layers), reversed(dec_caches)):
            dx, dm = layer.backward(dx, c)
            dmemory = dmemory + dm                                # every decoder layer read the memory
        self.tgt_embed.backward(dx, tgt_cache)                    # PE is a constant: dx flows to the table
        for layer, c in zip(reversed(self.encoder_layers), reversed(enc_caches)):
            dmemory = layer.backward(dmemory, c)
        self.src_embed.backward(dmemory, src_embed_cache)

    def teacher_forced(self, src, tgt_in):
        """The same as ``forward``: (logits (B, T, V), cache), for ``loss``."""
        return self.forward(src, tgt_in)

    # -- decoding: one target token at a time, with a KV cache --------------------------------

    def start_decoding(self, src):
        """Encodes src (B, S) once and returns the decoder's state: empty self-attention caches and
        the memory projected to each layer's cross-attention keys/values (computed once, read every step)."""
        memory, src_mask, _ = self.encode(src)
        B, H = memory.shape[0], self.decoder_layers[0].self_attn.n_heads
        empty = np.zeros((B, H, 0, self.dim // H), memory.dtype)
        return {"position": 0, "src_mask": src_mask,
                "self_kv": [(empty, empty) for _ in self.decoder_layers],
                "memory_kv": [(layer.multihead_attn.project(memory, "k"), layer.multihead_attn.project(memory, "v"))
                              for layer in self.decoder_layers]}

    def decode_step(self, prev_ids, state):
        """prev_ids (B,) the last target token -> (log-probs (B, V), attention (B, S), new state).

        The attention returned is the last decoder layer's cross-attention, averaged over heads.
        """
        prev_ids = check_tokens("Transformer.decode_step prev_ids", prev_ids, self.tgt_vocab_size, "(B,)")
        x, _ = embed_with_positions(self.tgt_embed, prev_ids[:, None], start=state["position"])   # (B, 1, C)
        new_kv = []
        for layer, past, memory_kv in zip(self.decoder_layers, state["self_kv"], state["memory_kv"]):
            x, kv, weights = layer.step(x, past, memory_kv, state["src_mask"])
            new_kv.append(kv)
        logits = F.linear(x[:, 0], self.head.params["weight"], self.head.params["bias"])       # (B, V)
        new_state = dict(state, position=state["position"] + 1, self_kv=new_kv)
        return F.log_softmax(logits.astype(np.float64)), weights[:, :, 0].mean(axis=1), new_state

    @staticmethod
    def reorder_state(state, index):
        """Keeps rows ``index`` (K,) of every batched array in the state (beam search reorders beams)."""
        return {"position": state["position"], "src_mask": state["src_mask"][index],
                "self_kv": [(k[index], v[index]) for k, v in state["self_kv"]],
                "memory_kv": [(k[index], v[index]) for k, v in state["memory_kv"]]}


# --------------------------------------------------------------------------- decoder-only LM


class GPT(LanguageModel):
    """A decoder-only Transformer language model (GPT-style) with a KV cache for generation.

        x      = embed(ids) + PE                                 (B, T, C)
        x      = Block_l(x, causal mask)   for l = 1..L          pre-norm EncoderLayer by default
        logits = LayerNorm_f(x) W_out^T + b_out                  (B, T, V)   (no LayerNorm_f for post-norm)

    ``step`` feeds one token per sequence and reuses the keys/values of all earlier tokens (the
    KV cache); the logits equal ``forward``'s at the same position. ``state_size(T)`` counts the
    cached floats: 2 (keys, values) * n_layers * T * dim: it grows with T, unlike an RNN's state.
    """

    def __init__(self, vocab_size: int, dim=64, n_heads=4, n_layers=2, ffn_dim=None, norm_first=True,
                 rng=None, dtype=np.float32):
        super().__init__()
        rng = rng or np.random.default_rng()
        self.vocab_size, self.dim, self.n_heads, self.n_layers = vocab_size, dim, n_heads, n_layers
        self.embed = Embedding(vocab_size, dim, rng=rng, dtype=dtype)
        self.layers = [EncoderLayer(dim, n_heads, ffn_dim or 4 * dim, norm_first=norm_first, rng=rng, dtype=dtype)
                       for _ in range(n_layers)]
        # pre-norm leaves the residual stream un-normalised: normalise once before the head
        self.norm_f = LayerNorm(dim, dtype=dtype) if norm_first else None
        self.head = Linear(dim, vocab_size, rng=rng, dtype=dtype)

    def forward(self, ids):
        """ids (B, T) -> (logits (B, T, V), cache). Position t sees ids[:, :t+1] only (causal mask)."""
        ids = check_tokens("GPT.forward ids", ids, self.vocab_size, "(B, T)")
        x, embed_cache = embed_with_positions(self.embed, ids)    # (B, T, C)
        mask = causal_mask(ids.shape[1])                          # (T, T)
        caches = []
        for layer in self.layers:
            x, c = layer.forward(x, mask)
            caches.append(c)
        norm_cache = None
        if self.norm_f is not None:
            x, norm_cache = self.norm_f.forward(x)
        logits, head_cache = self.head.forward(x)                 # (B, T, V)
        return logits, (embed_cache, caches, norm_cache, head_cache)

    def backward(self, dlogits, cache):
        """dlogits (B, T, V): adds every parameter gradient."""
        embed_cache, caches, norm_cache, head_cache = cache
        dx = self.head.backward(dlogits, head_cache)
        if self.norm_f is not None:
            dx = self.norm_f.backward(dx, norm_cache)
        for layer, c in zip(reversed(self.layers), reversed(caches)):
            dx = layer.backward(dx, c)
        self.embed.backward(dx, embed_cache)

    def init_state(self, batch_size: int):
        """An empty KV cache: per layer (keys, values) of shape (B, H, 0, C/H), and the next position."""
        dtype = self.head.params["weight"].dtype
        empty = np.zeros((batch_size, self.n_heads, 0, self.dim // self.n_heads), dtype)
        return {"position": 0, "kv": [(empty, empty) for _ in self.layers]}

    def step(self, ids, state):
        """ids (B,) one token per sequence -> (logits (B, V), state with the KV cache grown by one).

        Costs O(T * C) per layer for a cache of T tokens, where a forward over the whole prefix costs
        O(T^2 * C). The state passed in is not modified.
        """
        ids = check_tokens("GPT.step ids", ids, self.vocab_size, "(B,)")
        if ids.shape[0] != state["kv"][0][0].shape[0]:
            raise ValueError(f"GPT.step: expected ids of shape (B,) = ({state['kv'][0][0].shape[0]},) "
                             f"to match the state's batch, got {ids.shape}")
        x, _ = embed_with_positions(self.embed, ids[:, None], start=state["position"])   # (B, 1, C)
        new_kv = []
        for layer, past in zip(self.layers, state["kv"]):
            x, kv = layer.step(x, past)
            new_kv.append(kv)
        if self.norm_f is not None:
            x, _ = self.norm_f.forward(x)
        logits = F.linear(x[:, 0], self.head.params["weight"], self.head.params["bias"])   # (B, V)
        return logits, {"position": state["position"] + 1, "kv": new_kv}

    def state_size(self, context_length: int) -> int:
        """Floats in the KV cache after ``context_length`` tokens: keys and values, every layer."""
        return 2 * self.n_layers * context_length * self.dim
