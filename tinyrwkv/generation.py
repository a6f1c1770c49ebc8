"""Text generation: run the prompt in parallel mode, then decode token by token in RNN mode.

    text = generate(model, tok, "Hello my name is", max_new_tokens=10, temperature=0)

Choosing the next token from the logits (V,) is a short pipeline of small functions, in order:

    apply_penalties   repetition_penalty (divide positive / multiply negative logits of tokens
                      already seen) and presence_penalty (subtract a constant from them)
    scale_by_temperature  (logits - max) / T; T = 0 means greedy (argmax), T < 1 sharpens, T > 1 flattens
    top_k_filter      keep the k largest logits (k = 0: keep all)
    top_p_filter      keep the smallest set of most likely tokens whose probability sums to >= p
    sample_from       draw from softmax of what is left

``token_distribution`` runs the whole pipeline and returns the probabilities (V,); ``next_token``
draws from them. Everything after the model is float64 with the max subtracted before scaling,
so any finite temperature > 0 (1e-40 or 1e30) and any valid penalty give a proper distribution.

"Seen" means every token of the prompt and of the text generated so far (as in Hugging Face's
``repetition_penalty``). Each sequence of a batch draws from its own random generator, seeded
with (seed, index), so a prompt gives the same text alone and inside a batch.
Generation stops after ``max_new_tokens``, at the tokenizer's end-of-text token, or when the text
contains one of the ``stop`` strings (which is cut off, with everything after it).
"""
from __future__ import annotations

import sys
from typing import Callable, Optional, Sequence, Union

import numpy as np

from .errors import ParameterError
from .nn import functional as F

REPLACEMENT_CHAR = "\ufffd"      # what decoding shows for half a UTF-8 character


# --------------------------------------------------------------------------- checks

SEED_LIMIT = 2 ** 64                     # seeds are unsigned 64-bit integers, as NumPy's generators take


def _is_integer(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_real(value) -> bool:
    return _is_integer(value) or isinstance(value, (float, np.floating))


def check_sampling(max_new_tokens=1, temperature=1.0, top_p=1.0, top_k=0,
                   repetition_penalty=1.0, presence_penalty=0.0, seed=None, stop=None) -> None:
    """Raises ParameterError (a ValueError) naming the first bad parameter, its rule and its value.

    Types are checked too: a bool, a string such as "3" or None is not a number; max_new_tokens,
    top_k and seed must be integers (1.5 is not). The rules:
        max_new_tokens  an integer >= 0            temperature     a finite number >= 0 (0 = greedy)
        top_p           a number in (0, 1]         top_k           an integer >= 0 (0 = no limit)
        repetition_penalty  a finite number > 0    presence_penalty  a finite number
        seed            None or an integer in [0, 2**64)
        stop            None, a non-empty string or a list of them
    """
    def bad(name, value, rule):
        kind = "" if _is_real(value) else f" ({type(value).__name__})"
        raise ParameterError(f"{name} must be {rule}, got {value!r:.60}{kind}")

    if not _is_integer(max_new_tokens) or max_new_tokens < 0:
        bad("max_new_tokens", max_new_tokens, "an integer >= 0")
    if not _is_real(temperature) or not np.isfinite(temperature) or temperature < 0:
        bad("temperature", temperature, "a finite number >= 0 (0 means greedy)")
    if not _is_real(top_p) or not (0 < top_p <= 1):
        bad("top_p", top_p, "a number in (0, 1]")
    if not _is_integer(top_k) or top_k < 0:
        bad("top_k", top_k, "an integer >= 0 (0 means no limit)")
    if not _is_real(repetition_penalty) or not np.isfinite(repetition_penalty) or repetition_penalty <= 0:
        bad("repetition_penalty", repetition_penalty, "a finite number > 0 (1 means none)")
    if not _is_real(presence_penalty) or not np.isfinite(presence_penalty):
        bad("presence_penalty", presence_penalty, "a finite number (0 means none)")
    if seed is not None and (not _is_integer(seed) or not 0 <= seed < SEED_LIMIT):
        bad("seed", seed, "an integer in [0, 2**64)")
    if stop is not None:
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, (list, tuple)) or not all(isinstance(x, str) and x for x in stops):
            bad("stop", stop, "a non-empty string or a list of non-empty strings")


