"""Side by side: the same text through RWKV, a Transformer with a KV cache and an LSTM, one token at a time.

    from tinyrwkv.compare import compare
    result = compare("tiny", prompt="The fox ", length=512)
    print(result.table())                   # state floats and ms/token as the context grows; the outputs
    result.plot(path="compare.png")         # the same as a figure

    tinyrwkv compare "The fox " --length 512 --peers gpt,lstm --figure compare.png

Every model reads the same token ids in serial mode, through its own ``step``: RWKV's ``step``
(RNN mode), the GPT's ``step`` (a KV cache: keys and values of every earlier token), the LSTM's
``step`` (h and c per layer). For every token we record

    floats carried   every number in the state object after that token (counted from the arrays
                     themselves): RWKV 5 L C and the LSTM 2 L H stay flat; the KV cache is 2 L t C
    time             wall-clock time of that one step (the GPT's grows with t: it attends to t keys)
    loss             -log p(next token), teacher-forced, in nats

and then each model continues the prompt greedily (its outputs, side by side).

The peers are sized like the RWKV: with the tiny shipped RWKV (char-level, small_tales) they are
the GPT and LSTM of ``tinyrwkv.recipes`` (the same parameter count), shipped trained
(tinyrwkv/data/peer_*.npz: the tiny RWKV's recipe for 400 steps, by scripts/train_compare_peers.py;
the shipped RWKV trained longer, and the table says so), or trained here for ``train_steps``. Another
char-level RWKV of the tales' vocabulary gets peers of its own size, trained here. With any other RWKV checkpoint (e.g.
the real 169M) the peers have its width, depth and vocabulary but random weights: their times
and state sizes are real, their text is noise, and the table says "untrained".

The RWKV-7 column ("rwkv7"): the shipped tiny RWKV-7 ("tiny7": the tiny RWKV-4's size and recipe)
beside a small_tales char model; beside any other checkpoint, the real RWKV-7 168M when it is
downloaded (``tinyrwkv download rwkv7-pile-168m``) and the model reads the same GPT-NeoX ids, else an
RWKV-7 of the model's width, depth and vocabulary with random weights.
"""
from __future__ import annotations

import pathlib
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from .errors import ParameterError, TinyRWKVError

PEERS = ("gpt", "lstm", "rwkv7")
# The peers of the shipped tiny RWKV-4, trained offline (scripts/train_compare_peers.py)
PEER_FILES = {name: pathlib.Path(__file__).resolve().parent / "data" / f"peer_{name}.npz" for name in ("gpt", "lstm")}
DEFAULT_TRAIN_STEPS = 200          # when they do not fit (another char-level RWKV), they train here
PEER_LABELS = {"gpt": "GPT + KV cache", "lstm": "LSTM", "rwkv7": "RWKV-7"}
DEFAULT_PROMPTS = {"tiny": "The fox ", "real": "The Eiffel Tower is located in the city of"}


# --------------------------------------------------------------------------- one token at a time


