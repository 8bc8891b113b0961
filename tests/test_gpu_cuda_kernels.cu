// tests/test_gpu_cuda_kernels.cu - the CUDA kernels of tests/test_gpu_cuda.c.
// SPDX-License-Identifier: MIT
#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

__global__ static void inc(const double *x, double *y, size_t n)
{
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < n)
        y[i] = x[i] + 1.0;
}

__global__ static void fault(double *p) { *p = 1.0; }

extern "C" int test_cuda_inc(cudaStream_t s, const double *x, double *y, size_t n)
{
    inc<<<(unsigned)((n + 255) / 256), 256, 0, s>>>(x, y, n);
    return cudaGetLastError() == cudaSuccess ? 0 : -1;
}

extern "C" int test_cuda_fault(cudaStream_t s)
{
    fault<<<1, 1, 0, s>>>((double *)(uintptr_t)0x10);
    return 0;
}
