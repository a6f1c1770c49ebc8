"""Diagrams of lessons 05-07: a Transformer block, the RWKV-4 block, token shift, the WKV state and its
two modes of evaluation."""
from __future__ import annotations

from ._canvas import Canvas

BLUE, GREEN, RED, ORANGE, GREY = "#1f4e79", "#38761d", "#c0504d", "#b45f06", "#666666"


def _residual(c, src_y, x_main, x_side, add, text=None):
    """A residual branch: from the main line at height ``src_y`` around to the ⊕ ``add``."""
    c.path([(x_main, src_y), (x_side, src_y), (x_side, add.y), add.left if x_side < x_main else add.right],
           color=GREEN)
    if text:
        c.label(x_side - 0.08, (src_y + add.y) / 2, text, size=8, color=GREEN, ha="right", rotation=90)


def transformer_block():
    """Lesson 05: a pre-norm GPT block: LN -> causal self-attention -> +, LN -> FFN -> +, with the mask."""
    c = Canvas(9.6, 7.0, "A Transformer (GPT) block, pre-norm as in GPT-2")
    x = 2.6
    c.box(x, 0.45, "$x$  (B, T, C)", w=1.6, h=0.4, kind="input")
    ln1 = c.box(x, 1.25, "LayerNorm", w=1.6, h=0.4, kind="norm")
    att = c.box(x, 2.25, "causal self-attention\n$q, k, v = W_q x, W_k x, W_v x$", w=2.3, h=0.75, kind="mix",
                size=8.5)
    add1 = c.op(x, 3.2, "+")
    ln2 = c.box(x, 3.9, "LayerNorm", w=1.6, h=0.4, kind="norm")
    ffn = c.box(x, 4.85, "FFN: $W_2\\,\\mathrm{relu}(W_1 x + b_1) + b_2$\n(C → 4C → C)", w=2.3, h=0.7, kind="linear", size=8.5)
    add2 = c.op(x, 5.75, "+")
    c.arrow((x, 0.65), ln1.bottom)
    c.arrow(ln1.top, att.bottom)
    c.arrow(att.top, add1.bottom)
    c.arrow(add1.top, ln2.bottom)
    c.arrow(ln2.top, ffn.bottom)
    c.arrow(ffn.top, add2.bottom)
    c.arrow(add2.top, (x, 6.4), "to the next block", text_offset=(0.95, 0.05), text_size=8.5)
    _residual(c, 0.85, x, 0.85, add1, "residual")
    _residual(c, 3.5, x, 0.85, add2, "residual")
    # the causal mask: which positions each query may read
    T = 5
    x0, y0, s = 5.9, 1.2, 0.42
    c.label(x0 + T * s / 2, y0 + T * s + 0.75, "causal mask inside attention", size=9.5, weight="bold")
    c.label(x0 + T * s / 2, y0 + T * s + 0.45, "key position $j$ →", size=9)
    c.label(x0 - 0.35, y0 + T * s / 2, "query position $t$ ↓", size=9, rotation=90)
    for t in range(T):
        for j in range(T):
            ok = j <= t
            c.box(x0 + (j + 0.5) * s, y0 + (T - t - 0.5) * s, "" if ok else "−∞", w=s, h=s,
                  kind="mix" if ok else "plain", rounded=False, size=7, textcolor=GREY)
    c.label(x0 + T * s / 2, y0 - 0.3, "softmax over each row: $t$ reads $j \\leq t$", size=9)
    c.label(x0 + T * s / 2, y0 - 0.65, "decoding keeps every k, v: the KV cache grows with T", size=9,
            style="italic", color=GREY)
    return c.done()


