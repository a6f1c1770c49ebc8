"""The Elman RNN, and the recurrent machinery the LSTM and GRU reuse unchanged.

One time step of the Elman RNN (torch.nn.RNN, tanh):

    h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)          x_t: (B, D)   h_t: (B, H)

The state h_t is the model's whole memory of the past. Backprop through time multiplies the
gradient by W_hh^T diag(1 - h^2) once per step, so after k steps it has been multiplied k times:
it shrinks (vanishes) or grows (explodes) geometrically with distance. The LSTM and GRU change
only the *cell* (the step equations) to fix that; everything else in this file stays the same.

Three levels, each with forward and backward (hand-written, caches returned, not stored):

* ``RecurrentLayer`` — one layer, one direction, over a whole sequence. A subclass writes two
  methods, the cell equations:
      state, cache = layer.step(xw, state)        # xw = x_t W_ih^T + b_ih, precomputed for all t
      dxw, dstate_prev = layer.step_backward(dstate, cache)   # adds into grads["w_hh"], ["b_hh"]
  States are tuples of (B, H) arrays whose first entry is h: (h,) for RNN / GRU, (h, c) for LSTM.
  The layer provides
      y, final_state, cache = layer.forward(x, state=None, mask=None)   # x (B, T, D) -> y (B, T, H)
      dx, dstate0 = layer.backward(dy, cache, dstate=None)              # BPTT; dy (B, T, H) or None
      state, cache = layer.cell(x_t, state); dx_t, dstate_prev = layer.cell_backward(dstate, cache)
  ``reverse=True`` reads the sequence from t = T-1 down to 0 (torch's backward direction): y[:, t]
  has then seen x[:, t:], and final_state is the state after x[:, 0].
  ``mask`` (B, T), 1 = real token, 0 = padding: at padded steps the state is carried over unchanged,
  so with right-padded batches the forward final state is the state at each sequence's last real
  token and the reverse direction starts at each sequence's true end.
* ``RecurrentStack`` — torch.nn.RNN/LSTM/GRU: ``num_layers`` layers, optionally bidirectional
  (each layer's two directions concatenated to (B, T, 2H)), with ``load_torch_state_dict`` /
  ``torch_state_dict`` so torch weights copy over (``weight_ih_l0`` <-> ``layers.0.w_ih``,
  ``weight_hh_l1_reverse`` <-> ``layers.3.w_hh`` ...).
* ``RecurrentLanguageModel`` — Embedding -> stack -> Linear head, a ``LanguageModel``.

Parameters follow torch's names, shapes and default init U(-1/sqrt(H), 1/sqrt(H)):
``w_ih`` (G*H, D), ``w_hh`` (G*H, H), ``b_ih`` (G*H,), ``b_hh`` (G*H,), with G gates (1 here).
"""
from __future__ import annotations

import numpy as np

from ..nn import Embedding, Linear, Module, check_float, check_shape, check_tokens
from ..nn import functional as F
from ..nn.layers import uniform_init
from .base import LanguageModel