# --------------------------------------------------------------------------- the sampling pipeline


def apply_penalties(logits, seen_ids, repetition_penalty=1.0, presence_penalty=0.0):
    """Lowers the logits of tokens in ``seen_ids`` (any iterable of ids; repeats count once).

    repetition_penalty p: logit / p where the logit is positive, logit * p where negative
    (so p > 1 always makes a seen token less likely). presence_penalty a: logit - a.
    logits: (V,). Returns a new float64 array (an extreme penalty may give -inf, never NaN);
    the input is not modified.
    """
    logits = np.array(logits, dtype=np.float64)
    if repetition_penalty == 1.0 and presence_penalty == 0.0:
        return logits
    ids = np.unique(np.fromiter(seen_ids, dtype=np.int64))
    if ids.size == 0:
        return logits
    picked = logits[ids]
    with np.errstate(over="ignore", under="ignore"):          # overflow to -inf is the right limit
        if repetition_penalty != 1.0:
            picked = np.where(picked > 0, picked / repetition_penalty, picked * repetition_penalty)
        logits[ids] = picked - presence_penalty
    return logits


def scale_by_temperature(logits, temperature: float):
    """(logits - max) / T in float64: 0 for the most likely token, <= 0 (or -inf) for the others.

    Subtracting the max first means nothing overflows however small T is (1e-40 gives a gap of
    -inf, i.e. greedy) and a huge T (1e30) flattens towards uniform. Two limits are kept exact:
    +inf logits share all the probability (the rest -> -inf); if every logit is -inf, all are
    equally likely (0). logits: (V,), no NaN. Returns (V,) float64.
    """
    x = np.asarray(logits, dtype=np.float64)
    top = x.max()
    if top == np.inf:
        return np.where(x == np.inf, 0.0, -np.inf)
    if top == -np.inf:
        return np.zeros_like(x)
    with np.errstate(over="ignore", under="ignore"):
        # halves first: x - top itself may overflow (1e308 - -1e308) although (x - top) / T is
        # small for a large T; scaling by 2 is exact, so otherwise this is (x - top) / T to the bit
        return (0.5 * x - 0.5 * top) / temperature * 2.0


