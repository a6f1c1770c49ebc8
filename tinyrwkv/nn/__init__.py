"""Building blocks with forward and backward, each defined once.

functional  the math ops (sigmoid, softmax, layer_norm, cross_entropy, linear ...), backward beside forward
module      Module: parameters + gradients by dotted name, state dicts, shape checks
layers      Linear, Embedding, LayerNorm
optim       SGD, Adam, clip_grad_norm
gradcheck   finite-difference gradients in float64
attention   scaled dot-product and multi-head attention, masks
"""
from . import attention, functional  # noqa: F401
from .gradcheck import gradcheck, numerical_gradient, relative_error  # noqa: F401
from .layers import Embedding, LayerNorm, Linear  # noqa: F401
from .module import Module, check_float, check_shape, check_tokens, compare_shapes  # noqa: F401
from .optim import SGD, Adam, clip_grad_norm  # noqa: F401