def rwkv_block():
    """Lessons 06-07: one RWKV-4 block: LN -> time-mix (token shift, r k v, WKV with w, u) -> +,
    LN -> channel-mix -> +, with the checkpoint names next to the symbols."""
    c = Canvas(12.0, 9.1, "One RWKV-4 block (checkpoint names: blocks.{i}.att.*, blocks.{i}.ffn.*)")
    x = 2.6
    c.box(x, 0.45, "$x_t$  (C,)", w=1.4, h=0.4, kind="input")
    ln1 = c.box(x, 1.2, "LayerNorm  ln1", w=1.6, h=0.4, kind="norm", size=9)
    c.arrow((x, 0.65), ln1.bottom)
    # time-mix
    c.region(1.0, 1.6, 11.8, 4.15, "time-mix  (att.*): mixes information ACROSS time", kind="mix",
             text_at="top-right")
    shift1 = c.box(3.35, 2.05, "token shift: $\\mathrm{mix}_\\mu(x_t, x_{t-1})$ with $\\mu_r, \\mu_k, \\mu_v$",
                   w=4.4, h=0.42, kind="mix", size=9)
    c.arrow(ln1.top, (x, shift1.bottom[1]))
    projs = [("$r = W_r\\,\\mathrm{mix}_{\\mu_r}$", 1.85), ("$k = W_k\\,\\mathrm{mix}_{\\mu_k}$", 3.35),
             ("$v = W_v\\,\\mathrm{mix}_{\\mu_v}$", 4.85)]
    pb = []
    for text, px in projs:
        b = c.box(px, 2.85, text, w=1.4, h=0.42, kind="linear", size=8.5)
        c.arrow((px, shift1.top[1]), b.bottom)
        pb.append(b)
    wkv = c.box(4.6, 3.6, "$\\mathrm{wkv}_t(w, u, k, v)$  (carries $a, b, p$)", w=2.9, h=0.45, kind="state",
                size=9)
    c.arrow(pb[1].top, (pb[1].x, 3.375))
    c.arrow(pb[2].top, (pb[2].x, 3.375))
    sig = c.box(1.85, 3.6, "$\\sigma(r)$", w=0.8, h=0.4, kind="nonlin", size=9)
    c.arrow(pb[0].top, sig.bottom)
    mul = c.op(x, 4.5, "×")
    c.path([sig.top, (1.85, 4.5), mul.left])
    c.path([wkv.top, (4.6, 4.5), mul.right])
    wo = c.box(x, 5.15, "$W_o$  (att.output)", w=1.6, h=0.4, kind="linear", size=9)
    c.arrow(mul.top, wo.bottom)
    add1 = c.op(x, 5.8, "+")
    c.arrow(wo.top, add1.bottom)
    # the checkpoint names of the time-mix symbols
    names = ["$w = -\\exp(\\mathtt{time\\_decay})$  per channel, < 0",
             "$u = \\mathtt{time\\_first}$  bonus for the current token",
             "$\\mu_r, \\mu_k, \\mu_v$ = time_mix_r, _k, _v",
             "$W_r, W_k, W_v$ = receptance, key, value"]
    for i, t in enumerate(names):
        c.label(6.7, 3.5 - i * 0.42, t, size=8.5, ha="left")
    # channel-mix
    ln2 = c.box(x, 6.45, "LayerNorm  ln2", w=1.6, h=0.4, kind="norm", size=9)
    c.arrow(add1.top, ln2.bottom)
    c.region(1.0, 6.8, 11.8, 7.95, "channel-mix  (ffn.*): per token, like an FFN", kind="linear",
             text_at="top-right")
    cm = c.box(5.3, 7.25, "token shift, then  $\\sigma(W_r\\,\\mathrm{mix}_{\\mu_r}) \\odot "
               "W_v\\,\\mathrm{relu}(W_k\\,\\mathrm{mix}_{\\mu_k})^2$", w=6.0, h=0.5, kind="linear", size=9)
    c.arrow(ln2.top, (x, cm.bottom[1]))
    add2 = c.op(x, 8.25, "+")
    c.arrow((x, cm.top[1]), add2.bottom)
    c.arrow(add2.right, (x + 1.1, 8.25), "next block", text_offset=(0.95, 0), text_size=8.5)
    _residual(c, 0.85, x, 0.55, add1, "residual")
    _residual(c, 6.05, x, 0.55, add2)
    c.label(9.2, 0.75, "each block also carries, per sequence:\n$x_{t-1}$ for each token shift and the WKV "
            "state $(a, b, p)$", size=8.5, color=GREY)
    return c.done()


def token_shift():
    """Lesson 06: token shift: each channel mixes x_t with x_{t-1} by its own mu."""
    c = Canvas(10.6, 4.2, "Token shift: $\\mathrm{mix}_\\mu(x_t, x_{t-1}) = \\mu \\odot x_t + (1-\\mu) \\odot x_{t-1}$")
    T = 5
    xs = [2.2 + 1.7 * t for t in range(T)]
    c.box(0.75, 0.7, "$x_0$: zeros, or\nthe carried state", w=1.25, h=0.55, kind="state", size=8)
    prev = (1.2, 0.98)
    for t, x in enumerate(xs):
        c.box(x, 0.7, f"$x_{t + 1}$", w=0.7, h=0.45, kind="input")
        m = c.box(x, 2.3, "mix", w=0.8, h=0.5, kind="mix")
        c.arrow((x, 0.93), m.bottom, "$\\mu$", text_offset=(0.15, 0), text_size=9)
        c.arrow(prev, m.at(-0.8, -1), "$1-\\mu$", text_offset=(0.12, -0.2), text_size=9, color=BLUE)
        prev = (x, 0.93)
        c.arrow(m.top, (x, 3.25))
        c.label(x, 3.45, "to $W_k, W_v, W_r$", size=8.5)
    c.label(5.3, 0.1, "one $\\mu \\in [0,1]$ per channel and per projection; the only state it needs is "
            "the previous token's $x$", size=9, style="italic", color=GREY)
    return c.done()


