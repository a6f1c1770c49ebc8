"""The LSTM: a cell state c that the gradient can travel along without being squashed.

One time step, exactly torch.nn.LSTM (gate order i, f, g, o in W_ih, W_hh, b_ih, b_hh):

    [i, f, g, o] = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh       each (B, H); W_ih: (4H, D)
    i = sigmoid(i)      input gate:  how much of the candidate to write
    f = sigmoid(f)      forget gate: how much of the old cell to keep
    g = tanh(g)         candidate values
    o = sigmoid(o)      output gate: how much of the cell to show
    c_t = f * c_{t-1} + i * g                                        (B, H)
    h_t = o * tanh(c_t)                                              (B, H)

Why it helps: dc_{t-1} = dc_t * f. Along the cell the gradient is multiplied by the forget gate,
elementwise, with no weight matrix and no squashing derivative; when f is near 1 it survives
hundreds of steps. (An RNN multiplies by W_hh^T diag(1 - h^2) every step instead.)

API (the sequence machinery is shared with the RNN, see ``tinyrwkv.models.rnn``):

    layer = LSTMLayer(input_size D, hidden_size H, reverse=False, rng=None, dtype=np.float32, forget_bias=1.0)
    y, (h_T, c_T), cache = layer.forward(x, state=(h0, c0), mask=None)   # x (B, T, D), y (B, T, H)
    dx, (dh0, dc0) = layer.backward(dy, cache, dstate=(dh_T, dc_T))      # dy may be None, dstate too
    (h, c), cache = layer.cell(x_t, (h, c));  dx_t, (dh, dc) = layer.cell_backward((dh', dc'), cache)

    stack = LSTM(D, H, num_layers=2, bidirectional=False, forget_bias=1.0)   # torch.nn.LSTM, batch_first
    y, states, cache = stack.forward(x, state=None, mask=None)           # states: [(h, c)] * (L*dirs)
    dx, dstates0 = stack.backward(dy, cache, dstate=None)
    stack.load_torch_state_dict(torch_lstm.state_dict())

Building GNMT from these parts: a bidirectional first encoder layer is two layers over the same
input, ``LSTMLayer(D, H)`` and ``LSTMLayer(D, H, reverse=True)``, concatenated on the last axis
(y[:, t] of the reverse layer has read x[:, t:]); backward splits dy the same way and adds the two
dx. Residual connections are plain additions between layers' forward calls (and dy flows to both
in backward). The decoder passes the encoder's final (h, c) as ``state``, and gets the gradient
w.r.t. that initial state back from ``backward`` as dstate0. For right-padded source batches pass
``mask`` (B, T): padded steps carry the state over unchanged, so the reverse layer starts at each
sentence's true end.
"""
from __future__ import annotations

import numpy as np

from ..nn import functional as F
from .rnn import RecurrentLanguageModel, RecurrentLayer, RecurrentStack


class LSTMLayer(RecurrentLayer):
    """One LSTM layer, one direction. State: (h, c), each (B, H). Parameters: 4 gates (i, f, g, o)."""

    n_gates = 4
    state_names = ("h", "c")

    def __init__(self, input_size: int, hidden_size: int, reverse: bool = False, rng=None, dtype=np.float32,
                 forget_bias: float = 1.0):
        """``forget_bias`` is added to the forget gate's b_ih at initialisation (torch's init = 0.0 here).

        Why 1.0: with f = sigmoid(~0) = 0.5 the cell halves every step at first and the gradient
        along it vanishes like an RNN's; sigmoid(1) = 0.73 keeps memory alive from step one
        (Gers et al. 2000; Jozefowicz et al. 2015; Keras' ``unit_forget_bias``). It changes only the
        starting point, never the equations, so torch weights still copy over exactly.
        """
        super().__init__(input_size, hidden_size, reverse=reverse, rng=rng, dtype=dtype)
        self.params["b_ih"][hidden_size:2 * hidden_size] += forget_bias

    def step(self, xw, state):
        h_prev, c_prev = state                                      # (B, H), (B, H)
        H = self.hidden_size
        pre = xw + self.hidden_projection(h_prev)                   # (B, 4H): [i | f | g | o]
        i = F.sigmoid(pre[:, 0 * H:1 * H])
        f = F.sigmoid(pre[:, 1 * H:2 * H])
        g = F.tanh(pre[:, 2 * H:3 * H])
        o = F.sigmoid(pre[:, 3 * H:4 * H])
        c = f * c_prev + i * g                                      # (B, H)
        tanh_c = F.tanh(c)
        h = o * tanh_c                                              # (B, H)
        return (h, c), (h_prev, c_prev, i, f, g, o, tanh_c)

    def step_backward(self, dstate, cache):
        h_prev, c_prev, i, f, g, o, tanh_c = cache
        dh, dc = dstate
        do = dh * tanh_c
        dc = dc + F.tanh_backward(dh * o, tanh_c)                   # c reaches the loss directly and via h
        di, df, dg = dc * g, dc * c_prev, dc * i
        dc_prev = dc * f                                            # the cell's highway: only * f
        dpre = np.concatenate([F.sigmoid_backward(di, i), F.sigmoid_backward(df, f),
                               F.tanh_backward(dg, g), F.sigmoid_backward(do, o)], axis=-1)   # (B, 4H)
        dh_prev = self.hidden_projection_backward(dpre, h_prev)
        return dpre, (dh_prev, dc_prev)


class LSTM(RecurrentStack):
    """torch.nn.LSTM (batch_first, bias, no projection): stacked, optionally bidirectional."""

    layer_class = LSTMLayer


class LSTMLanguageModel(RecurrentLanguageModel):
    """Embedding -> LSTM -> Linear head. Generation state: [(h, c)] per layer."""

    stack_class = LSTM
