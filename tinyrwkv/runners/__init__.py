"""Runners: where a model's arrays live and which kernels run it.

The NumPy models in ``tinyrwkv.models`` are the readable reference (arrays on the host). A device
runner keeps the weights and the state on the GPU and runs every op as a kernel; both are tested
equal. Importing this package touches no GPU.

    cuda_rwkv4   DeviceRWKV: RWKV-4 on numba.cuda (a real GPU, or the CUDA simulator)
"""