def wkv_state():
    """Lesson 06: the WKV as a recurrence: the state (a, b, p) enters each step, k_t and v_t come in,
    wkv_t goes out and the updated state moves on."""
    c = Canvas(12.0, 6.4, "WKV as a recurrence: the state is a numerator $a$, a denominator $b$, a max exponent $p$")
    c.box(0.85, 3.4, "empty state\n$a_0=0,\\ b_0=0$\n$p_0=-10^{38}$", w=1.35, h=0.95, kind="state", size=8.5)
    prev, prev_state = (1.53, 3.4), None
    for x, t in ((3.2, "1"), (6.9, "t"), (10.1, "t+1")):
        step = c.box(x, 3.4, f"step ${t}$", w=1.6, h=1.1, kind="state", weight="bold")
        c.box(x - 0.4, 1.95, f"$k_{{{t}}}$", w=0.7, h=0.42, kind="linear", size=9)
        c.box(x + 0.4, 1.95, f"$v_{{{t}}}$", w=0.7, h=0.42, kind="linear", size=9)
        c.arrow((x - 0.4, 2.16), step.at(-0.5, -1))
        c.arrow((x + 0.4, 2.16), step.at(0.5, -1))
        c.arrow(step.top, (x, 4.75))
        c.label(x, 4.95, f"$\\mathrm{{wkv}}_{{{t}}}$", size=10)
        if t == "t":
            c.label(4.95, 3.4, "· · ·", size=14)
            c.arrow((5.4, 3.4), step.left, "$a_{t-1}, b_{t-1}, p_{t-1}$", text_offset=(-0.55, 0.28),
                    text_size=9, color=GREEN)
        else:
            c.arrow(prev, step.left if t == "1" else step.left,
                    None if t == "1" else "$a_t, b_t, p_t$", text_offset=(0, 0.25), text_size=9, color=GREEN)
        prev = step.right
        if t == "1":
            c.arrow(step.right, (4.6, 3.4), color=GREEN)
    c.arrow(prev, (11.85, 3.4), color=GREEN)
    # the equations of one step, in the true (unscaled) quantities
    eq = ["out:     $\\mathrm{wkv}_t = (a_{t-1} + e^{u+k_t} v_t) \\,/\\, (b_{t-1} + e^{u+k_t})$",
          "update: $a_t = e^{w} a_{t-1} + e^{k_t} v_t, \\quad b_t = e^{w} b_{t-1} + e^{k_t}$",
          "stable:  the code stores $a e^{-p}$ and $b e^{-p}$, $p$ the largest exponent so far, so every exp sees ≤ 0"]
    for i, line in enumerate(eq):
        c.label(0.3, 1.25 - i * 0.36, line, size=9.5, ha="left")
    c.label(6.0, 5.55, "$w = -\\exp(\\mathtt{time\\_decay}) < 0$ shrinks the past by $e^w$ per token;  "
            "$u = \\mathtt{time\\_first}$ boosts the current token", size=9, color=GREY)
    return c.done()


def parallel_vs_serial():
    """Lesson 06: the same equations evaluated two ways: all T positions at once (GEMMs over T, then a WKV
    scan) for a prompt, or one token at a time with the state carried (decoding)."""
    c = Canvas(12.0, 5.6, "Parallel (GPT-like) and serial (RNN-like) modes compute the same numbers")
    c.region(0.2, 0.3, 5.8, 5.0, "parallel mode: a prompt of T tokens", kind="linear")
    c.region(6.2, 0.3, 11.8, 5.0, "serial mode: one token, then the next", kind="state")
    # parallel: a (T, C) block through matrices
    xin = c.box(3.0, 1.0, "$X$: (T, C), all tokens", w=2.3, h=0.45, kind="input", size=9)
    mm = c.box(3.0, 2.0, "one GEMM per projection\n$K = X W_k^\\top$, $V$, $R$: (T, C)", w=3.6, h=0.65,
               kind="linear", size=9)
    scan = c.box(3.0, 3.15, "WKV over t = 1..T (a scan in a kernel)", w=3.6, h=0.5, kind="state", size=9)
    out = c.box(3.0, 4.15, "$Y$: (T, C) + the final state", w=2.6, h=0.45, kind="input", size=9)
    c.arrow(xin.top, mm.bottom)
    c.arrow(mm.top, scan.bottom)
    c.arrow(scan.top, out.bottom)
    # serial: steps with the state
    xs = [7.3, 9.0, 10.7]
    prev = None
    for i, x in enumerate(xs):
        c.box(x, 1.0, f"$x_{i + 1}$ (C,)", w=1.0, h=0.42, kind="input", size=9)
        s = c.box(x, 2.55, "matvecs\n+ 1 WKV\nstep", w=1.1, h=1.05, kind="state", size=9)
        c.arrow((x, 1.21), s.bottom)
        c.arrow(s.top, (x, 3.95))
        c.label(x, 4.15, f"$y_{i + 1}$", size=10)
        if prev:
            c.arrow(prev.right, s.left, color=GREEN)
        prev = s
    c.label(9.0, 1.72, "state carried: $x_{t-1}$ and $(a, b, p)$ per layer", size=8.5, color=GREEN)
    c.label(6.0, 0.15, "same weights, same numbers (tests check parallel == serial); parallel is fast on a "
            "prompt, serial costs O(1) per new token", size=9, style="italic", color=GREY)
    return c.done()