def _as_numpy(value):
    """A torch tensor (without importing torch) or anything array-like -> np.ndarray."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


class RecurrentLayer(Module):
    """One recurrent layer, one direction, over a sequence. Subclasses define the cell.

    Class attributes a subclass sets: ``n_gates`` (G: how many H-sized blocks W_ih has) and
    ``state_names`` (what the state tuple holds, e.g. ("h", "c")).
    """

    n_gates = 1
    state_names = ("h",)

    def __init__(self, input_size: int, hidden_size: int, reverse: bool = False, rng=None, dtype=np.float32):
        super().__init__()
        if input_size < 1 or hidden_size < 1:
            raise ValueError(f"{type(self).__name__}: input_size and hidden_size must be >= 1, "
                             f"got {input_size}, {hidden_size}")
        rng = rng or np.random.default_rng()
        self.input_size, self.hidden_size, self.reverse = input_size, hidden_size, reverse
        G, H, D = self.n_gates, hidden_size, input_size
        # torch initialises every RNN weight and bias U(-1/sqrt(H), 1/sqrt(H)).
        self.add_param("w_ih", uniform_init(rng, (G * H, D), H, dtype))
        self.add_param("w_hh", uniform_init(rng, (G * H, H), H, dtype))
        self.add_param("b_ih", uniform_init(rng, (G * H,), H, dtype))
        self.add_param("b_hh", uniform_init(rng, (G * H,), H, dtype))

    # -- the cell: what a subclass writes ------------------------------------------------------

    def step(self, xw, state):
        """One time step from the projected input xw (B, G*H) and the state; returns (state, cache)."""
        raise NotImplementedError

    def step_backward(self, dstate, cache):
        """Gradient of one step: dstate (tuple) -> (dxw (B, G*H), dstate_prev); adds into w_hh, b_hh grads."""
        raise NotImplementedError

    def hidden_projection(self, h):
        """h W_hh^T + b_hh: (B, H) -> (B, G*H), the recurrent half of every gate."""
        return F.linear(h, self.params["w_hh"], self.params["b_hh"])

    def hidden_projection_backward(self, dhw, h):
        """Adds the w_hh, b_hh gradients of ``hidden_projection`` and returns dh (B, H)."""
        dh, dw, db = F.linear_backward(dhw, h, self.params["w_hh"])
        self.grads["w_hh"] += dw
        self.grads["b_hh"] += db
        return dh

    # -- states ----------------------------------------------------------------------------------

    def zero_state(self, batch_size: int, dtype=None):
        """All-zero state: a tuple of (B, H) arrays, one per name in ``state_names``."""
        dtype = dtype or self.params["w_hh"].dtype
        return tuple(np.zeros((batch_size, self.hidden_size), dtype) for _ in self.state_names)

    def check_state(self, state, batch_size: int):
        name = type(self).__name__
        if not isinstance(state, (tuple, list)) or len(state) != len(self.state_names):
            raise ValueError(f"{name}: state must be a tuple ({', '.join(self.state_names)}) of "
                             f"(B, {self.hidden_size}) arrays, got {type(state).__name__}")
        for sname, s in zip(self.state_names, state):
            check_float(f"{name} state {sname}", s)
            check_shape(f"{name} state {sname}", s, (batch_size, self.hidden_size))
        return tuple(state)

    # -- one full time step (input projection + cell), for generation and for gradient checks ---

    def cell(self, x, state):
        """x (B, D), state -> (new state, cache). The same arithmetic as one step of ``forward``."""
        name = type(self).__name__
        check_float(f"{name}.cell input", x)
        check_shape(f"{name}.cell input", x, (None, self.input_size))
        state = self.check_state(state, x.shape[0])
        xw = F.linear(x, self.params["w_ih"], self.params["b_ih"])      # (B, G*H)
        new_state, cache = self.step(xw, state)
        return new_state, (x, cache)

    def cell_backward(self, dstate, cache):
        """dstate (tuple) -> (dx (B, D), dstate_prev); adds every parameter gradient."""
        x, step_cache = cache
        dxw, dstate_prev = self.step_backward(tuple(dstate), step_cache)
        dx, dw, db = F.linear_backward(dxw, x, self.params["w_ih"])
        self.grads["w_ih"] += dw
        self.grads["b_ih"] += db
        return dx, dstate_prev

    # -- a whole sequence ------------------------------------------------------------------------

    def forward(self, x, state=None, mask=None):
        """Runs the cell over x (B, T, D) from ``state`` (default zeros).

        Returns y (B, T, H) with y[:, t] = h_t, the final state, and the cache for ``backward``.
        """
        name = type(self).__name__
        check_float(f"{name} input", x)
        check_shape(f"{name} input (B, T, D)", x, (None, None, self.input_size))
        B, T, _ = x.shape
        state = self.zero_state(B, x.dtype) if state is None else self.check_state(state, B)
        if mask is not None:
            mask = check_shape(f"{name} mask (B, T)", mask, (B, T)).astype(x.dtype)
        # The input half of every gate for all time steps in one matmul: only h W_hh^T is sequential.
        xw = F.linear(x, self.params["w_ih"], self.params["b_ih"])     # (B, T, G*H)
        y = np.empty((B, T, self.hidden_size), dtype=x.dtype)          # (B, T, H)
        caches = [None] * T
        for t in self.time_order(T):
            new_state, caches[t] = self.step(xw[:, t], state)
            if mask is not None:                                       # padding: keep the old state
                m = mask[:, t, None]                                   # (B, 1)
                new_state = tuple(m * new + (1 - m) * old for new, old in zip(new_state, state))
            state = new_state
            y[:, t] = state[0]
        return y, state, (x, mask, caches)

    def backward(self, dy, cache, dstate=None):
        """Backprop through time. dy: (B, T, H) or None (only the final state was used);
        dstate: gradient w.r.t. the final state (tuple) or None. Returns dx (B, T, D), dstate0.
        """
        x, mask, caches = cache
        B, T, _ = x.shape
        if dy is not None:
            check_shape(f"{type(self).__name__}.backward dy", dy, (B, T, self.hidden_size))
        dstate = self.zero_state(B, x.dtype) if dstate is None else self.check_state(dstate, B)
        dxw = np.empty((B, T, self.n_gates * self.hidden_size), dtype=x.dtype)   # (B, T, G*H)
        for t in reversed(self.time_order(T)):
            if dy is not None:             # h_t went two ways, to the output y_t and to step t+1
                dstate = (dstate[0] + dy[:, t],) + tuple(dstate[1:])
            if mask is None:
                dxw[:, t], dstate = self.step_backward(dstate, caches[t])
            else:
                m = mask[:, t, None]
                dxw[:, t], dprev = self.step_backward(tuple(m * d for d in dstate), caches[t])
                dstate = tuple(dp + (1 - m) * d for dp, d in zip(dprev, dstate))
        dx, dw, db = F.linear_backward(dxw, x, self.params["w_ih"])      # all time steps at once
        self.grads["w_ih"] += dw
        self.grads["b_ih"] += db
        return dx, dstate

    def time_order(self, T: int) -> list:
        """The order the cell visits positions: 0..T-1, or T-1..0 for the reverse direction."""
        return list(range(T - 1, -1, -1)) if self.reverse else list(range(T))


class RNNLayer(RecurrentLayer):
    """Elman RNN layer: h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh). State: (h,)."""

    n_gates = 1
    state_names = ("h",)

    def step(self, xw, state):
        (h_prev,) = state                                    # (B, H)
        h = F.tanh(xw + self.hidden_projection(h_prev))      # (B, H)
        return (h,), (h_prev, h)

    def step_backward(self, dstate, cache):
        h_prev, h = cache
        (dh,) = dstate
        dpre = F.tanh_backward(dh, h)                        # (B, H): through the tanh
        dh_prev = self.hidden_projection_backward(dpre, h_prev)
        return dpre, (dh_prev,)                              # the input half got the same dpre


class RecurrentStack(Module):
    """``num_layers`` recurrent layers (torch.nn.RNN / LSTM / GRU), optionally bidirectional.

    layers[l * dirs + d] is layer l, direction d (0 forward, 1 reverse): torch's order, so a
    state list matches torch's h_n / c_n along their first axis.
    """

    layer_class = RNNLayer

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bidirectional: bool = False,
                 rng=None, dtype=np.float32, **layer_options):
        """``layer_options`` go to every layer (e.g. ``forget_bias`` for the LSTM)."""
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"{type(self).__name__}: num_layers must be >= 1, got {num_layers}")
        rng = rng or np.random.default_rng()
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.num_directions = 2 if bidirectional else 1
        self.output_size = hidden_size * self.num_directions
        self.layers = [self.layer_class(input_size if l == 0 else self.output_size, hidden_size,
                                        reverse=(d == 1), rng=rng, dtype=dtype, **layer_options)
                       for l in range(num_layers) for d in range(self.num_directions)]

    def init_state(self, batch_size: int, dtype=None) -> list:
        """One zero state tuple per layer and direction."""
        return [layer.zero_state(batch_size, dtype) for layer in self.layers]

    def _check_state_list(self, state, what):
        if state is not None and (not isinstance(state, (list, tuple)) or len(state) != len(self.layers)):
            raise ValueError(f"{type(self).__name__}: {what} must be a list of {len(self.layers)} state tuples "
                             f"(num_layers * num_directions), got {type(state).__name__}"
                             + (f" of length {len(state)}" if isinstance(state, (list, tuple)) else ""))

    def forward(self, x, state=None, mask=None):
        """x (B, T, D) -> y (B, T, dirs*H) from the top layer, final states (list), cache."""
        self._check_state_list(state, "state")
        finals, caches = [], []
        for l in range(self.num_layers):
            outputs = []
            for d in range(self.num_directions):
                k = l * self.num_directions + d
                y, final, cache = self.layers[k].forward(x, None if state is None else state[k], mask)
                outputs.append(y)
                finals.append(final)
                caches.append(cache)
            x = outputs[0] if len(outputs) == 1 else np.concatenate(outputs, axis=-1)   # (B, T, dirs*H)
        return x, finals, caches

    def backward(self, dy, cache, dstate=None):
        """dy (B, T, dirs*H) or None, dstate (list) or None -> dx (B, T, D), dstate0 (list)."""
        self._check_state_list(dstate, "dstate")
        H = self.hidden_size
        dstate0 = [None] * len(self.layers)
        for l in reversed(range(self.num_layers)):
            dx = None
            for d in range(self.num_directions):
                k = l * self.num_directions + d
                dy_d = None if dy is None else dy[..., d * H:(d + 1) * H]
                dx_d, dstate0[k] = self.layers[k].backward(dy_d, cache[k], None if dstate is None else dstate[k])
                dx = dx_d if dx is None else dx + dx_d        # both directions read the same input
            dy = dx
        return dy, dstate0

    def step(self, x, state):
        """One token through every layer: x (B, D), state (list) -> (top h (B, H), new state list).

        Only for a unidirectional stack: a reverse direction would need the future.
        """
        if self.num_directions != 1:
            raise ValueError(f"{type(self).__name__}.step: a bidirectional stack cannot run one step at a time")
        self._check_state_list(state, "state")
        new_state = []
        for layer, s in zip(self.layers, state):
            s, _ = layer.cell(x, s)
            new_state.append(s)
            x = s[0]
        return x, new_state

    # -- torch interop ---------------------------------------------------------------------------

    _TORCH = {"w_ih": "weight_ih", "w_hh": "weight_hh", "b_ih": "bias_ih", "b_hh": "bias_hh"}

    def torch_names(self) -> dict:
        """Our dotted name -> torch.nn.RNN/LSTM/GRU's name, e.g. 'layers.1.w_hh' -> 'weight_hh_l0_reverse'."""
        out = {}
        for k, layer in enumerate(self.layers):
            l, d = divmod(k, self.num_directions)
            for ours, theirs in self._TORCH.items():
                out[f"layers.{k}.{ours}"] = f"{theirs}_l{l}" + ("_reverse" if d else "")
        return out

    def torch_state_dict(self) -> dict:
        """Parameters under torch's names, as NumPy arrays (wrap with torch.tensor to load into torch)."""
        params = self.parameters()
        return {theirs: params[ours].copy() for ours, theirs in self.torch_names().items()}

    def load_torch_state_dict(self, state_dict: dict):
        """Copies a torch.nn.RNN/LSTM/GRU ``state_dict()`` (tensors or arrays) into this stack.

        The torch module must have the same input/hidden size, num_layers, bidirectional,
        bias=True, batch_first irrelevant, proj_size=0. Every mismatch is listed in the error.
        """
        names = self.torch_names()
        renamed = {}
        expected = set(names.values())
        unexpected = sorted(set(state_dict) - expected)
        missing = sorted(expected - set(state_dict))
        if missing or unexpected:
            raise ValueError(f"{type(self).__name__}.load_torch_state_dict: missing keys {missing}, "
                             f"unexpected keys {unexpected} (num_layers={self.num_layers}, "
                             f"bidirectional={self.num_directions == 2})")
        for ours, theirs in names.items():
            renamed[ours] = _as_numpy(state_dict[theirs])
        self.load_state_dict(renamed)


