"""GNMT-style sequence-to-sequence: stacked LSTMs with attention (Wu et al. 2016, "Google's Neural
Machine Translation System"), at toy size.

An encoder LSTM reads the source, a decoder LSTM writes the target one token at a time. A plain
encoder-decoder must squeeze the whole source into the encoder's final state; *attention* lets the
decoder look back at every encoder position at every step, and learn where to look.

Encoder (source x_1..x_S, right-padded; PAD positions are skipped by every recurrence):
    layer 1:   bidirectional: [LSTM_fwd(x); LSTM_bwd(x)]     (B, S, 2H)  every position sees the whole source
    layer 2:   LSTM(layer 1)                                 (B, S, H)
    layer l:   LSTM(layer l-1) + layer l-1    for l >= residual_from (3, as in GNMT; layer 2 cannot
               have one: its input is 2H wide)
    memory = the top layer's outputs                          (B, S, H)
Decoder (target prefix y_0 = BOS, y_1 .. y_{T-1}, teacher forcing):
    h^1_i = LSTM_1(embed(y_{i-1}))                                   bottom layer: the attention query
    a_i   = sum_j p_ij memory_j,   p_i = softmax_j(v^T tanh(W_q h^1_i + W_k memory_j + b))
                                                                     additive (Bahdanau) attention
    h^l_i = LSTM_l([h^{l-1}_i; a_i])  (+ h^{l-1}_i for l >= residual_from)   context fed to every upper layer
    logits_i = W_out h^L_i + b_out                                   (B, T, V)

Differences from the paper, said out loud: the query is the bottom layer's output at the *current*
step (it has read y_{i-1}); the paper uses the bottom output of the previous step (as TF-NMT's
"gnmt" attention; its "gnmt_v2" uses the current one, as here). Either way the bottom layer never
reads the attention, so teacher-forced training runs the bottom LSTM over the whole target first,
then attention for all steps at once, then each upper layer over the whole sequence: no layer waits
for another inside a time step. The decoder starts from zero states (the paper passes none either;
TF-NMT optionally passes the encoder's); everything the decoder knows about the source comes
through attention. No dropout.

Decoding (greedy, beam search with length normalisation) lives in ``tinyrwkv.models.decoding``,
through ``start_decoding`` / ``decode_step`` / ``reorder_state``; the attention weights come out of
every step, for heatmaps.
"""
from __future__ import annotations

import numpy as np

from ..nn import Embedding, Linear, Module, check_tokens
from ..nn import functional as F
from .base import EncoderDecoder
from .lstm import LSTMLayer


