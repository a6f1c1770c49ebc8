"""The GRU: the LSTM's idea with two gates and no separate cell.

One time step, exactly torch.nn.GRU (gate order r, z, n in W_ih, W_hh, b_ih, b_hh):

    [xr, xz, xn] = x_t W_ih^T + b_ih                                 each (B, H); W_ih: (3H, D)
    [hr, hz, hn] = h_{t-1} W_hh^T + b_hh                             each (B, H); W_hh: (3H, H)
    r = sigmoid(xr + hr)            reset gate: how much of the past the candidate may read
    z = sigmoid(xz + hz)            update gate: how much of the old state to keep
    n = tanh(xn + r * hn)           candidate state (note: r multiplies hn *including* b_hn)
    h_t = (1 - z) * n + z * h_{t-1}                                  (B, H)

Why it helps: dh_{t-1} contains dh_t * z directly, an elementwise path with no matrix and no
squashing; when z is near 1 the state (and its gradient) passes through unchanged.
The sequence machinery (forward/backward over time, reverse, mask, stacks) is ``models.rnn``'s.
"""
from __future__ import annotations

import numpy as np

from ..nn import functional as F
from .rnn import RecurrentLanguageModel, RecurrentLayer, RecurrentStack


class GRULayer(RecurrentLayer):
    """One GRU layer, one direction. State: (h,), (B, H). Parameters: 3 gates (r, z, n)."""

    n_gates = 3
    state_names = ("h",)

    def step(self, xw, state):
        (h_prev,) = state                                           # (B, H)
        H = self.hidden_size
        hw = self.hidden_projection(h_prev)                         # (B, 3H): [hr | hz | hn]
        r = F.sigmoid(xw[:, 0 * H:1 * H] + hw[:, 0 * H:1 * H])
        z = F.sigmoid(xw[:, 1 * H:2 * H] + hw[:, 1 * H:2 * H])
        hn = hw[:, 2 * H:3 * H]
        n = F.tanh(xw[:, 2 * H:3 * H] + r * hn)
        h = (1 - z) * n + z * h_prev                                # (B, H)
        return (h,), (h_prev, r, z, n, hn)

    def step_backward(self, dstate, cache):
        h_prev, r, z, n, hn = cache
        (dh,) = dstate
        dn = dh * (1 - z)
        dz = dh * (h_prev - n)
        dh_direct = dh * z                                          # the update gate's highway
        dpre_n = F.tanh_backward(dn, n)                             # (B, H)
        dpre_r = F.sigmoid_backward(dpre_n * hn, r)
        dpre_z = F.sigmoid_backward(dz, z)
        dxw = np.concatenate([dpre_r, dpre_z, dpre_n], axis=-1)      # (B, 3H)
        dhw = np.concatenate([dpre_r, dpre_z, dpre_n * r], axis=-1)  # (B, 3H): hn was scaled by r
        dh_prev = dh_direct + self.hidden_projection_backward(dhw, h_prev)
        return dxw, (dh_prev,)


class GRU(RecurrentStack):
    """torch.nn.GRU (batch_first, bias): stacked, optionally bidirectional."""

    layer_class = GRULayer


class GRULanguageModel(RecurrentLanguageModel):
    """Embedding -> GRU -> Linear head. Generation state: [(h,)] per layer."""

    stack_class = GRU
