"""Diagrams of lessons 08-11: the kernel's threads, RWKV's state vs a KV cache, one training step, and
the same ids through three models."""
from __future__ import annotations

from ._canvas import Canvas

GREEN, BLUE, RED, GREY = "#38761d", "#1f4e79", "#c0504d", "#666666"


def kernel_threads(B=2, C=4, T=5):
    """Lesson 08: the WKV kernel's layout: one thread per (batch b, channel c), each looping over time
    with its own (a, b, p) in registers."""
    c = Canvas(11.0, 5.8, "The WKV kernel: one thread per (batch, channel); the time loop is inside each thread")
    s = 0.42
    x0, y0 = 1.5, 0.9
    c.label(x0 - 0.55, y0 + B * C * s / 2, "threads: (batch, channel)", size=9, rotation=90)
    for i in range(B * C):
        bi, ci = divmod(i, C)
        y = y0 + (B * C - 1 - i) * s + s / 2
        c.box(x0 + 0.45, y, f"b={bi}, c={ci}", w=0.9, h=s * 0.8, kind="state" if bi == 0 else "mix", size=8)
        for t in range(T):
            c.box(x0 + 1.35 + t * 0.75, y, "", w=0.6, h=s * 0.6, kind="linear")
        c.arrow((x0 + 1.05, y), (x0 + 1.3 + T * 0.75, y), color=GREY, width=0.8)
    for t in range(T):
        c.label(x0 + 1.35 + t * 0.75, y0 + B * C * s + 0.2, f"t={t}", size=8.5)
    c.label(x0 + 1.1 + T * 0.38, y0 + B * C * s + 0.55, "time →  (sequential inside the thread)", size=9)
    c.label(x0 + 1.1 + T * 0.38, y0 - 0.3, "all B·C threads run at once: channels never talk to each other",
            size=9, style="italic", color=GREY)
    # what one thread does
    tx = 8.35
    c.region(6.35, 0.6, 10.85, 4.95, "one thread (b, c)", kind="state")
    lines = ["$a, b, p \\leftarrow 0, 0, -10^{38}$  (registers)",
             "for t in 0 .. T-1:",
             "    read $k[b,t,c]$, $v[b,t,c]$",
             "    $\\mathrm{wkv} = (a + e^{u+k} v) / (b + e^{u+k})$",
             "    write $y[b,t,c]$",
             "    $a, b, p \\leftarrow$ decay by $e^w$, add $e^k v$, $e^k$",
             "write the final $a, b, p$ (the state)"]
    for i, line in enumerate(lines):
        c.label(6.55, 4.35 - i * 0.5, line, size=9, ha="left", family="monospace" if "for" in line else None)
    c.label(tx, 0.85, "$w[c]$, $u[c]$: read once per thread", size=8.5, color=GREY)
    return c.done()


def state_vs_kv_cache():
    """Lesson 09: what each model keeps to predict token T+1: RWKV's fixed state vs a KV cache that grows."""
    c = Canvas(11.0, 5.2, "What a model keeps between tokens: a fixed state vs a growing cache")
    c.label(2.75, 4.55, "RWKV-4: the same size at every T", size=10, weight="bold")
    c.label(8.25, 4.55, "GPT: a KV cache, one k and v per past token", size=10, weight="bold")
    for j, T in enumerate((4, 8, 16)):
        y = 3.6 - j * 1.25
        c.label(0.35, y, f"T={T}", size=9, ha="left")
        c.box(1.45, y, "$x_{t-1}$ ×2", w=0.85, h=0.45, kind="state", size=8.5)
        c.box(2.5, y, "$a, b, p$", w=1.0, h=0.45, kind="state", size=8.5)
        c.label(3.85, y, "per layer, (C,) each", size=8.5, color=GREY)
        c.label(5.7, y, f"T={T}", size=9, ha="left")
        w = 0.27
        for t in range(T):
            c.box(6.5 + t * w, y + 0.12, "", w=w * 0.9, h=0.2, kind="cache", rounded=False)
            c.box(6.5 + t * w, y - 0.12, "", w=w * 0.9, h=0.2, kind="linear", rounded=False)
    c.label(6.25, 3.72, "k", size=8, color=RED)
    c.label(6.25, 3.48, "v", size=8, color=BLUE)
    c.label(2.75, 0.45, "5 vectors of C numbers per layer:\nmemory O(1) in T, time per token O(1)", size=9)
    c.label(8.25, 0.45, "2 T vectors of C numbers per layer:\nmemory O(T), time per token O(T)", size=9)
    c.ax.plot([5.5, 5.5], [0.2, 4.8], color="#bbbbbb", lw=1)
    return c.done()


