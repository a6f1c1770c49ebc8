"""Solutions to lesson 10's exercises (training a tiny RWKV against a GPT and an LSTM).

Each function has the name of its check: ``check.adam_update(adam_update)`` passes.
"""
import numpy as np


def rwkv4_time_decay_init(layer, n_layer, C):
    """-5 + 8 (i / (C-1))^(0.7 + 1.3 r), r = layer / (n_layer - 1): slow channels first, slower in deeper layers."""
    r01 = layer / (n_layer - 1) if n_layer > 1 else 0.0         # 0 at the first layer, 1 at the last
    ratio = np.arange(C) / (C - 1)                              # 0 .. 1 over the channels
    return -5.0 + 8.0 * ratio ** (0.7 + 1.3 * r01)


def gpt_num_params(vocab_size, dim, n_layers, ffn_dim):
    """Embedding + per layer (attention q,k,v,o with biases, FFN with biases, two LayerNorms) + norm_f + head."""
    V, C, F = vocab_size, dim, ffn_dim
    attention = 3 * C * C + 3 * C + C * C + C                   # in_proj (q, k, v) and out_proj, with biases
    ffn = F * C + F + C * F + C                                 # linear1 and linear2, with biases
    norms = 2 * 2 * C                                           # norm1 and norm2: weight and bias each
    return V * C + n_layers * (attention + ffn + norms) + 2 * C + C * V + V   # ... + norm_f + head


def adam_update(p, g, m, v, t, lr, beta1, beta2, eps):
    """Adam's step number t (1, 2, ...): running moments, bias correction, per-element step size."""
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    m_hat = m / (1 - beta1 ** t)                                # the moments started at 0: undo that bias
    v_hat = v / (1 - beta2 ** t)
    return p - lr * m_hat / (np.sqrt(v_hat) + eps), m, v


def wkv_backward_step(w, u, k, v, aa, bb, pp, gy, ga, gb):
    """One step of the WKV backward, by the chain rule through the forward step's own factors.

    Forward (the stable step): q = max(pp, u+k), e1 = e^(pp-q), e2 = e^(u+k-q), den = e1 bb + e2,
    y = (e1 aa + e2 v) / den; p' = max(pp+w, k), f1 = e^(pp+w-p'), f2 = e^(k-p'),
    aa' = f1 aa + f2 v, bb' = f1 bb + f2. Every exponent is <= 0, so nothing overflows.
    """
    q = np.maximum(pp, u + k)
    e1, e2 = np.exp(pp - q), np.exp(u + k - q)
    den = e1 * bb + e2
    y = (e1 * aa + e2 * v) / den
    p_new = np.maximum(pp + w, k)
    f1, f2 = np.exp(pp + w - p_new), np.exp(k - p_new)
    g = gy / den                                   # dL/d(numerator of y); y = num / den
    gu = g * e2 * (v - y)                          # e^(u+k) sits in the numerator (times v) and the denominator
    gk = gu + f2 * (ga * v + gb)                   # k also feeds the new state through e^k
    gv = g * e2 + f2 * ga
    gw = f1 * (ga * aa + gb * bb)                  # e^w scales the OLD state
    ga_prev = f1 * ga + g * e1                     # the old aa reaches L through aa' and through y
    gb_prev = f1 * gb - g * e1 * y                 # bb is in y's denominator: a negative path
    return gw, gu, gk, gv, ga_prev, gb_prev
