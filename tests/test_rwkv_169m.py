"""The real RWKV-4 169M shapes (random values): a BlinkDL bf16 .pth like
RWKV-4-Pile-169M-20220807-8023.pth loads, the config is inferred from the shapes, and greedy
decoding picks the same tokens as transformers on the same weights.

Plus the real thing, marked ``network``: greedy on RWKV/rwkv-4-169m-pile gives transformers'
own integration-test text."""
import numpy as np
import pytest

from factories import hf_rwkv_config, random_internal_params, real_169m_config, torch_state_dict
import tinyrwkv

N_NEW = 8


@pytest.mark.slow
def test_169m_bf16_pth_loads_and_greedy_equals_transformers(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from transformers import RwkvForCausalLM
    config = real_169m_config()
    path = tmp_path / "RWKV-4-Pile-169M-random.pth"
    params = random_internal_params(config, seed=5, dtype="bfloat16")     # float32 holding bf16 values
    torch.save(torch_state_dict(params, "blinkdl", "bfloat16"), path)     # stored in bf16, as the real file
    with torch.device("meta"):           # skips transformers' random init of 169M weights (~1 min)
        hf = RwkvForCausalLM(hf_rwkv_config(config))
    hf.load_state_dict(torch_state_dict(params, "hf"), strict=True, assign=True)
    hf.eval()
    del params

    model = tinyrwkv.load(path, progress=False)
    c = model.config
    assert (c.n_layer, c.n_embd, c.vocab_size, c.ffn_dim) == (12, 768, 50277, 3072)
    assert c.dtype == "bfloat16" and model.num_parameters() == 169_342_464

    prompt = [12092, 619, 1416, 310]                          # "Hello my name is"
    with torch.no_grad():
        ref = hf.generate(torch.tensor([prompt]), max_new_tokens=N_NEW, do_sample=False,
                          min_new_tokens=N_NEW)[0, len(prompt):].tolist()
    del hf
    logits, state = model.forward(prompt, full_output=False)
    ours = []
    for _ in range(N_NEW):
        top2 = np.sort(logits)[-2:]
        assert top2[1] - top2[0] > 1e-3, "near-tie: greedy would be ill-posed, pick another seed"
        ours.append(int(np.argmax(logits)))
        logits, state = model.step(ours[-1], state)
    assert ours == ref


@pytest.mark.network
def test_real_rwkv_4_169m_pile_greedy():
    model = tinyrwkv.load("RWKV/rwkv-4-169m-pile")
    tok = tinyrwkv.load_tokenizer("RWKV/rwkv-4-169m-pile")
    text = tinyrwkv.generate(model, tok, "Hello my name is", max_new_tokens=10, temperature=0)
    assert "Hello my name is" + text == "Hello my name is Jasmine and I am a newbie to the"
