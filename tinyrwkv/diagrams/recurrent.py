"""Diagrams of lessons 00-04: the course map, an unrolled RNN, the LSTM and GRU cells, the GNMT stack."""
from __future__ import annotations

from ._canvas import Canvas


def course_map():
    """Lesson 00: the lineage RNN -> ... -> RWKV-4 -> RWKV-5/6/7, and which lesson covers which step."""
    c = Canvas(13.0, 4.6, "The course: one lineage, one lesson per step")
    chain = [("RNN", "01", "one state $h_t$"), ("LSTM", "02", "+ a cell $c_t$, 4 gates"),
             ("GRU", "03", "2 gates, 1 state"), ("GNMT seq2seq", "04", "stacks + attention"),
             ("Transformer", "05", "attention only,\nKV cache"), ("RWKV-4", "06, 07", "attention as\na recurrence"),
             ("RWKV-5/6/7", "12", "matrix-valued\nstate")]
    boxes = []
    for i, (name, lesson, what) in enumerate(chain):
        x = 0.95 + i * 1.85
        kind = "state" if i < 4 else ("mix" if i == 4 else "linear")
        b = c.box(x, 3.35, name, w=1.5, h=0.55, kind=kind, weight="bold")
        c.label(x, 2.88, f"lesson{'s' if ',' in lesson else ''} {lesson}", size=9, color="#1f4e79")
        c.label(x, 2.45, what, size=8.5, color="#444444")
        boxes.append(b)
    for a, b in zip(boxes, boxes[1:]):
        c.arrow(a.right, b.left, shrink=2)
    rwkv = boxes[5]
    uses = [("08", "kernels:\nNumba CPU + CUDA"), ("09", "cost and memory\nvs length"),
            ("10", "training:\nWKV backward"), ("11", "side by side:\nsame ids, 3 models"),
            ("13", "compact weights")]
    for j, (lesson, what) in enumerate(uses):
        x = 4.0 + j * 1.95
        b = c.box(x, 0.95, f"{lesson}: {what}", w=1.8, h=0.7, kind="plain", size=8.5)
        c.arrow((rwkv.x, 2.15), b.top, color="#777777", bend=0.0, shrink=2)
    c.box(1.6, 0.95, "00: a tour\n(run the real 169M)", w=1.9, h=0.7, kind="input", size=8.5)
    c.label(7.9, 0.3, "using RWKV-4 (lessons 08-11, 13)", size=9, style="italic", color="#555555")
    return c.done()


def rnn_unrolled(steps=4):
    """Lesson 01: an Elman RNN folded (one cell with a loop) and unrolled over ``steps`` time steps."""
    c = Canvas(11.0, 4.2, "An RNN, folded and unrolled in time")
    # folded
    cell = c.box(1.2, 2.0, "cell\n$h=\\tanh(W_{ih}x+W_{hh}h)$", w=1.9, h=0.8, kind="state", size=8.5)
    c.box(1.2, 0.6, "$x_t$", w=0.6, h=0.4, kind="input")
    c.arrow((1.2, 0.8), cell.bottom)
    c.arrow(cell.top, (1.2, 3.25), "$h_t$", text_offset=(0.25, 0.05))
    c.arrow(cell.at(0.6, 1), cell.at(0.95, 1), bend=-2.2, color="#c0504d")
    c.label(2.4, 2.95, "$h_{t-1}$", color="#c0504d")
    c.label(2.75, 2.0, "=", size=20)
    # unrolled
    x0, dx = 3.9, 1.9
    prev = c.box(x0 - 0.55, 2.0, "$h_0$", w=0.5, h=0.4, kind="state")
    for t in range(steps):
        x = x0 + 0.8 + t * dx
        cell_t = c.box(x, 2.0, "cell", w=1.0, h=0.65, kind="state")
        c.box(x, 0.6, f"$x_{t + 1}$", w=0.6, h=0.4, kind="input")
        c.arrow((x, 0.8), cell_t.bottom)
        c.arrow(cell_t.top, (x, 3.25), f"$y_{t + 1} = h_{t + 1}$", text_offset=(0.0, 0.55), text_size=9)
        c.arrow(prev.right, cell_t.left, f"$h_{t}$", text_offset=(0, 0.18), color="#c0504d")
        prev = cell_t
    c.label(x0 + 0.8 + 1.5 * dx, 0.15, "the same weights $W_{ih}, W_{hh}$ at every step;"
            " step t waits for step t-1", size=9, style="italic", color="#444444")
    return c.done()


