/* include/dagger/errors.h - the one error table of dagger.
 *
 * Every fallible call returns 0 (or a count) on success and a negative DAGGER_E* on failure.
 * Codes with a POSIX meaning equal -errno; dagger's own codes start at -4000.
 * SPDX-License-Identifier: MIT
 */
#ifndef DAGGER_ERRORS_H
#define DAGGER_ERRORS_H

#include <errno.h>

/* X(name, value, sentence) */
#define DAGGER_ERROR_MAP(X)                                                                        \
    X(EINVAL, -EINVAL, "invalid argument")                                                         \
    X(ENOMEM, -ENOMEM, "out of memory")                                                            \
    X(ECANCELED, -ECANCELED, "task was cancelled")                                                 \
    X(EBUSY, -EBUSY, "handles are still alive")                                                    \
    X(EDEADLK, -EDEADLK, "the wait would deadlock")                                                \
    X(ERANGE, -ERANGE, "value out of range")                                                       \
    X(ENOSYS, -ENOSYS, "not supported by this build")                                              \
    X(EIO, -EIO, "input/output error")                                                             \
    X(ETIMEDOUT, -ETIMEDOUT, "timed out")                                                          \
    X(ENOENT, -ENOENT, "no such file or directory")                                                \
    X(EACCES, -EACCES, "permission denied")                                                        \
    X(ENOSPC, -ENOSPC, "no space left on device")                                                  \
    X(ETASK, -4001, "task body failed")                                                            \
    X(EUPSTREAM, -4002, "an input of this task failed")                                            \
    X(ESCOPE, -4003, "no processor satisfies the scope")                                           \
    X(ECLOSED, -4004, "stream or ring is closed")                                                  \
    X(EPEER, -4005, "remote rank lost")                                                            \
    X(ETYPE, -4006, "value has the wrong kind")                                                    \
    X(ESTATE, -4007, "call not allowed in this state")                                             \
    X(E2BIG, -E2BIG, "value too large")                                                            \
    X(ENAMETOOLONG, -ENAMETOOLONG, "name or path too long")                                        \
    X(ESINGULAR, -4008, "the matrix is singular")                                                  \
    X(ENOTPD, -4009, "the matrix is not positive definite")

enum dagger_error {
    DAGGER_OK = 0,
#define DAGGER_ERR_ENUM_(name, value, text) DAGGER_##name = (value),
    DAGGER_ERROR_MAP(DAGGER_ERR_ENUM_)
#undef DAGGER_ERR_ENUM_
};

#endif /* DAGGER_ERRORS_H */
