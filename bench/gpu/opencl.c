/* bench/gpu/opencl.c - the raw OpenCL peer: the same kernel enqueued directly, the same bytes
 * written with clEnqueueWriteBuffer (see problem.h).
 * SPDX-License-Identifier: MIT
 */
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#include <string.h>

#include "problem.h"

static const char *SRC = "__kernel void empty(__global float *x) { }\n";

int main(void)
{
    cl_platform_id plat;
    cl_device_id dev;
    cl_uint n = 0;
    if (clGetPlatformIDs(1, &plat, &n) != CL_SUCCESS || !n ||
        clGetDeviceIDs(plat, CL_DEVICE_TYPE_ALL, 1, &dev, &n) != CL_SUCCESS || !n) {
        fprintf(stderr, "bench_gpu_opencl: no OpenCL device, skipped\n");
        return 0;
    }
    cl_int st;
    cl_context ctx = clCreateContext(NULL, 1, &dev, NULL, NULL, &st);
    cl_command_queue q = clCreateCommandQueue(ctx, dev, 0, &st);
    cl_program p = clCreateProgramWithSource(ctx, 1, &SRC, NULL, &st);
    if (clBuildProgram(p, 1, &dev, "", NULL, NULL) != CL_SUCCESS)
        return 1;
    cl_kernel k = clCreateKernel(p, "empty", &st);
    cl_mem arg = clCreateBuffer(ctx, CL_MEM_READ_WRITE, 64, NULL, &st);
    clSetKernelArg(k, 0, sizeof arg, &arg);
    long tasks = GPU_TASKS, batch = 64;
    double best = 1e30;
    size_t one = 1;
    for (long rep = 0; rep < GPU_REPS + 1; rep++) {
        double t0 = gpu_now();
        for (long i = 0; i < tasks; i += batch) {
            cl_event ev[64];
            for (long j = 0; j < batch; j++)
                clEnqueueNDRangeKernel(q, k, 1, NULL, &one, NULL, 0, NULL, &ev[j]);
            clFlush(q);
            for (long j = 0; j < batch; j++) { /* each kernel waited for, like a task */
                clWaitForEvents(1, &ev[j]);
                clReleaseEvent(ev[j]);
            }
        }
        double dt = (gpu_now() - t0) / (double)((tasks + batch - 1) / batch * batch);
        if (rep && dt < best)
            best = dt;
    }
    gpu_result("gpu.overhead", "opencl", "opencl empty kernel", best * 1e9, "ns/task");

    size_t bytes = GPU_BYTES;
    char *host = malloc(bytes);
    memset(host, 1, bytes);
    cl_mem buf = clCreateBuffer(ctx, CL_MEM_READ_WRITE, bytes, NULL, &st);
    best = 1e30;
    for (long rep = 0; rep < GPU_REPS; rep++) {
        double t0 = gpu_now();
        clEnqueueWriteBuffer(q, buf, CL_FALSE, 0, bytes, host, 0, NULL, NULL);
        clFinish(q);
        double dt = gpu_now() - t0;
        if (dt < best)
            best = dt;
    }
    char param[64];
    snprintf(param, sizeof param, "opencl %zu MiB", bytes >> 20);
    gpu_result("gpu.h2d", "opencl", param, bytes / best / 1e9, "GB/s");
    free(host);
    clReleaseMemObject(buf);
    clReleaseMemObject(arg);
    clReleaseKernel(k);
    clReleaseProgram(p);
    clReleaseCommandQueue(q);
    clReleaseContext(ctx);
    return 0;
}
