"""tinyrwkv: from RNNs to RWKV-4 in small NumPy + Numba code.

The front door (re-exports only): ``load``, ``load_tokenizer``, ``generate``.
"""
__version__ = "0.1.0"