def count_floats(state) -> int:
    """Every number held in a model's state: arrays inside dicts, lists, tuples or dataclasses
    (RWKVState, the GPT's {"position", "kv"}, the LSTM's [(h, c), ...]). Plain ints (a position
    counter) are not floats carried and do not count."""
    if isinstance(state, np.ndarray):
        return int(state.size)
    if isinstance(state, dict):
        return sum(count_floats(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return sum(count_floats(v) for v in state)
    if hasattr(state, "__dataclass_fields__"):
        return sum(count_floats(getattr(state, f)) for f in state.__dataclass_fields__)
    return 0


class Stepper:
    """One model behind one interface: ``reset()``, then ``step(token) -> logits (V,)``, ``state``.

    Works for tinyrwkv's inference ``RWKV`` (``step(int, state) -> (V,)``) and for every
    ``LanguageModel`` of the lineage (``step(ids (B,), state) -> (B, V)``), with a batch of one.
    """

    def __init__(self, name: str, model, note: str = ""):
        from .models.rwkv import RWKVBase

        self.name, self.model, self.note = name, model, note
        self.is_rwkv = isinstance(model, RWKVBase)           # RWKV-4 .. 7 inference models: step(int, state)
        self.reset()

    def reset(self):
        self.state = self.model.init_state(1)

    def step(self, token: int) -> np.ndarray:
        if self.is_rwkv:
            logits, self.state = self.model.step(int(token), self.state)
            return logits
        logits, self.state = self.model.step(np.array([token]), self.state)
        return logits[0]

    def num_parameters(self) -> int:
        return int(self.model.num_parameters())


def stream(stepper: Stepper, ids) -> dict:
    """Feeds ``ids`` (T,) one token at a time. Returns per token: "ms" (that step's time),
    "floats" (state floats after it) and "loss" (nats; -log p of the next id, NaN after the last)."""
    from .nn import functional as F

    ids = np.asarray(ids)
    T = len(ids)
    ms, floats, loss = np.zeros(T), np.zeros(T, np.int64), np.full(T, np.nan)
    stepper.reset()
    stepper.step(ids[0])                                  # warm-up: first-call allocations, JIT
    stepper.reset()
    for t in range(T):
        t0 = time.perf_counter()
        logits = stepper.step(ids[t])
        ms[t] = 1000 * (time.perf_counter() - t0)
        floats[t] = count_floats(stepper.state)
        if t + 1 < T:
            loss[t] = -F.log_softmax(logits.astype(np.float64))[ids[t + 1]]
    return {"ms": ms, "floats": floats, "loss": loss}


def greedy_continuation(stepper: Stepper, prompt_ids, new_tokens: int) -> list:
    """The prompt through ``step``, then ``new_tokens`` greedy (argmax) tokens; returns the new ids."""
    stepper.reset()
    for t in prompt_ids:
        logits = stepper.step(t)
    out = []
    for _ in range(new_tokens):
        out.append(int(np.argmax(logits)))
        logits = stepper.step(out[-1])
    return out


# --------------------------------------------------------------------------- the peers


def is_tiny_char_model(model, tokenizer) -> bool:
    """True when ``model`` reads the ids of the small_tales CharVocab (the shipped tiny RWKV does),
    so peers can be trained on the same corpus with the same ids."""
    from .data.corpus import load_corpus

    vocab = load_corpus().vocab
    sample = "The fox and the well.\n"
    return (model.config.vocab_size == vocab.size and getattr(tokenizer, "vocab_size", None) == vocab.size
            and list(tokenizer.encode(sample)) == vocab.encode(sample).tolist())


def _say(progress: bool, message: str) -> None:
    """A progress line on stderr (the table goes to stdout)."""
    if progress:
        print(message, file=sys.stderr, flush=True)


def matched_peers(rwkv, seed: int = 0) -> dict:
    """name -> a fresh GPT and LSTM of ``rwkv``'s parameter count (``recipes.matched_gpt`` with its
    width and depth; ``recipes.matched_lstm``), as the training-curves comparison builds them."""
    from . import recipes

    c, target = rwkv.config, rwkv.num_parameters()
    return {"gpt": recipes.matched_gpt(c.vocab_size, target, dim=c.n_embd, n_heads=4 if c.n_embd % 4 == 0 else 1,
                                       n_layers=c.n_layer, seed=seed),
            "lstm": recipes.matched_lstm(c.vocab_size, target, seed=seed)}


def shipped_peer(name: str, model):
    """Loads the shipped trained weights of peer ``name`` into ``model`` (``training.load_checkpoint``:
    a plain .npz, no pickle, every name and shape checked). Returns the note for the table, or None
    when nothing fits (no file, or the model is not the shipped tiny RWKV's size)."""
    from .training import load_checkpoint

    path = PEER_FILES[name]
    if not path.is_file():
        return None
    try:
        meta = load_checkpoint(path, model)
    except (ValueError, TinyRWKVError):             # another size: this RWKV is not the shipped one
        return None
    extra = meta.get("extra") or {}
    return (f"shipped, trained offline ({extra.get('recipe', {}).get('steps', '?')}-step recipe of the tiny RWKV-4, "
            f"best val {extra.get('val', float('nan')):.2f} nats/char at step {extra.get('best_step', '?')})")


def build_peers(rwkv, peers=PEERS, trainable: bool = False, train_steps=None, seed: int = 0,
                progress: bool = False) -> dict:
    """name -> Stepper for each of ``peers`` ("gpt", "lstm", "rwkv7"), sized like ``rwkv``.

    ``trainable`` (the rwkv reads small_tales' char ids): the GPT and LSTM of ``matched_peers``. With
    ``train_steps=None`` they are the shipped ones (tinyrwkv/data/peer_*.npz, trained offline by
    scripts/train_compare_peers.py with the tiny RWKV-4's recipe) when their size fits, else trained
    here for DEFAULT_TRAIN_STEPS; ``train_steps=N`` trains them here N steps (batches of 8 x 64 chars,
    Adam with recipes.PEAK_LR; 0 = untrained). Not ``trainable``: the same width, depth and
    vocabulary, random weights.
    """
    from .models.lstm import LSTMLanguageModel
    from .models.transformer import GPT

    c = rwkv.config
    unknown = sorted(set(peers) - set(PEERS))
    if unknown:
        raise ParameterError(f"unknown peer(s) {unknown}: choose from {list(PEERS)}")
    out = {}
    if "rwkv7" in peers:
        out["rwkv7"] = rwkv7_peer(rwkv, trainable, seed)
        peers = [p for p in peers if p != "rwkv7"]
    if trainable:
        from . import recipes
        from .data.corpus import load_corpus

        models = matched_peers(rwkv, seed)
        lr = {"gpt": recipes.PEAK_LR["GPT"], "lstm": recipes.PEAK_LR["LSTM"]}
        for name in peers:
            model = models[name]
            note = shipped_peer(name, model) if train_steps is None else None
            steps = DEFAULT_TRAIN_STEPS if train_steps is None else train_steps
            if note:
                _say(progress, f"{PEER_LABELS[name]}: {note}")
            elif steps:
                _say(progress, f"{PEER_LABELS[name]}: training {model.num_parameters():,} parameters for {steps} steps "
                               f"here ...")
                t0 = time.perf_counter()
                curve = recipes.train_with_curve(model, load_corpus(), steps=steps, peak_lr=lr[name], batch_size=8,
                                                 seq_len=64, eval_every=steps, seed=seed, progress=False)
                note = f"trained {steps} steps here, val {curve['val'][-1][1]:.2f} nats/char"
                _say(progress, f"{PEER_LABELS[name]}: {note} ({time.perf_counter() - t0:.0f} s)")
            else:
                note = "untrained (random weights)"
            out[name] = Stepper(PEER_LABELS[name], model, note)
        return out
    rng = np.random.default_rng(seed)
    for name in peers:
        if name == "gpt":
            heads = max(1, c.n_embd // 64) if c.n_embd % 64 == 0 else 1
            model = GPT(c.vocab_size, dim=c.n_embd, n_heads=heads, n_layers=c.n_layer, ffn_dim=c.ffn_dim, rng=rng)
        else:
            model = LSTMLanguageModel(c.vocab_size, hidden_size=c.n_embd, num_layers=c.n_layer, rng=rng)
        out[name] = Stepper(PEER_LABELS[name], model, "untrained (random weights): time and state only")
    return out


def rwkv7_peer(rwkv, tiny: bool, seed: int = 0) -> Stepper:
    """The RWKV-7 column: the shipped tiny RWKV-7 beside a small_tales char model; else the real
    RWKV-7 168M when downloaded and ``rwkv`` reads its GPT-NeoX ids (vocabulary within its 50,304);
    else an RWKV-7 of ``rwkv``'s width, depth and vocabulary with random weights."""
    from .checkpoints import hub
    from .loading import load
    from .models.rwkv import RWKVConfig
    from .models.rwkv7 import RWKV7

    backend = getattr(rwkv, "backend", "auto")
    if tiny:
        model = load("tiny7", backend=backend, progress=False)
        return Stepper("RWKV-7", model, "shipped, trained offline (the tiny RWKV-7: scripts/train_tiny_rwkv7.py, "
                                        "the tiny RWKV-4's recipe and size)")
    c = rwkv.config
    real = hub.named_file("rwkv7-pile-168m")
    if real is not None and c.vocab_size >= 50277:
        model = load(real, backend=backend, progress=False)
        if model.config.vocab_size >= c.vocab_size:
            return Stepper("RWKV-7", model, "the real RWKV-7 Pile 168M")
    head = 64 if c.n_embd % 64 == 0 else c.n_embd
    config = RWKVConfig(n_layer=c.n_layer, n_embd=c.n_embd, vocab_size=c.vocab_size, ffn_dim=c.ffn_dim, version=7,
                        head_size=head, decay_lora=32, a_lora=32, v_lora=32, gate_lora=32)
    return Stepper("RWKV-7", RWKV7.random(config, seed=seed, backend=backend),
                   "untrained (random weights): time and state only")


def sequence_ids(tokenizer, prompt: str, length: int) -> np.ndarray:
    """``length`` token ids: the prompt, then held-out small_tales text (its validation split, wrapping
    around to the start of the corpus when more is needed). Every model reads exactly these ids.
    A tokenizer that cannot spell the tales (a char vocabulary without their letters) gets the
    prompt repeated instead."""
    from .data.corpus import load_corpus

    corpus = load_corpus()
    text = prompt + corpus.vocab.decode(corpus.val_ids)
    try:
        ids = list(tokenizer.encode(text))
        while len(ids) < length:
            text += "\n\n" + corpus.text
            ids = list(tokenizer.encode(text))
    except ValueError:
        prompt_ids = list(tokenizer.encode(prompt))
        ids = prompt_ids * (length // len(prompt_ids) + 1)
    return np.asarray(ids[:length], dtype=np.int64)


# --------------------------------------------------------------------------- the comparison


@dataclass
class Comparison:
    """What ``compare`` measured. ``runs[name]`` = ``stream``'s dict; ``outputs[name]`` = continuation."""

    model_name: str
    prompt: str
    steppers: dict
    runs: dict
    outputs: dict
    length: int
    info: dict = field(default_factory=dict)

    def checkpoints(self) -> list:
        """Context lengths the table reports: 1, 16, 64, 256, ... up to the sequence length."""
        points = [1] + [4 ** k for k in range(2, 12) if 4 ** k < self.length] + [self.length]
        return sorted(set(points))

    def ms_at(self, name: str, t: int) -> float:
        """Median time per token of ``name`` over the steps around context length t (a window of
        t/4 steps, at least 8): single steps are noisy."""
        ms = self.runs[name]["ms"]
        half = max(4, t // 8)
        lo, hi = max(0, t - 1 - half), min(len(ms), t + half)
        return float(np.median(ms[lo:hi]))

    def rows(self) -> list:
        """One dict per checkpoint: {"tokens": t, name: (floats, ms), ...}."""
        return [{"tokens": t, **{name: (int(run["floats"][t - 1]), self.ms_at(name, t))
                                 for name, run in self.runs.items()}} for t in self.checkpoints()]

    def table(self) -> str:
        """The side-by-side table as text: state floats and ms/token against the context length,
        then per model: parameters, mean loss on the sequence, and its continuation of the prompt."""
        names = list(self.runs)
        width = max(24, *(len(n) + 2 for n in names))
        lines = [f"Side by side on {self.length} tokens (the prompt, then held-out small_tales text), "
                 f"one token at a time; RWKV = {self.model_name}",
                 "state = floats carried after that many tokens (4 bytes each in float32); "
                 "ms = time of one step (median near that point)",
                 "tokens seen".rjust(11) + "".join(n.rjust(width) for n in names),
                 " " * 11 + "".join("state floats     ms/tok".rjust(width) for _ in names)]
        for row in self.rows():
            lines.append(f"{row['tokens']:11d}" + "".join(
                f"{row[n][0]:>{width - 10},d}{row[n][1]:10.3f}" for n in names))
        lines.append("")
        for name, stepper in self.steppers.items():
            run = self.runs[name]
            lines.append(f"{name}: {stepper.num_parameters():,} parameters"
                         + (f", {stepper.note}" if stepper.note else "")
                         + f"; mean loss on the sequence {np.nanmean(run['loss']):.3f} nats/token"
                         + f"; {run['ms'].sum() / 1000:.2f} s in all")
        lines.append("")
        lines.append(f"Greedy continuations of {self.prompt!r}:")
        for name, text in self.outputs.items():
            lines.append(f"  {name:>{width - 2}}: {self.prompt + text!r}")
        return "\n".join(lines)

    def plot(self, path=None, fig=None):
        """Three panels against the context length: floats carried, ms per token (running median),
        and the running mean loss. Returns the Figure (pyplot-free unless ``fig`` is given)."""
        from .experiments._plotting import figure

        fig = figure(fig, (15.0, 4.4))
        ax_state, ax_time, ax_loss = fig.subplots(1, 3)
        t = np.arange(1, self.length + 1)
        for name, run in self.runs.items():
            ax_state.plot(t, run["floats"], label=name)
            half = max(4, self.length // 64)                 # a centred window: single steps are noisy
            med = np.array([np.median(run["ms"][max(0, i - half):i + half + 1]) for i in range(self.length)])
            ax_time.plot(t, med, label=name)
            loss = run["loss"][:-1]
            note = self.steppers[name].note
            ax_loss.plot(t[:-1], np.cumsum(loss) / np.arange(1, len(loss) + 1),
                         label=name + (f" ({note})" if note else ""))
        ax_state.set_yscale("log")
        ax_state.set_title("State carried between tokens")
        ax_state.set_ylabel("floats in the state (log scale)")
        ax_time.set_title(f"Time per token (median of {2 * max(4, self.length // 64) + 1} neighbouring steps)")
        ax_time.set_ylabel("ms per token")
        ax_time.set_ylim(bottom=0)
        ax_loss.set_title("Next-token loss, running mean")
        ax_loss.set_ylabel("cross-entropy (nats/token)")
        for ax in (ax_state, ax_time, ax_loss):
            ax.set_xlabel("tokens seen (context length t)")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
        fig.suptitle(f"The same {self.length} tokens through each model, one step at a time (RWKV = {self.model_name})")
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=110)
        return fig


def compare(model="tiny", prompt: str | None = None, peers=PEERS, length: int = 512, new_tokens: int = 60,
            train_steps=None, seed: int = 0, backend: str = "auto", tokenizer=None,
            progress: bool = False) -> Comparison:
    """Runs ``compare``'s measurement (see the module docstring).

    model: "tiny", a checkpoint path / repo id, or an RWKV already loaded (then pass ``tokenizer``);
    prompt: text (default: "The fox " for the tiny model, the Eiffel Tower sentence otherwise);
    peers: any of "gpt", "lstm"; length: tokens in the timed sequence (>= 2); new_tokens: greedy
    continuation length; train_steps: None = the shipped trained peers for the tiny model (see
    ``build_peers``), N = train them here N steps (0 = untrained). ``progress``: say what runs, on stderr.
    """
    from .loading import load
    from .tokenizer import load_tokenizer

    if not isinstance(length, (int, np.integer)) or length < 2:
        raise ParameterError(f"length must be an integer >= 2, got {length!r}")
    if not isinstance(new_tokens, (int, np.integer)) or new_tokens < 0:
        raise ParameterError(f"new_tokens must be an integer >= 0, got {new_tokens!r}")
    if train_steps is not None and (not isinstance(train_steps, (int, np.integer)) or train_steps < 0):
        raise ParameterError(f"train_steps must be an integer >= 0, got {train_steps!r}")
    peers = list(peers)
    unknown = sorted(set(peers) - set(PEERS))
    if unknown:
        raise ParameterError(f"unknown peer(s) {unknown}: choose from {list(PEERS)}")

    rwkv_note = ""
    if isinstance(model, str):
        name = "tiny shipped RWKV-4" if model == "tiny" else f"RWKV-4 {model}"
        rwkv_note = "the shipped checkpoint" if model == "tiny" else "loaded checkpoint"
        _say(progress, f"loading the {name} ...")
        tokenizer = tokenizer or load_tokenizer(model if model == "tiny" else _tokenizer_source(model))
        model = load(model, backend=backend, progress=progress)
    else:
        if tokenizer is None:
            raise ParameterError("compare: pass tokenizer= together with a loaded model")
        name = f"RWKV-4 {model.config.n_layer} x {model.config.n_embd}"
    tokenizer = load_tokenizer(tokenizer)
    tiny = is_tiny_char_model(model, tokenizer)
    if prompt is None:
        prompt = DEFAULT_PROMPTS["tiny" if tiny else "real"]
    if prompt == "":
        raise ParameterError("the prompt is empty: give some text to continue")
    prompt_ids = list(tokenizer.encode(prompt))

    steppers = {"RWKV-4": Stepper("RWKV-4", model, rwkv_note)}
    steppers.update({s.name: s for s in build_peers(model, peers, trainable=tiny, train_steps=train_steps,
                                                    seed=seed, progress=progress).values()})
    ids = sequence_ids(tokenizer, prompt, length)
    runs, outputs = {}, {}
    for n, s in steppers.items():
        t0 = time.perf_counter()
        _say(progress, f"{n}: {length} tokens one at a time, then {new_tokens} greedy ones ...")
        runs[n] = stream(s, ids)
        outputs[n] = tokenizer.decode(greedy_continuation(s, prompt_ids, new_tokens))
        _say(progress, f"{n}: done in {time.perf_counter() - t0:.1f} s")
    return Comparison(name, prompt, steppers, runs, outputs, length,
                      info={"tiny": tiny, "train_steps": train_steps if tiny else 0})


def _tokenizer_source(model_source: str):
    """The tokenizer beside a checkpoint: its folder, the folder of its file, or its repo id."""
    import pathlib

    path = pathlib.Path(model_source).expanduser()
    if path.is_dir():
        return path
    if path.is_file():
        return path.parent
    return model_source


# --------------------------------------------------------------------------- the CLI subcommand


def add_arguments(p) -> None:
    """``tinyrwkv compare``'s options (registered in tinyrwkv/cli.py)."""
    p.add_argument("prompt", nargs="?", default=None,
                   help="text to continue (default: 'The fox ' with the tiny model, the Eiffel Tower "
                        "sentence otherwise)")
    p.add_argument("--model", default="tiny", help="'tiny' (shipped), or a repo id / folder / checkpoint file")
    p.add_argument("--tokenizer", default=None, help="tokenizer.json or folder (default: beside the model)")
    p.add_argument("--peers", default="gpt,lstm,rwkv7", help="comma-separated: gpt, lstm, rwkv7 (default: all)")
    p.add_argument("--length", type=int, default=512, help="tokens in the timed sequence (default 512)")
    p.add_argument("--new-tokens", type=int, default=60, help="greedy continuation length (default 60)")
    p.add_argument("--train-steps", type=int, default=None,
                   help="train the tiny model's peers here for N steps instead of loading the shipped trained "
                        "ones (0 = untrained; default: the shipped ones)")
    p.add_argument("--seed", type=int, default=0, help="seed of the peers' initialisation and training")
    p.add_argument("--backend", default="auto", help="WKV kernels: auto, numba, numpy, cuda")
    p.add_argument("--figure", default=None, help="also save the three-panel figure to this .png")


def run_from_args(args) -> int:
    """Runs ``compare`` from parsed arguments and prints the table; ParameterError = a usage error (exit 2)."""
    import pathlib

    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    if not peers:
        raise ParameterError("--peers is empty: give any of gpt, lstm, rwkv7 (comma-separated)")
    unknown = sorted(set(peers) - set(PEERS))
    if unknown:
        raise ParameterError(f"--peers: unknown peer(s) {unknown}; choose from {', '.join(PEERS)}")
    for option, value, low in (("--length", args.length, 2), ("--new-tokens", args.new_tokens, 0),
                               ("--train-steps", args.train_steps, 0)):
        if value is not None and value < low:
            raise ParameterError(f"{option} must be >= {low}, got {value}")
    if args.figure is not None:
        folder = pathlib.Path(args.figure).expanduser().resolve().parent
        if not folder.is_dir():
            raise ParameterError(f"--figure: folder {folder} does not exist")
    from .tokenizer import load_tokenizer
    tokenizer = load_tokenizer(args.tokenizer) if args.tokenizer else None
    result = compare(args.model, args.prompt, peers, args.length, args.new_tokens, args.train_steps,
                     args.seed, args.backend, tokenizer=tokenizer, progress=True)
    print(result.table())
    if args.figure is not None:
        result.plot(path=args.figure)
        print(f"figure: {args.figure}")
    return 0
