"""Experiments behind the figures: each module has ``make_figures(outdir, fast=False) -> dict``.

gradient_flow    gradient norm against time distance for RNN / LSTM / GRU (vanishing gradients)
attention_cost   time and memory against sequence length, KV cache, attention heatmaps

They are scripts, not tests: ``python -m tinyrwkv.figures`` runs them all, or one with
``python -m tinyrwkv.experiments.gradient_flow --out figures/``. Nothing is imported here, so
importing one experiment never pulls in another.
"""