class RNN(RecurrentStack):
    """torch.nn.RNN (tanh, bias, batch_first): stacked Elman layers. State list entries: (h,)."""

    layer_class = RNNLayer


class RecurrentLanguageModel(LanguageModel):
    """Embedding -> recurrent stack -> Linear head. ids (B, T) -> logits (B, T, V).

    The generation state is the stack's state list: one tuple per layer, (h,) or (h, c).
    """

    stack_class = RNN

    def __init__(self, vocab_size: int, hidden_size: int = 128, num_layers: int = 1, embed_dim=None,
                 rng=None, dtype=np.float32, **layer_options):
        """embed_dim defaults to hidden_size; ``layer_options`` go to every recurrent layer."""
        super().__init__()
        rng = rng or np.random.default_rng()
        embed_dim = embed_dim or hidden_size
        self.vocab_size, self.hidden_size, self.num_layers = vocab_size, hidden_size, num_layers
        self.embed = Embedding(vocab_size, embed_dim, rng=rng, dtype=dtype)
        self.rnn = self.stack_class(embed_dim, hidden_size, num_layers, rng=rng, dtype=dtype, **layer_options)
        self.head = Linear(hidden_size, vocab_size, rng=rng, dtype=dtype)

    def forward(self, ids, state=None):
        """ids (B, T) ints -> logits (B, T, V). ``state`` (default zeros) lets a caller carry memory
        across chunks (truncated BPTT); the final state is in ``cache["state"]``."""
        ids = check_tokens(f"{type(self).__name__}.forward ids", ids, self.vocab_size, "(B, T)")
        e, embed_cache = self.embed.forward(ids)                 # (B, T, E)
        h, final, rnn_cache = self.rnn.forward(e, state)         # (B, T, H)
        logits, head_cache = self.head.forward(h)                # (B, T, V)
        return logits, {"embed": embed_cache, "rnn": rnn_cache, "head": head_cache, "state": final}

    def backward(self, dlogits, cache):
        dh = self.head.backward(dlogits, cache["head"])          # (B, T, H)
        de, _ = self.rnn.backward(dh, cache["rnn"])              # (B, T, E)
        self.embed.backward(de, cache["embed"])

    def init_state(self, batch_size: int):
        return self.rnn.init_state(batch_size)

    def step(self, ids, state):
        """ids (B,) -> logits (B, V), new state: the same arithmetic as one position of ``forward``."""
        ids = check_tokens(f"{type(self).__name__}.step ids", ids, self.vocab_size, "(B,)")
        e, _ = self.embed.forward(ids)                           # (B, E)
        h, state = self.rnn.step(e, state)                       # (B, H)
        logits, _ = self.head.forward(h)                         # (B, V)
        return logits, state

    def state_size(self, context_length: int) -> int:
        """Floats carried per sequence: fixed, whatever the context length (unlike a KV cache)."""
        layer = self.rnn.layers[0]
        return len(self.rnn.layers) * len(layer.state_names) * self.hidden_size


class RNNLanguageModel(RecurrentLanguageModel):
    """Embedding -> Elman RNN -> Linear head."""

    stack_class = RNN