class AdditiveAttention(Module):
    """Bahdanau attention: a one-hidden-layer net scores how well a query fits each memory position.

        score_ij = v^T tanh(W_q q_i + b_q + W_k m_j)      q: (B, T, Hq) queries, m: (B, S, Hm) memory
        p_i      = softmax_j(score_ij)   over non-PAD j   (B, T, S)
        a_i      = sum_j p_ij m_j                         (B, T, Hm) the context

    Parameters: query_proj (A, Hq) with bias, key_proj (A, Hm) without (one bias is enough), v (A,).
    """

    def __init__(self, query_size: int, memory_size: int, attention_size: int, rng=None, dtype=np.float32):
        super().__init__()
        rng = rng or np.random.default_rng()
        self.query_size, self.memory_size = query_size, memory_size
        self.query_proj = Linear(query_size, attention_size, rng=rng, dtype=dtype)
        self.key_proj = Linear(memory_size, attention_size, bias=False, rng=rng, dtype=dtype)
        bound = 1.0 / np.sqrt(attention_size)
        self.add_param("v", rng.uniform(-bound, bound, size=attention_size).astype(dtype))

    def _weights(self, hidden, mask):
        """hidden (B, T, S, A) = tanh(...) -> attention weights (B, T, S), PAD memory positions at 0."""
        scores = hidden @ self.params["v"]                           # (B, T, S)
        scores = np.where(mask[:, None, :], scores, -np.inf)         # PAD: exp(-inf) = 0
        return F.softmax(scores, axis=-1)

    def forward(self, query, memory, mask):
        """query (B, T, Hq), memory (B, S, Hm), mask (B, S) bool (True = real token).

        Returns (context (B, T, Hm), weights (B, T, S), cache).
        """
        keys, key_cache = self.key_proj.forward(memory)              # (B, S, A)
        q, query_cache = self.query_proj.forward(query)              # (B, T, A)
        hidden = F.tanh(q[:, :, None, :] + keys[:, None, :, :])      # (B, T, S, A): every (i, j) pair
        weights = self._weights(hidden, mask)                        # (B, T, S)
        context = weights @ memory                                   # (B, T, Hm)
        return context, weights, (memory, hidden, weights, key_cache, query_cache)

    def backward(self, dcontext, cache):
        """dcontext (B, T, Hm) -> (dquery (B, T, Hq), dmemory (B, S, Hm)); adds parameter gradients."""
        memory, hidden, weights, key_cache, query_cache = cache
        dweights = dcontext @ np.swapaxes(memory, -1, -2)           # (B, T, S)
        dmemory = np.swapaxes(weights, -1, -2) @ dcontext           # (B, S, Hm): memory as the values
        dscores = F.softmax_backward(dweights, weights, axis=-1)     # (B, T, S), 0 at PAD
        self.grads["v"] += np.einsum("bts,btsa->a", dscores, hidden)
        dpre = F.tanh_backward(dscores[..., None] * self.params["v"], hidden)   # (B, T, S, A)
        dquery = self.query_proj.backward(dpre.sum(axis=2), query_cache)       # q_i met every j
        dmemory += self.key_proj.backward(dpre.sum(axis=1), key_cache)          # m_j met every i
        return dquery, dmemory

    def step(self, query, keys, memory, mask):
        """One decoder step at inference: query (B, Hq), keys = key_proj(memory) (B, S, A) computed once.

        Returns (context (B, Hm), weights (B, S)).
        """
        q = F.linear(query, self.query_proj.params["weight"], self.query_proj.params["bias"])   # (B, A)
        weights = self._weights(F.tanh(q[:, None, None, :] + keys[:, None, :, :]), mask)[:, 0]  # (B, S)
        return np.einsum("bs,bsh->bh", weights, memory), weights