def lstm_cell():
    """Lesson 02: the LSTM cell: gates i, f, g, o from [x_t, h_{t-1}], the additive cell path c_{t-1} -> c_t."""
    c = Canvas(9.0, 5.4, "The LSTM cell")
    # the cell path along the top
    c.box(0.55, 4.2, "$c_{t-1}$", w=0.7, h=0.45, kind="state")
    mul_f = c.op(2.6, 4.2, "×")
    add = c.op(4.1, 4.2, "+")
    c.box(8.3, 4.2, "$c_t$", w=0.6, h=0.45, kind="state")
    c.arrow((0.9, 4.2), mul_f.left)
    c.arrow(mul_f.right, add.left)
    c.arrow(add.right, (8.0, 4.2))
    c.label(3.4, 4.65, "additive cell path: $\\partial c_t / \\partial c_{t-1} = \\mathrm{diag}(f_t)$", size=9,
            color="#38761d")
    # inputs along the bottom
    c.box(0.55, 0.6, "$h_{t-1}$", w=0.7, h=0.45, kind="state")
    c.box(0.55, 1.4, "$x_t$", w=0.7, h=0.45, kind="input")
    lin = c.box(1.85, 1.0, "$W_i x_t + W_h h_{t-1} + b$\n4H rows: i, f, g, o", w=1.65, h=0.75, kind="linear",
                size=8.5)
    c.arrow((0.9, 0.6), lin.at(-1, -0.5))
    c.arrow((0.9, 1.4), lin.at(-1, 0.5))
    gates = [("f", "$f_t=\\sigma$", 2.6), ("i", "$i_t=\\sigma$", 3.6), ("g", "$g_t=\\tanh$", 4.6),
             ("o", "$o_t=\\sigma$", 6.3)]
    boxes = {}
    for key, text, x in gates:
        boxes[key] = c.box(x, 2.3, text, w=0.85, h=0.45, kind="nonlin", size=9)
        c.path([lin.right, (x, lin.y), (x, 2.07)])
    # f multiplies the old cell; i * g is added to it
    c.arrow(boxes["f"].top, mul_f.bottom)
    mul_ig = c.op(4.1, 3.3, "×")
    c.path([boxes["i"].top, (3.6, 3.3), mul_ig.left])
    c.path([boxes["g"].top, (4.6, 3.3), mul_ig.right])
    c.arrow(mul_ig.top, add.bottom)
    # output: h_t = o * tanh(c_t)
    tanh = c.box(6.9, 3.45, "tanh", w=0.6, h=0.35, kind="nonlin", size=9)
    c.path([(6.9, 4.2), tanh.top])
    mul_o = c.op(6.9, 2.9, "×")
    c.arrow(tanh.bottom, mul_o.top)
    c.path([boxes["o"].top, (6.3, 2.9), mul_o.left])
    c.box(8.3, 2.9, "$h_t$", w=0.6, h=0.45, kind="state")
    c.arrow(mul_o.right, (8.0, 2.9))
    c.label(4.6, 0.25, "$c_t = f_t \\odot c_{t-1} + i_t \\odot g_t$,    $h_t = o_t \\odot \\tanh(c_t)$", size=10)
    return c.done()