def top_k_filter(logits, k: int):
    """Keeps the k largest logits, sets the rest to -inf. k = 0 (or >= V) keeps all. logits: (V,)."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth_largest = np.partition(logits, -k)[-k]
    return np.where(logits >= kth_largest, logits, -np.inf)


def _nucleus(probs, p: float, logits=None):
    """Boolean mask of the most likely tokens whose probability first reaches ``p`` (the token that
    crosses p is kept; the most likely token always is). probs: (V,) summing to 1. Tokens whose
    probabilities round to the same float (a huge temperature flattens them) are ranked by
    ``logits``, so the token with the largest logit is never the one cut."""
    if logits is None:
        order = np.argsort(-probs, kind="stable")                    # most likely first
    else:
        order = np.lexsort((-np.asarray(logits, np.float64), -probs))    # by probs, ties by logits
    before = np.cumsum(probs[order]) - probs[order]                  # mass of the tokens ahead of each
    keep = np.zeros(probs.shape, bool)
    keep[order[before < p]] = True                                   # always contains order[0]
    return keep


def top_p_filter(logits, p: float):
    """Nucleus filtering: keeps the most likely tokens until their probability reaches ``p``
    (the token that crosses p is kept; the most likely token always is), the rest -> -inf."""
    if p >= 1.0:
        return logits
    keep = _nucleus(F.softmax(scale_by_temperature(logits, 1.0)), p)
    return np.where(keep, logits, -np.inf)


def token_distribution(logits, seen_ids=(), temperature=1.0, top_p=1.0, top_k=0,
                       repetition_penalty=1.0, presence_penalty=0.0):
    """The probability of every next token, (V,) float64, after the whole pipeline: penalties,
    temperature (0: all mass on the argmax), top-k, top-p. Always a proper distribution: finite,
    >= 0, summing to 1, whatever the (valid) parameters and however large or -inf the logits.
    NaN logits raise ParameterError (a broken model, not a distribution)."""
    x = apply_penalties(logits, seen_ids, repetition_penalty, presence_penalty)
    if np.isnan(x).any():
        raise ParameterError(f"logits contain NaN (at id {int(np.flatnonzero(np.isnan(x))[0])}): "
                             f"the model's output is broken")
    if temperature == 0:
        probs = np.zeros_like(x)
        probs[int(np.argmax(x))] = 1.0
        return probs
    z = top_k_filter(scale_by_temperature(x, temperature), top_k)    # max 0, so exp(z) <= 1
    probs = np.exp(z)
    probs /= probs.sum()                                             # the sum is >= 1: the max gives e^0
    if top_p < 1.0:
        probs = np.where(_nucleus(probs, top_p, x), probs, 0.0)
        probs /= probs.sum()
    return probs


def sample_from(probs, rng: np.random.Generator) -> int:
    """Draws one id from a distribution (V,) by inverse CDF with one uniform number (the same draw
    for the same rng state, whatever V is). The id drawn always has probability > 0."""
    cdf = np.cumsum(probs)
    i = int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"))
    return min(i, int(np.flatnonzero(probs)[-1]))                    # rounding can step past the end


def sample_token(logits, rng: np.random.Generator) -> int:
    """Draws one id from softmax(logits) (float64, so tiny probabilities stay exact enough)."""
    return sample_from(F.softmax(scale_by_temperature(logits, 1.0)), rng)


def next_token(logits, seen_ids, rng, temperature=1.0, top_p=1.0, top_k=0,
               repetition_penalty=1.0, presence_penalty=0.0) -> int:
    """The whole pipeline for one sequence: penalties, then greedy or temperature/top-k/top-p sampling."""
    if temperature == 0:                     # greedy draws no random number
        return int(np.argmax(token_distribution(logits, seen_ids, 0, top_p, top_k, repetition_penalty,
                                                presence_penalty)))
    return sample_from(token_distribution(logits, seen_ids, temperature, top_p, top_k, repetition_penalty,
                                          presence_penalty), rng)


# --------------------------------------------------------------------------- streaming text


class TextStream:
    """Turns ids into text pieces that are safe to show: nothing is emitted while the decoded text
    ends in half a UTF-8 character, or in what might be the start of a ``stop`` string.

        s = TextStream(tok, stop=["\\n\\n"]); piece = s.push(id)   # "" while not yet stable
        s.text        the full text so far (a stop string and what follows it removed)
        s.stopped     True once a stop string appeared
        s.flush()     what is still held back, at the end of generation
    """

    def __init__(self, tokenizer, stop: Sequence[str] = ()):
        self.tokenizer, self.stop = tokenizer, [s for s in stop if s]
        self.ids: list = []
        self.text = ""          # decoded text, cut at a stop string
        self.emitted = 0        # characters of ``text`` already handed out
        self.stopped = False

    def _held_back(self, text: str) -> int:
        """How many trailing characters could still grow into a stop string."""
        for n in range(min(len(text), max((len(s) for s in self.stop), default=1) - 1), 0, -1):
            if any(s.startswith(text[-n:]) for s in self.stop):
                return n
        return 0

    def push(self, token_id: int) -> str:
        """Adds one id; returns the newly stable text (possibly "")."""
        if self.stopped:
            return ""
        self.ids.append(int(token_id))
        text = self.tokenizer.decode(self.ids)
        if text.endswith(REPLACEMENT_CHAR):
            return ""                        # wait for the rest of the character
        for s in self.stop:
            cut = text.find(s)
            if cut >= 0:
                text, self.stopped = text[:cut], True
        self.text = text
        stable = len(text) if self.stopped else len(text) - self._held_back(text)
        piece = text[self.emitted:stable] if stable > self.emitted else ""
        self.emitted = max(self.emitted, stable)
        return piece

    def flush(self) -> str:
        """At the end: the text held back (a partial stop string that never completed)."""
        if not self.stopped:
            self.text = self.tokenizer.decode(self.ids)
        piece = self.text[self.emitted:]
        self.emitted = len(self.text)
        return piece


def _stdout_writer(piece: str) -> None:
    sys.stdout.write(piece)
    sys.stdout.flush()


# --------------------------------------------------------------------------- the generate loop


def check_prompts(prompt) -> list:
    """A prompt (str) or a batch of them (a non-empty list or tuple of str) -> list of str;
    ParameterError naming the prompt that is empty or not a string."""
    batched = not isinstance(prompt, str)
    if batched and not isinstance(prompt, (list, tuple)):
        raise ParameterError(f"prompt must be a str or a list of str, got {type(prompt).__name__}")
    prompts = list(prompt) if batched else [prompt]
    if not prompts:
        raise ParameterError("prompt is an empty list: give at least one prompt")
    for i, p in enumerate(prompts):
        where = f"prompt[{i}]" if batched else "prompt"
        if not isinstance(p, str):
            raise ParameterError(f"{where} must be a str, got {type(p).__name__}")
        if p == "":
            raise ParameterError(f"{where} is empty: give some text to continue")
    return prompts


def generate(model, tokenizer, prompt: Union[str, Sequence[str]], max_new_tokens: int = 100,
             temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0,
             repetition_penalty: float = 1.0, presence_penalty: float = 0.0,
             seed: Optional[int] = None, stop: Union[str, Sequence[str], None] = None,
             stream: Union[bool, Callable[[str], None], None] = None):
    """Continues ``prompt`` with up to ``max_new_tokens`` tokens; returns the new text only.

    prompt: a string, or a list of strings (a batch: they decode together, B tokens per step;
        returns a list of strings). stream: True writes text to stdout as it appears, a callable
        receives each piece; one prompt only. See the module docstring for the sampling parameters.
    """
    check_sampling(max_new_tokens, temperature, top_p, top_k, repetition_penalty, presence_penalty, seed, stop)
    prompts = check_prompts(prompt)
    batched = not isinstance(prompt, str)
    if not (stream is None or isinstance(stream, bool) or callable(stream)):
        raise ParameterError(f"stream must be True, False, None or a function of one str, got {type(stream).__name__}")
    if stream and len(prompts) > 1:
        raise ParameterError("stream works with one prompt; got a batch of " + str(len(prompts)))
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    write = _stdout_writer if stream is True else (stream or None)

    # 1. Each prompt in parallel mode (prompts differ in length), then one batched state.
    rngs = [np.random.default_rng(None if seed is None else [seed, i]) for i in range(len(prompts))]
    seen, first_logits, states = [], [], []
    for p in prompts:
        ids = tokenizer.encode(p)
        if not ids:
            raise ParameterError(f"prompt {p!r:.60} encodes to no tokens")
        logits, state = model.forward(ids, full_output=False)        # (V,), the state after the prompt
        seen.append(list(ids))
        first_logits.append(logits)
        states.append(state)
    state = type(states[0]).stack(states)                          # the model's own state class
    logits = np.stack(first_logits)                                 # (B, V)

    # 2. Decode in RNN mode: B sequences, one token each per step.
    streams = [TextStream(tokenizer, stops) for _ in prompts]
    done = [False] * len(prompts)
    eot = getattr(tokenizer, "eot_id", None)
    sampling = dict(temperature=temperature, top_p=top_p, top_k=top_k,
                    repetition_penalty=repetition_penalty, presence_penalty=presence_penalty)
    for n in range(max_new_tokens):
        chosen = np.zeros(len(prompts), dtype=np.int64)
        for b in range(len(prompts)):
            if done[b]:
                continue                                             # keeps decoding a filler token
            chosen[b] = next_token(logits[b], seen[b], rngs[b], **sampling)
            if eot is not None and chosen[b] == eot:
                done[b] = True
                continue
            seen[b].append(int(chosen[b]))
            piece = streams[b].push(chosen[b])
            if write and piece:
                write(piece)
            done[b] = streams[b].stopped
        if all(done) or n == max_new_tokens - 1:
            break
        logits, state = model.step(chosen, state)                    # (B, V)

    texts = []
    for s in streams:
        tail = s.flush()
        if write and tail:
            write(tail)
        texts.append(s.text)
    return texts if batched else texts[0]
