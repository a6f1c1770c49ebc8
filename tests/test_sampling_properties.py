"""Property tests of the sampler (hypothesis): for any logits a model can produce (huge, tiny, -inf,
+inf) and any valid sampling parameters, the next-token distribution is a proper distribution and
the sampled id is one it gives a nonzero probability. Plus the limits: a tiny temperature is greedy,
a huge one is uniform, and extreme penalties stay finite."""
import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tinyrwkv.errors import ParameterError  # noqa: E402
from tinyrwkv.generation import check_sampling, next_token, token_distribution  # noqa: E402

LOGIT = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=64),     # anything finite, up to +-1.8e308
    st.floats(-50, 50),
    st.sampled_from([-np.inf, np.inf, 0.0, -1e38, 1e38, -3.4e38, 3.4e38, 1e-300]),
)
SAMPLING = st.fixed_dictionaries({
    "temperature": st.one_of(st.just(0.0), st.floats(min_value=1e-300, max_value=1e300),
                             st.sampled_from([1e-40, 1e-300, 5e-324, 1.0, 1e30, 1e308])),
    "top_p": st.one_of(st.floats(min_value=1e-12, max_value=1.0, exclude_min=False), st.just(1.0)),
    "top_k": st.integers(0, 12),
    "repetition_penalty": st.one_of(st.floats(min_value=1e-300, max_value=1e300), st.just(1.0)),
    "presence_penalty": st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.just(0.0)),
})
PROPERTY = settings(max_examples=150, deadline=None, derandomize=True, database=None)


@PROPERTY
@given(logits=st.lists(LOGIT, min_size=1, max_size=12), seen=st.lists(st.integers(0, 11), max_size=6),
       sampling=SAMPLING, seed=st.integers(0, 2 ** 64 - 1))
def test_the_distribution_is_proper_and_the_draw_possible(logits, seen, sampling, seed):
    logits = np.array(logits)
    seen = [i for i in seen if i < len(logits)]
    check_sampling(**sampling, seed=seed)                           # the parameters are valid ones
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # no overflow or NaN inside
        probs = token_distribution(logits, seen, **sampling)
        token = next_token(logits, seen, np.random.default_rng(seed), **sampling)
    assert probs.shape == logits.shape and probs.dtype == np.float64
    assert np.isfinite(probs).all() and (probs >= 0).all()
    assert abs(probs.sum() - 1.0) < 1e-9
    assert 0 <= token < len(logits) and probs[token] > 0
    # the most likely token after the penalties is never filtered out
    if sampling["temperature"] > 0 and np.isfinite(logits).all() and not seen:
        assert probs[int(np.argmax(logits))] > 0


@PROPERTY
@given(logits=st.lists(st.floats(-1e6, 1e6), min_size=2, max_size=12, unique=True), seed=st.integers(0, 1000))
def test_a_tiny_temperature_is_greedy_and_a_huge_one_uniform(logits, seed):
    logits = np.array(logits)
    best = int(np.argmax(logits))
    top, second = np.sort(logits)[::-1][:2]
    for t in (1e-40, 1e-300):
        if (top - second) / t > 800:                  # e^-800 is 0 in float64: exactly greedy
            assert next_token(logits, [], np.random.default_rng(seed), temperature=t) == best
            assert token_distribution(logits, [], t)[best] == 1.0
    flat = token_distribution(logits, [], 1e300)
    assert np.allclose(flat, 1 / len(logits))


def test_the_limits_by_hand():
    rng = np.random.default_rng(0)
    x = np.array([1e308, -1e308, 3.0, -np.inf])
    assert np.array_equal(token_distribution(x, [], 1e-40), [1, 0, 0, 0])
    # T = 1e308 turns the gaps 2e308 and 1e308 (beyond float64) into 2 and 1: softmax of (0, -2, -1)
    want = np.exp([0.0, -2.0, -1.0]) / np.exp([0.0, -2.0, -1.0]).sum()
    assert np.allclose(token_distribution(x, [], 1e308), [*want, 0.0], rtol=1e-12)
    # +inf logits share the mass; all -inf is uniform (no NaN either way)
    assert np.array_equal(token_distribution(np.array([np.inf, 0.0, np.inf]), []), [0.5, 0, 0.5])
    assert np.array_equal(token_distribution(np.full(4, -np.inf), []), [0.25] * 4)
    # an extreme repetition penalty sends a seen token to -inf (probability 0), not to NaN
    probs = token_distribution(np.array([-1e300, 0.0]), [0], 1.0, repetition_penalty=1e300)
    assert np.array_equal(probs, [0.0, 1.0])
    probs = token_distribution(np.array([5.0, 0.0]), [0], 1.0, presence_penalty=1e308)
    assert np.isfinite(probs).all() and probs[1] == 1.0
    assert next_token(np.array([5.0, 0.0, 1.0]), [0, 2], rng, 0.5, presence_penalty=-1e308) in (0, 2)
    with pytest.raises(ParameterError, match="logits contain NaN"):
        token_distribution(np.array([0.0, np.nan]), [])


def test_a_huge_temperature_never_cuts_the_most_likely_token():
    """Found by hypothesis: at temperature 2.2e16, logits [0, 1] scale to probabilities that are the
    same float, and top_p = 0.5 kept token 0. Ties are now ranked by the logits."""
    from tinyrwkv.generation import token_distribution
    probs = token_distribution([0.0, 1.0], temperature=2.2171567396285524e16, top_p=0.5)
    assert probs[1] == 1.0 and probs[0] == 0.0