def gru_cell():
    """Lesson 03: the GRU cell: reset r, update z, candidate n, and h_t as an interpolation."""
    c = Canvas(9.4, 5.2, "The GRU cell (torch's form: the reset multiplies $W_{hn} h_{t-1} + b_{hn}$)")
    blue, grey, orange = "#1f4e79", "#666666", "#b45f06"
    # the state line along the top: h_{t-1} -> x z -> + -> h_t
    c.box(0.6, 4.3, "$h_{t-1}$", w=0.7, h=0.45, kind="state")
    mul_z = c.op(6.1, 4.3, "×")
    add = c.op(7.5, 4.3, "+")
    c.box(8.8, 4.3, "$h_t$", w=0.6, h=0.45, kind="state")
    c.arrow((0.95, 4.3), mul_z.left)
    c.arrow(mul_z.right, add.left)
    c.arrow(add.right, (8.5, 4.3))
    # the two projections, each giving r, z, n rows, drawn as buses
    wh = c.box(1.9, 3.0, "$W_h h_{t-1} + b_h$", w=1.45, h=0.5, kind="linear", size=9)
    wi = c.box(1.9, 0.8, "$W_i x_t + b_i$", w=1.45, h=0.5, kind="linear", size=9)
    c.box(0.6, 0.8, "$x_t$", w=0.6, h=0.45, kind="input")
    c.arrow((0.9, 0.8), wi.left)
    c.path([(0.6, 4.07), (0.6, 3.0), wh.left])
    c.ax.plot([wh.right[0], 5.95], [3.0, 3.0], color=blue, lw=1.3, zorder=1)
    c.ax.plot([wi.right[0], 5.95], [0.8, 0.8], color=grey, lw=1.3, zorder=1)
    c.label(2.2, 3.35, "rows r, z, n", size=8, color=blue)
    c.label(2.2, 0.45, "rows r, z, n", size=8, color=grey)
    r = c.box(3.0, 1.9, "$r_t=\\sigma$", w=0.75, h=0.42, kind="nonlin", size=9)
    z = c.box(5.95, 1.9, "$z_t=\\sigma$", w=0.75, h=0.42, kind="nonlin", size=9)
    for g in (r, z):
        c.arrow((g.x - 0.15, 3.0), (g.x - 0.15, 2.11), color=blue)
        c.arrow((g.x - 0.15, 0.8), (g.x - 0.15, 1.69), color=grey)
    # candidate n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
    mul_r = c.op(4.3, 2.45, "×")
    c.arrow((4.3, 3.0), mul_r.top, color=blue)
    c.path([r.right, (3.85, 1.9), (3.85, 2.45), mul_r.left])
    n = c.box(4.3, 1.55, "$n_t=\\tanh$", w=0.8, h=0.42, kind="nonlin", size=9)
    c.arrow(mul_r.bottom, n.top)
    c.arrow((4.3, 0.8), n.bottom, color=grey)
    # h_t = z h_{t-1} + (1 - z) n
    c.path([(6.15, 2.11), (6.15, 4.13)])
    one_minus = c.box(7.5, 2.2, "$1-z_t$", w=0.7, h=0.38, kind="nonlin", size=9)
    c.path([z.right, (7.5, 1.9), one_minus.bottom])
    mul_n = c.op(7.5, 3.35, "×")
    c.arrow(one_minus.top, mul_n.bottom)
    c.path([n.right, (5.1, 1.55), (5.1, 3.6), (6.9, 3.6), (6.9, 3.35), mul_n.left], color=orange)
    c.label(5.6, 3.75, "$n_t$", size=9, color=orange)
    c.arrow(mul_n.top, add.bottom)
    c.label(4.7, 0.15, "$h_t = (1-z_t) \\odot n_t + z_t \\odot h_{t-1}$: every unit lies between $n_t$ and $h_{t-1}$",
            size=9.5)
    return c.done()