def training_step():
    """Lesson 10: one training step: the forward pass caches what the backward needs, the backward runs
    back through the blocks and the WKV recurrence, and Adam updates every parameter."""
    c = Canvas(12.0, 5.2, "One training step: forward (caching), backward (through WKV), Adam")
    xs = [1.0, 2.9, 4.9, 6.9, 8.9, 10.8]
    names = [("ids\n(B, T)", "input"), ("embedding", "linear"), ("blocks:\ntime-mix + WKV,\nchannel-mix", "state"),
             ("ln_out,\nhead", "linear"), ("logits\n(B, T, V)", "input"), ("cross-\nentropy", "nonlin")]
    fwd_y, bwd_y = 3.5, 1.7
    boxes = [c.box(x, fwd_y, n, w=1.55 if i == 2 else 1.3, h=0.95, kind=k, size=9) for i, (x, (n, k)) in
             enumerate(zip(xs, names))]
    for a, b in zip(boxes, boxes[1:]):
        c.arrow(a.right, b.left, color=BLUE)
    c.label(6.0, 4.3, "forward: keep each layer's inputs and the WKV state entering every step", size=9,
            color=BLUE)
    grads = [("$\\partial L/\\partial E$", "linear"), ("$\\partial L/\\partial$ block\nparams", "state"),
             ("$\\partial L/\\partial W_{head}$", "linear"), ("$\\partial L/\\partial\\,$logits\n= softmax − onehot",
                                                              "nonlin")]
    gb = [c.box(x, bwd_y, n, w=1.55 if i == 1 else 1.45, h=0.85, kind=k, size=8.5)
          for i, (x, (n, k)) in enumerate(zip(xs[1:5], grads))]
    c.path([boxes[-1].bottom, (xs[-1], bwd_y), gb[-1].right], color=RED)
    for a, b in zip(gb[::-1], gb[::-1][1:]):
        c.arrow(a.left, b.right, color=RED)
    c.label(6.0, 0.95, "backward: the chain rule in reverse; WKV's gradient runs its recurrence from t = T-1 "
            "down to 0 (gw, gu, gk, gv)", size=9, color=RED)
    adam = c.box(1.0, bwd_y, "Adam:\nupdate\nevery\nparameter", w=1.3, h=1.1, kind="mix", size=8.5)
    c.arrow(gb[0].left, adam.right, color=RED)
    c.label(6.0, 0.35, "each step: loss → gradients (checked against finite differences) → parameters move",
            size=9, style="italic", color=GREY)
    return c.done()


def side_by_side():
    """Lesson 11: the same token ids through RWKV-4, a GPT with a KV cache and an LSTM, and what each
    carries from one token to the next."""
    c = Canvas(11.5, 5.0, "The same ids, three models: what each carries to the next token")
    rows = [("RWKV-4", "state", "$x_{t-1}$ (×2) and $(a, b, p)$ per layer", "fixed size"),
            ("GPT + KV cache", "cache", "k and v of every past token, per layer", "grows with t"),
            ("LSTM", "state", "$h_t$ and $c_t$ per layer", "fixed size")]
    c.box(0.9, 2.3, "ids\n$t = 1..T$", w=1.1, h=0.9, kind="input", size=9)
    for i, (name, kind, carries, size) in enumerate(rows):
        y = 3.8 - i * 1.5
        m = c.box(3.0, y, name, w=1.8, h=0.6, kind=kind, weight="bold", size=9.5)
        c.arrow((1.45, 2.3), m.left, color=GREY)
        c.arrow(m.right, (4.6, y))
        c.label(4.75, y + 0.13, "next-token logits", size=8.5, ha="left")
        c.label(4.75, y - 0.17, f"carries: {carries}  ({size})", size=8.5, ha="left", color=GREEN)
        c.arrow(m.at(0.5, 1), m.at(-0.5, 1), bend=0.9, color=GREEN, width=1.0)
    c.label(5.75, 0.3, "feeding one id at a time, each model's logits match its own full-sequence pass",
            size=9, style="italic", color=GREY)
    return c.done()
