"""Solutions to lesson 03's exercises (the GRU)."""
import numpy as np


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def gru_cell(x, h_prev, w_ih, w_hh, b_ih, b_hh):
    """One GRU step with torch's equations and gate order r, z, n: returns h (B, H)."""
    H = h_prev.shape[1]
    xr, xz, xn = np.split(x @ w_ih.T + b_ih, 3, axis=1)          # each (B, H)
    hr, hz, hn = np.split(h_prev @ w_hh.T + b_hh, 3, axis=1)     # each (B, H); hn includes b_hn
    r = sigmoid(xr + hr)                                         # reset gate
    z = sigmoid(xz + hz)                                         # update gate
    n = np.tanh(xn + r * hn)                                     # candidate: r scales W_hn h + b_hn
    assert n.shape[1] == H
    return (1 - z) * n + z * h_prev                              # keep z of the old state


def gru_hold_biases(hidden_size):
    """Biases that pin the update gate z at ~1, so h = (1 - z) * n + z * h_prev stays h_prev.

    With torch's init the weighted inputs are a few units at most; a bias of 30 makes
    1 - z < e^-20, so 20 steps move h by far less than 1e-3.
    """
    H = hidden_size
    b_ih, b_hh = np.zeros(3 * H), np.zeros(3 * H)
    b_ih[H:2 * H] = 30.0                                         # the z block (order r, z, n)
    return b_ih, b_hh


def recurrent_num_params(kind, input_size, hidden_size, num_layers=1, bidirectional=False):
    """Parameters of torch.nn.RNN / LSTM / GRU: per layer and direction G*H*(in + H) weights + 2*G*H biases."""
    gates = {"rnn": 1, "lstm": 4, "gru": 3}[kind]
    directions = 2 if bidirectional else 1
    H = hidden_size
    total = 0
    for layer in range(num_layers):
        layer_input = input_size if layer == 0 else directions * H    # upper layers read both directions
        total += directions * (gates * H * (layer_input + H) + 2 * gates * H)
    return total
