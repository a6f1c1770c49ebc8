"""Text generation: run the prompt in parallel mode, then decode token by token in RNN mode.

    text = generate(model, tok, "Hello my name is", max_new_tokens=10, temperature=0)

Choosing the next token from the logits (V,) is a short pipeline of small functions, in order:

    apply_penalties   repetition_penalty (divide positive / multiply negative logits of tokens
                      already seen) and presence_penalty (subtract a constant from them)
    temperature       logits / T; T = 0 means greedy (argmax), T < 1 sharpens, T > 1 flattens
    top_k_filter      keep the k largest logits (k = 0: keep all)
    top_p_filter      keep the smallest set of most likely tokens whose probability sums to >= p
    sample_token      draw from softmax of what is left

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

from .nn import functional as F

REPLACEMENT_CHAR = "\ufffd"      # what decoding shows for half a UTF-8 character


# --------------------------------------------------------------------------- checks


def check_sampling(max_new_tokens=1, temperature=1.0, top_p=1.0, top_k=0,
                   repetition_penalty=1.0, presence_penalty=0.0) -> None:
    """Raises ValueError naming the first bad parameter and its value."""
    def bad(name, value, rule):
        raise ValueError(f"{name} must be {rule}, got {value!r}")

    if not isinstance(max_new_tokens, (int, np.integer)) or isinstance(max_new_tokens, bool) or max_new_tokens < 0:
        bad("max_new_tokens", max_new_tokens, "an integer >= 0")
    if not np.isfinite(temperature) or temperature < 0:
        bad("temperature", temperature, ">= 0 (0 means greedy)")
    if not (0 < top_p <= 1):
        bad("top_p", top_p, "in (0, 1]")
    if not isinstance(top_k, (int, np.integer)) or isinstance(top_k, bool) or top_k < 0:
        bad("top_k", top_k, "an integer >= 0 (0 means no limit)")
    if not np.isfinite(repetition_penalty) or repetition_penalty <= 0:
        bad("repetition_penalty", repetition_penalty, "> 0 (1 means none)")
    if not np.isfinite(presence_penalty):
        bad("presence_penalty", presence_penalty, "a finite number (0 means none)")


# --------------------------------------------------------------------------- the sampling pipeline


def apply_penalties(logits, seen_ids, repetition_penalty=1.0, presence_penalty=0.0):
    """Lowers the logits of tokens in ``seen_ids`` (any iterable of ids; repeats count once).

    repetition_penalty p: logit / p where the logit is positive, logit * p where negative
    (so p > 1 always makes a seen token less likely). presence_penalty a: logit - a.
    logits: (V,). Returns a new array; the input is not modified.
    """
    logits = np.array(logits, dtype=np.float32)
    if repetition_penalty == 1.0 and presence_penalty == 0.0:
        return logits
    ids = np.unique(np.fromiter(seen_ids, dtype=np.int64))
    if ids.size == 0:
        return logits
    picked = logits[ids]
    if repetition_penalty != 1.0:
        picked = np.where(picked > 0, picked / repetition_penalty, picked * repetition_penalty)
    logits[ids] = picked - presence_penalty
    return logits


def top_k_filter(logits, k: int):
    """Keeps the k largest logits, sets the rest to -inf. k = 0 (or >= V) keeps all. logits: (V,)."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth_largest = np.partition(logits, -k)[-k]
    return np.where(logits >= kth_largest, logits, -np.inf)


def top_p_filter(logits, p: float):
    """Nucleus filtering: keeps the most likely tokens until their probability reaches ``p``
    (the token that crosses p is kept; the most likely token always is), the rest -> -inf."""
    if p >= 1.0:
        return logits
    probs = F.softmax(logits.astype(np.float64))
    order = np.argsort(-probs, kind="stable")                        # most likely first
    before = np.cumsum(probs[order]) - probs[order]                  # mass of the tokens ahead of each
    keep = order[before < p]                                         # always contains order[0]
    out = np.full_like(logits, -np.inf)
    out[keep] = logits[keep]
    return out


def sample_token(logits, rng: np.random.Generator) -> int:
    """Draws one id from softmax(logits) (float64, so tiny probabilities stay exact enough)."""
    probs = F.softmax(logits.astype(np.float64))
    # inverse CDF with one uniform number: the same draw for the same rng state, whatever V is
    i = int(np.searchsorted(np.cumsum(probs), rng.random() * probs.sum(), side="right"))
    return min(i, len(probs) - 1)


def next_token(logits, seen_ids, rng, temperature=1.0, top_p=1.0, top_k=0,
               repetition_penalty=1.0, presence_penalty=0.0) -> int:
    """The whole pipeline for one sequence: penalties, then greedy or temperature/top-k/top-p sampling."""
    logits = apply_penalties(logits, seen_ids, repetition_penalty, presence_penalty)
    if temperature == 0:
        return int(np.argmax(logits))
    logits = top_k_filter(logits / np.float32(temperature), top_k)
    logits = top_p_filter(logits, top_p)
    return sample_token(logits, rng)


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
    check_sampling(max_new_tokens, temperature, top_p, top_k, repetition_penalty, presence_penalty)
    batched = not isinstance(prompt, str)
    prompts = list(prompt) if batched else [prompt]
    if not prompts:
        raise ValueError("prompt is an empty list: give at least one prompt")
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise ValueError(f"prompt[{i}] must be a str, got {type(p).__name__}")
        if p == "":
            raise ValueError(f"prompt{f'[{i}]' if batched else ''} is empty: give some text to continue")
    if stream and len(prompts) > 1:
        raise ValueError("stream works with one prompt; got a batch of " + str(len(prompts)))
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    write = _stdout_writer if stream is True else (stream or None)

    # 1. Each prompt in parallel mode (prompts differ in length), then one batched state.
    rngs = [np.random.default_rng(None if seed is None else [seed, i]) for i in range(len(prompts))]
    seen, first_logits, states = [], [], []
    for p in prompts:
        ids = tokenizer.encode(p)
        if not ids:
            raise ValueError(f"prompt {p!r} encodes to no tokens")
        logits, state = model.forward(ids, full_output=False)        # (V,), the state after the prompt
        seen.append(list(ids))
        first_logits.append(logits)
        states.append(state)
    state = type(states[0]).stack(states)                            # RWKVState, or the device runner's
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