class GNMT(EncoderDecoder):
    """GNMT-style seq2seq (see the module docstring). An ``EncoderDecoder`` trained on batches
    (src (B, S), tgt_in (B, T), tgt_out (B, T)) padded with ``pad_id``.

    Layers are numbered from 1 as in the paper; layer l (l >= ``residual_from``) adds its input to
    its output. With the defaults (3 encoder, 3 decoder layers) the residual layers are encoder
    layer 3 and decoder layer 3.
    """

    def __init__(self, src_vocab_size: int, tgt_vocab_size: int, embed_dim=32, hidden_size=64,
                 n_encoder_layers=3, n_decoder_layers=3, attention_size=None, residual_from=3, pad_id=0,
                 rng=None, dtype=np.float32):
        super().__init__()
        if n_encoder_layers < 2 or n_decoder_layers < 2:
            raise ValueError(f"GNMT: needs >= 2 encoder and >= 2 decoder layers (a bidirectional layer, then "
                             f"unidirectional ones; a bottom decoder layer, then attention-fed ones), "
                             f"got {n_encoder_layers} and {n_decoder_layers}")
        if residual_from < 3:
            raise ValueError(f"GNMT: residual_from must be >= 3 (encoder layer 2 maps 2H -> H, so it cannot "
                             f"add its input), got {residual_from}")
        rng = rng or np.random.default_rng()
        E, H = embed_dim, hidden_size
        self.src_vocab_size, self.tgt_vocab_size, self.hidden_size = src_vocab_size, tgt_vocab_size, H
        self.pad_id, self.residual_from = pad_id, residual_from
        self.src_embed = Embedding(src_vocab_size, E, rng=rng, dtype=dtype)
        self.tgt_embed = Embedding(tgt_vocab_size, E, rng=rng, dtype=dtype)
        # encoder layer 1, both directions, then layers 2 .. N
        self.encoder_forward = LSTMLayer(E, H, rng=rng, dtype=dtype)
        self.encoder_backward = LSTMLayer(E, H, reverse=True, rng=rng, dtype=dtype)
        self.encoder_layers = [LSTMLayer(2 * H if l == 2 else H, H, rng=rng, dtype=dtype)
                               for l in range(2, n_encoder_layers + 1)]
        # decoder layer 1 reads the embedding; layers 2 .. N read [h^{l-1}; context]
        self.decoder_layers = [LSTMLayer(E if l == 1 else 2 * H, H, rng=rng, dtype=dtype)
                               for l in range(1, n_decoder_layers + 1)]
        self.attention = AdditiveAttention(H, H, attention_size or H, rng=rng, dtype=dtype)
        self.head = Linear(H, tgt_vocab_size, rng=rng, dtype=dtype)

    def residual(self, layer_number: int) -> bool:
        """Whether (1-based) encoder/decoder layer ``layer_number`` adds its input to its output."""
        return layer_number >= self.residual_from

    # -- encoder ------------------------------------------------------------------------------

    def encode(self, src):
        """src (B, S) ids -> (memory (B, S, H), mask (B, S) bool, cache)."""
        src = check_tokens("GNMT src", src, self.src_vocab_size, "(B, T)")
        mask = src != self.pad_id                                      # (B, S)
        if not mask.any(axis=1).all():
            raise ValueError("GNMT src: every source sentence needs at least one non-PAD token")
        e, embed_cache = self.src_embed.forward(src)                   # (B, S, E)
        # layer 1: the reverse LSTM starts at each sentence's last real token (the mask skips PADs)
        fwd, _, fwd_cache = self.encoder_forward.forward(e, mask=mask)       # (B, S, H)
        bwd, _, bwd_cache = self.encoder_backward.forward(e, mask=mask)      # (B, S, H)
        x = np.concatenate([fwd, bwd], axis=-1)                        # (B, S, 2H)
        caches = []
        for l, layer in enumerate(self.encoder_layers, start=2):
            y, _, c = layer.forward(x, mask=mask)                      # (B, S, H)
            x = y + x if self.residual(l) else y
            caches.append(c)
        return x, mask, (embed_cache, fwd_cache, bwd_cache, caches)

    def encode_backward(self, dmemory, cache):
        """dmemory (B, S, H) -> adds encoder gradients (through the residuals, both directions, the embedding)."""
        embed_cache, fwd_cache, bwd_cache, caches = cache
        dx = dmemory
        for l, layer, c in reversed(list(zip(range(2, len(caches) + 2), self.encoder_layers, caches))):
            dlayer_in, _ = layer.backward(dx, c)
            dx = dlayer_in + dx if self.residual(l) else dlayer_in    # the skip path carries dx past the layer
        H = self.hidden_size
        de_fwd, _ = self.encoder_forward.backward(dx[..., :H], fwd_cache)
        de_bwd, _ = self.encoder_backward.backward(dx[..., H:], bwd_cache)
        self.src_embed.backward(de_fwd + de_bwd, embed_cache)        # both directions read the embedding

    # -- decoder (teacher forcing) -------------------------------------------------------------

    def forward(self, src, tgt_in):
        """src (B, S), tgt_in (B, T) ids -> (logits (B, T, V), attention weights (B, T, S), cache)."""
        tgt_in = check_tokens("GNMT tgt_in", tgt_in, self.tgt_vocab_size, "(B, T)")
        if np.shape(src)[:1] != tgt_in.shape[:1]:
            raise ValueError(f"GNMT: src (B, S) and tgt_in (B, T) need the same B, "
                             f"got {np.shape(src)} and {tgt_in.shape}")
        memory, mask, enc_cache = self.encode(src)
        e, embed_cache = self.tgt_embed.forward(tgt_in)                # (B, T, E)
        # Right padding needs no decoder mask: PAD steps come after every real one, so they change
        # no real step's state, and their targets (PAD) carry no loss.
        h, _, bottom_cache = self.decoder_layers[0].forward(e)         # (B, T, H) bottom layer
        context, weights, attn_cache = self.attention.forward(h, memory, mask)   # (B, T, H), (B, T, S)
        x, caches = h, []
        for l, layer in enumerate(self.decoder_layers[1:], start=2):
            y, _, c = layer.forward(np.concatenate([x, context], axis=-1))     # (B, T, H)
            x = y + x if self.residual(l) else y
            caches.append(c)
        logits, head_cache = self.head.forward(x)                      # (B, T, V)
        return logits, weights, (enc_cache, embed_cache, bottom_cache, attn_cache, caches, head_cache)

    def backward(self, dlogits, cache):
        """dlogits (B, T, V): full backprop through time, decoder then attention then encoder."""
        enc_cache, embed_cache, bottom_cache, attn_cache, caches, head_cache = cache
        H = self.hidden_size
        dx = self.head.backward(dlogits, head_cache)                   # (B, T, H)
        dcontext = 0.0
        for l, layer, c in reversed(list(zip(range(2, len(caches) + 2), self.decoder_layers[1:], caches))):
            dlayer_in, _ = layer.backward(dx, c)                       # (B, T, 2H)
            dcontext = dcontext + dlayer_in[..., H:]                   # every upper layer read the context
            dx = dlayer_in[..., :H] + dx if self.residual(l) else dlayer_in[..., :H]
        dquery, dmemory = self.attention.backward(dcontext, attn_cache)
        de, _ = self.decoder_layers[0].backward(dx + dquery, bottom_cache)   # h^1 fed layer 2 and the query
        self.tgt_embed.backward(de, embed_cache)
        self.encode_backward(dmemory, enc_cache)

    def teacher_forced(self, src, tgt_in):
        """``forward`` without the attention weights: (logits (B, T, V), cache), for ``loss``."""
        logits, _, cache = self.forward(src, tgt_in)
        return logits, cache

    # -- decoding: one token at a time -------------------------------------------------------

    def start_decoding(self, src):
        """Encodes src (B, S) once; the state holds the memory, its projected keys and zero LSTM states."""
        memory, mask, _ = self.encode(src)
        keys, _ = self.attention.key_proj.forward(memory)              # (B, S, A): reused every step
        B = memory.shape[0]
        return {"memory": memory, "keys": keys, "mask": mask,
                "states": [layer.zero_state(B, memory.dtype) for layer in self.decoder_layers]}

    def decode_step(self, prev_ids, state):
        """prev_ids (B,) -> (log-probs (B, V), attention weights (B, S), new state). Same arithmetic
        as one position of ``forward``."""
        prev_ids = check_tokens("GNMT.decode_step prev_ids", prev_ids, self.tgt_vocab_size, "(B,)")
        e, _ = self.tgt_embed.forward(prev_ids)                        # (B, E)
        bottom, _ = self.decoder_layers[0].cell(e, state["states"][0])     # (h, c), each (B, H)
        context, weights = self.attention.step(bottom[0], state["keys"], state["memory"], state["mask"])
        x, states = bottom[0], [bottom]
        for l, layer in enumerate(self.decoder_layers[1:], start=2):
            s, _ = layer.cell(np.concatenate([x, context], axis=-1), state["states"][l - 1])
            x = s[0] + x if self.residual(l) else s[0]
            states.append(s)
        logits = F.linear(x, self.head.params["weight"], self.head.params["bias"])    # (B, V)
        return F.log_softmax(logits.astype(np.float64)), weights, dict(state, states=states)

    @staticmethod
    def reorder_state(state, index):
        """Keeps rows ``index`` (K,) of every batched array (beam search)."""
        return {"memory": state["memory"][index], "keys": state["keys"][index], "mask": state["mask"][index],
                "states": [tuple(a[index] for a in s) for s in state["states"]]}

