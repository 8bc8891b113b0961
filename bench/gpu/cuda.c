/* bench/gpu/cuda.c - the raw CUDA peer: the empty kernel launched directly, the same bytes
 * copied with cudaMemcpyAsync from pinned memory (see problem.h).
 * SPDX-License-Identifier: MIT
 */
#include <cuda_runtime_api.h>
#include <string.h>

#include "problem.h"

int bench_cuda_empty(cudaStream_t s, float *x);

int main(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
        fprintf(stderr, "bench_gpu_cuda: no CUDA device, skipped\n");
        return 0;
    }
    cudaStream_t s;
    cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
    float *arg;
    cudaMalloc((void **)&arg, 64);
    long tasks = GPU_TASKS, batch = 64;
    double best = 1e30;
    for (long rep = 0; rep < GPU_REPS + 1; rep++) {
        double t0 = gpu_now();
        for (long i = 0; i < tasks; i += batch) {
            cudaEvent_t ev[64];
            for (long j = 0; j < batch; j++) {
                bench_cuda_empty(s, arg);
                cudaEventCreateWithFlags(&ev[j], cudaEventDisableTiming);
                cudaEventRecord(ev[j], s);
            }
            for (long j = 0; j < batch; j++) { /* each kernel waited for, like a task */
                cudaEventSynchronize(ev[j]);
                cudaEventDestroy(ev[j]);
            }
        }
        double dt = (gpu_now() - t0) / (double)((tasks + batch - 1) / batch * batch);
        if (rep && dt < best)
            best = dt;
    }
    gpu_result("gpu.overhead", "cuda", "cuda empty kernel", best * 1e9, "ns/task");
    size_t bytes = GPU_BYTES;
    void *host, *dev;
    cudaMallocHost(&host, bytes);
    memset(host, 1, bytes);
    cudaMalloc(&dev, bytes);
    best = 1e30;
    for (long rep = 0; rep < GPU_REPS; rep++) {
        double t0 = gpu_now();
        cudaMemcpyAsync(dev, host, bytes, cudaMemcpyHostToDevice, s);
        cudaStreamSynchronize(s);
        double dt = gpu_now() - t0;
        if (dt < best)
            best = dt;
    }
    char param[64];
    snprintf(param, sizeof param, "cuda %zu MiB", bytes >> 20);
    gpu_result("gpu.h2d", "cuda", param, bytes / best / 1e9, "GB/s");
    cudaFreeHost(host);
    cudaFree(dev);
    cudaFree(arg);
    cudaStreamDestroy(s);
    return 0;
}
