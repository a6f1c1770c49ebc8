"""Offline tasks and corpora (no downloads, CPU-sized).

copy_task    the copy / long-range memory task with a delay dial (vanishing gradients, what gates fix)
corpus       a character-level LM corpus shipped with the package (small_tales.txt, ours), its
             vocabulary, train/val split, batch sampler and baselines (unigram, bigram)
"""
from .copy_task import CopyTask  # noqa: F401
from .corpus import CharCorpus, CharVocab, load_corpus  # noqa: F401
