"""Solutions to lesson 02's exercises (the LSTM)."""
import numpy as np


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def lstm_cell(x, h_prev, c_prev, w_ih, w_hh, b_ih, b_hh):
    """One LSTM step with torch's gate order i, f, g, o: returns (h, c), each (B, H)."""
    H = h_prev.shape[1]
    pre = x @ w_ih.T + b_ih + h_prev @ w_hh.T + b_hh        # (B, 4H): [i | f | g | o]
    i = sigmoid(pre[:, 0 * H:1 * H])                        # input gate
    f = sigmoid(pre[:, 1 * H:2 * H])                        # forget gate
    g = np.tanh(pre[:, 2 * H:3 * H])                        # candidate
    o = sigmoid(pre[:, 3 * H:4 * H])                        # output gate
    c = f * c_prev + i * g                                  # (B, H): the additive cell update
    h = o * np.tanh(c)                                      # (B, H)
    return h, c


def lstm_dc_prev(dh, dc, f, o, c):
    """dL/dc_{t-1} from the gradients arriving at h_t and c_t: c_t feeds the loss directly and via h_t."""
    dc_total = dc + dh * o * (1 - np.tanh(c) ** 2)          # everything that reached c_t
    return dc_total * f                                     # c_t = f * c_{t-1} + i * g


def lstm_num_params(input_size, hidden_size, num_layers=1):
    """torch.nn.LSTM's count: per layer W_ih (4H, in), W_hh (4H, H), b_ih (4H,), b_hh (4H,)."""
    H = hidden_size
    total = 0
    for layer in range(num_layers):
        layer_input = input_size if layer == 0 else H
        total += 4 * H * layer_input + 4 * H * H + 4 * H + 4 * H
    return total