def gnmt_stack():
    """Lesson 04: GNMT: a bidirectional first encoder layer, residuals from layer 3, and attention queried
    by the bottom decoder layer whose context feeds every upper decoder layer."""
    c = Canvas(13.0, 6.6, "GNMT seq2seq: encoder stack, attention, decoder stack")
    enc_x = [2.9, 3.9, 4.9]
    ys = [1.4, 2.4, 3.4, 4.4]
    c.region(0.2, 0.2, 5.9, 5.25, "encoder (reads the source)", kind="state")
    c.region(7.6, 0.2, 12.8, 5.25, "decoder (writes the target, one token per step)", kind="state")
    names = ["layer 1: bi-LSTM\n(→ and ←, concatenated)", "layer 2: LSTM", "layer 3: LSTM\n+ residual",
             "layer 4: LSTM\n+ residual"]
    for i, x in enumerate(enc_x):
        c.box(x, 0.6, f"$x_{i + 1}$", w=0.5, h=0.35, kind="input")
        c.arrow((x, 0.78), (x, ys[0] - 0.21))
    for j, y in enumerate(ys):
        c.label(0.35, y, names[j], size=8, ha="left")
        for x in enc_x:
            c.box(x, y, "", w=0.7, h=0.42, kind="state")
        for a, b in zip(enc_x, enc_x[1:]):
            if j == 0:
                c.arrow((a + 0.35, y + 0.08), (b - 0.35, y + 0.08))
                c.arrow((b - 0.35, y - 0.08), (a + 0.35, y - 0.08), color="#c0504d")
            else:
                c.arrow((a + 0.35, y), (b - 0.35, y))
        if j:
            for x in enc_x:
                c.arrow((x, ys[j - 1] + 0.21), (x, y - 0.21))
        if j >= 2:   # the residual skips the layer: its input is added to its output
            c.path([(enc_x[-1] + 0.35, ys[j - 1] + 0.1), (5.55, ys[j - 1] + 0.1), (5.55, y - 0.1),
                    (enc_x[-1] + 0.35, y - 0.1)], color="#38761d", dashed=True)
    c.label(5.7, 3.9, "+", size=11, color="#38761d", ha="left")
    c.label(5.7, 2.9, "+", size=11, color="#38761d", ha="left")
    # attention over the top encoder layer's outputs
    att = c.box(6.75, 2.4, "attention:\nscores,\nsoftmax over\nsource positions", w=1.3, h=1.3, kind="mix",
                size=8.5)
    c.path([(enc_x[-1], ys[-1] + 0.21), (enc_x[-1], 4.95), (6.75, 4.95), att.top])
    c.label(6.2, 5.1, "source memory (top layer, every position)", size=8, ha="center")
    dec_x = [8.6, 10.2, 11.8]
    for i, x in enumerate(dec_x):
        c.box(x, 0.6, f"$y_{i}$" if i else "<s>", w=0.55, h=0.35, kind="input")
        c.arrow((x, 0.78), (x, ys[0] - 0.21))
        c.arrow((x, ys[-1] + 0.21), (x, 5.75))
        c.label(x, 5.95, f"softmax → $y_{i + 1}$", size=8.5)
    for j, y in enumerate(ys):
        for x in dec_x:
            c.box(x, y, "", w=0.7, h=0.42, kind="state")
        for a, b in zip(dec_x, dec_x[1:]):
            c.arrow((a + 0.35, y), (b - 0.35, y))
        if j:
            for x in dec_x:
                c.arrow((x, ys[j - 1] + 0.21), (x, y - 0.21))
    # the bottom decoder layer queries; the context goes to every upper layer
    c.path([(dec_x[0] - 0.35, ys[0]), (7.9, ys[0]), (7.9, 1.05), (6.75, 1.05), att.bottom], color="#1f4e79")
    c.label(7.0, 0.85, "query: bottom layer's $h_t$", size=8, color="#1f4e79")
    for y in ys[1:]:
        c.arrow(att.right, (dec_x[0] - 0.35, y - 0.1), color="#b45f06", width=1.0)
    c.label(7.95, 4.75, "context → layers 2-4", size=8, color="#b45f06")
    return c.done()
