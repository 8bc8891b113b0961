/* include/dagger.hpp - a thin C++17 layer over dagger.h: lambdas, RAII handles, exceptions.
 *
 * dagger::spawn(ctx, f, args...) spawns any callable whose parameters are numbers, bool,
 * strings, pointers or dagger_value_t; an argument that is a dagger::task is a dependency and
 * f receives its value. task<T>::get() waits and returns the result, or throws dagger::error
 * carrying the code and the root-cause message. The C API stays the primary one: every C call
 * remains available, and .get() of each wrapper gives the C handle. docs/cpp.md explains it.
 * SPDX-License-Identifier: MIT
 */
#ifndef DAGGER_HPP
#define DAGGER_HPP

#include <cstring>
#include <exception>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>

#include "dagger.h"

namespace dagger
{

/** A failed dagger call or task: code() is the DAGGER_E* code, what() the message (for a task,
 *  its error message, which names the root cause of an upstream failure). */
class error : public std::runtime_error
{
  public:
    error(int code, const std::string &msg) : std::runtime_error(msg), code_(code) {}
    int code() const noexcept { return code_; }
    const char *name() const noexcept { return dagger_err_name(code_); }

  private:
    int code_;
};

/** Throw dagger::error for rc != 0, with dagger_last_errmsg() (or the code's sentence). */
inline void check(int rc)
{
    if (rc == 0)
        return;
    const char *m = dagger_last_errmsg();
    throw error(rc, m && *m ? m : dagger_strerror(rc));
}

namespace detail
{
void release_boxes(dagger_ctx_t *ctx);
}

/** An open context; the destructor drains and closes it, or leaves it open when task handles
 *  are still held (a destructor cannot report; dagger_ctx_close printed why). close() closes it
 *  early and throws dagger::error instead. */
class context
{
  public:
    explicit context(int num_threads = 0)
    {
        dagger_opts_t o;
        dagger_opts_init(&o);
        o.num_threads = num_threads;
        check(dagger_ctx_open(&ctx_, &o));
    }
    explicit context(const dagger_opts_t &o) { check(dagger_ctx_open(&ctx_, &o)); }
    context(const context &) = delete;
    context &operator=(const context &) = delete;
    context(context &&o) noexcept : ctx_(std::exchange(o.ctx_, nullptr)) {}
    ~context()
    {
        /* With handles still held (DAGGER_EBUSY) the context stays open: freeing it would
         * leave those handles pointing into freed memory. */
        if (ctx_ && dagger_ctx_close(ctx_) == 0)
            detail::release_boxes(ctx_);
    }
    void close()
    {
        if (ctx_) {
            check(dagger_ctx_close(ctx_));
            detail::release_boxes(std::exchange(ctx_, nullptr));
        }
    }
    dagger_ctx_t *get() const noexcept { return ctx_; }
    int num_threads() const noexcept { return dagger_ctx_num_threads(ctx_); }

  private:
    dagger_ctx_t *ctx_ = nullptr;
};

namespace detail
{

/* The exception being handled, as the task's failure: a dagger::error keeps its code, bad_alloc
 * is DAGGER_ENOMEM, anything else DAGGER_ETASK with its what(). Call inside a catch block. */
inline int fail_with_current_exception(dagger_tc_t *tc)
{
    try {
        throw;
    } catch (const error &e) {
        return dagger_fail(tc, e.code(), "%s", e.what());
    } catch (const std::bad_alloc &) {
        return dagger_fail(tc, DAGGER_ENOMEM, "out of memory (std::bad_alloc)");
    } catch (const std::exception &e) {
        return dagger_fail(tc, DAGGER_ETASK, "%s", e.what());
    } catch (...) {
        return dagger_fail(tc, DAGGER_ETASK, "a C++ exception that is not a std::exception");
    }
}

inline dagger_ctx_t *raw(dagger_ctx_t *c) { return c; }
inline dagger_ctx_t *raw(const context &c) { return c.get(); }

template <class T> inline constexpr bool always_false = false;

/* A C++ result or argument value to a dagger_value_t. */
template <class T> dagger_value_t to_value(const T &x)
{
    using D = std::decay_t<T>;
    if constexpr (std::is_same_v<D, dagger_value_t>)
        return x;
    else if constexpr (std::is_same_v<D, bool>)
        return dagger_bool(x);
    else if constexpr (std::is_integral_v<D> || std::is_enum_v<D>)
        return dagger_i64(static_cast<int64_t>(x));
    else if constexpr (std::is_floating_point_v<D>)
        return dagger_f64(static_cast<double>(x));
    else if constexpr (std::is_same_v<D, std::string>)
        return dagger_str(x.c_str());
    else if constexpr (std::is_same_v<D, const char *> || std::is_same_v<D, char *>)
        return dagger_str(x);
    else if constexpr (std::is_same_v<D, dagger_task_t *>)
        return dagger_taskv(x);
    else if constexpr (std::is_pointer_v<D>)
        return dagger_ptr(x);
    else if constexpr (std::is_same_v<D, std::nullptr_t>)
        return dagger_nil();
    else
        static_assert(always_false<D>, "dagger: this argument type has no dagger_value_t form "
                                       "(use numbers, bool, strings, pointers, tasks)");
}

/* Argument i of a running task as the parameter type P. */
template <class P> P from_arg(const dagger_args_t *a, size_t i)
{
    using D = std::remove_cv_t<std::remove_reference_t<P>>;
    if constexpr (std::is_same_v<D, dagger_value_t>)
        return *dagger_arg(a, i);
    else if constexpr (std::is_same_v<D, bool>)
        return dagger_arg_bool(a, i);
    else if constexpr (std::is_integral_v<D> || std::is_enum_v<D>)
        return static_cast<D>(dagger_arg_i64(a, i));
    else if constexpr (std::is_floating_point_v<D>)
        return static_cast<D>(dagger_arg_f64(a, i));
    else if constexpr (std::is_same_v<D, std::string>) {
        const char *s = dagger_arg_str(a, i);
        return s ? std::string(s) : std::string();
    } else if constexpr (std::is_same_v<D, std::string_view> || std::is_same_v<D, const char *>) {
        const char *s = dagger_arg_str(a, i);
        return s ? D(s) : D("");
    } else if constexpr (std::is_pointer_v<D>)
        return static_cast<D>(dagger_arg_ptr(a, i));
    else
        static_assert(always_false<D>, "dagger: this parameter type cannot be read from a task "
                                       "argument (use numbers, bool, strings, pointers)");
}

/* A task result to a dagger_value_t; strings are copied for the running task. */
template <class R> dagger_value_t from_result(dagger_tc_t *tc, R &&r)
{
    using D = std::decay_t<R>;
    if constexpr (std::is_same_v<D, std::string>)
        return dagger_str_copy(tc, r.c_str());
    else if constexpr (std::is_same_v<D, std::string_view>)
        return dagger_blob_copy(tc, r.data(), r.size());
    else if constexpr (std::is_same_v<D, const char *> || std::is_same_v<D, char *>)
        return dagger_str_copy(tc, r);
    else
        return to_value(r);
}

/* The parameter list of a callable (a function, a function pointer, a non-generic lambda). */
template <class T> struct sig : sig<decltype(&T::operator())> {
};
template <class R, class... A> struct sig<R (*)(A...)> {
    using args = std::tuple<A...>;
};
template <class R, class... A> struct sig<R(A...)> : sig<R (*)(A...)> {
};
template <class C, class R, class... A> struct sig<R (C::*)(A...) const> : sig<R (*)(A...)> {
};
template <class C, class R, class... A> struct sig<R (C::*)(A...)> : sig<R (*)(A...)> {
};
template <class C, class R, class... A>
struct sig<R (C::*)(A...) const noexcept> : sig<R (*)(A...)> {
};
template <class C, class R, class... A> struct sig<R (C::*)(A...) noexcept> : sig<R (*)(A...)> {
};
template <class R, class... A> struct sig<R (*)(A...) noexcept> : sig<R (*)(A...)> {
};

/* Heap copies of callables that are not trivially copyable, listed per context until their
 * body runs: a task that never runs (a failed input, a cancel) has its copy freed when the
 * context closes (release_callables). Guarded by boxes_lock(). */
struct box_base {
    virtual ~box_base() = default;
    dagger_ctx_t *ctx = nullptr;
    box_base *prev = nullptr, *next = nullptr;
};
template <class F> struct box : box_base {
    explicit box(F &&f) : fn(std::move(f)) {}
    F fn;
};
inline std::mutex &boxes_lock()
{
    static std::mutex m;
    return m;
}
inline box_base &boxes()
{
    static box_base head;
    return head;
}
inline void box_link(box_base *b, dagger_ctx_t *ctx)
{
    std::lock_guard<std::mutex> g(boxes_lock());
    box_base &h = boxes();
    b->ctx = ctx;
    b->prev = &h;
    b->next = h.next;
    if (h.next)
        h.next->prev = b;
    h.next = b;
}
inline void box_unlink(box_base *b)
{
    std::lock_guard<std::mutex> g(boxes_lock());
    b->prev->next = b->next;
    if (b->next)
        b->next->prev = b->prev;
    b->prev = b->next = nullptr;
}

/* Free the boxes of `ctx` (its tasks are all done: those boxes belong to tasks that never ran). */
inline void release_boxes(dagger_ctx_t *ctx)
{
    box_base *mine = nullptr;
    {
        std::lock_guard<std::mutex> g(boxes_lock());
        for (box_base *b = boxes().next, *n; b; b = n) {
            n = b->next;
            if (b->ctx != ctx)
                continue;
            b->prev->next = b->next;
            if (b->next)
                b->next->prev = b->prev;
            b->next = mine;
            mine = b;
        }
    }
    for (box_base *n; mine; mine = n) {
        n = mine->next;
        delete mine;
    }
}

/* How the callable travels: nothing for an empty one, its bytes in an i64 when it fits, a blob
 * copy when it is trivially copyable, else a heap box that the body frees when it runs. */
template <class F> struct carry {
    static constexpr bool empty = std::is_empty_v<F> && std::is_trivially_copyable_v<F>;
    static constexpr bool inl = !empty && std::is_trivially_copyable_v<F> &&
                                sizeof(F) <= sizeof(int64_t) && alignof(F) <= alignof(int64_t);
    static constexpr bool blob = !empty && !inl && std::is_trivially_copyable_v<F>;

    static dagger_value_t pack(F &&f, dagger_ctx_t *ctx)
    {
        if constexpr (empty) {
            return dagger_nil();
        } else if constexpr (inl) {
            int64_t bits = 0;
            std::memcpy(&bits, static_cast<const void *>(&f), sizeof(F));
            return dagger_i64(bits);
        } else if constexpr (blob) {
            return dagger_blob(&f, sizeof(F));
        } else {
            box<F> *b = new box<F>(std::move(f));
            box_link(b, ctx);
            return dagger_ptr(b);
        }
    }
};

template <class F, size_t... I>
int body(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out, std::index_sequence<I...>)
{
    using C = carry<F>;
    using A = typename sig<F>::args;
    constexpr size_t self = sizeof...(I); /* the callable rides after the user's arguments */
    try {
        alignas(F) unsigned char store[sizeof(F)];
        F *f;
        box_base *owned = nullptr;
        if constexpr (C::empty) {
            f = reinterpret_cast<F *>(store); /* an empty class has no bytes to read */
        } else if constexpr (C::inl) {
            int64_t bits = dagger_arg_i64(a, self);
            std::memcpy(store, &bits, sizeof(F));
            f = std::launder(reinterpret_cast<F *>(store));
        } else if constexpr (C::blob) {
            size_t len = 0;
            const void *p = dagger_arg_blob(a, self, &len);
            std::memcpy(store, p, sizeof(F));
            f = std::launder(reinterpret_cast<F *>(store));
        } else {
            box<F> *b = static_cast<box<F> *>(dagger_arg_ptr(a, self));
            box_unlink(b);
            owned = b;
            f = &b->fn;
        }
        struct drop {
            box_base *p;
            ~drop() { delete p; }
        } d{owned};
        using R = decltype((*f)(from_arg<std::tuple_element_t<I, A>>(a, I)...));
        if constexpr (std::is_void_v<R>) {
            (*f)(from_arg<std::tuple_element_t<I, A>>(a, I)...);
        } else {
            *out = from_result(tc, (*f)(from_arg<std::tuple_element_t<I, A>>(a, I)...));
        }
        return 0;
    } catch (...) {
        return fail_with_current_exception(tc);
    }
}

template <class F> int trampoline(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    return body<F>(tc, a, out,
                   std::make_index_sequence<std::tuple_size_v<typename sig<F>::args>>{});
}

} // namespace detail

/** A task handle (RAII): copying retains, destruction releases. T is the result type that
 *  get() converts to (void: none; dagger_value_t: the raw value). */
template <class T = dagger_value_t> class task
{
  public:
    task() noexcept = default;
    /** Adopt a +1 C handle (e.g. the result of dagger_spawn). */
    explicit task(dagger_task_t *t) noexcept : t_(t) {}
    task(const task &o) noexcept : t_(o.t_ ? dagger_task_retain(o.t_) : nullptr) {}
    task(task &&o) noexcept : t_(std::exchange(o.t_, nullptr)) {}
    task &operator=(task o) noexcept
    {
        std::swap(t_, o.t_);
        return *this;
    }
    ~task() { dagger_task_release(t_); }

    /** Wait and return the result; throws dagger::error with the task's message on failure. */
    T get() const
    {
        dagger_value_t v;
        int rc = dagger_fetch(t_, &v);
        if (rc)
            throw dagger::error(rc, t_ ? dagger_task_errmsg(t_) : "dagger::task: empty handle");
        return convert(v);
    }
    /** Wait; never throws for the task's own failure (see error()). */
    void wait() const { check(dagger_wait(t_)); }
    bool done() const noexcept { return dagger_task_done(t_); }
    int error_code() const noexcept { return dagger_task_error(t_); }
    const char *errmsg() const noexcept { return dagger_task_errmsg(t_); }
    void cancel() const noexcept { (void)dagger_cancel(t_); }
    dagger_task_t *get_raw() const noexcept { return t_; }
    /** Give up ownership: the caller releases the returned C handle. */
    dagger_task_t *release() noexcept { return std::exchange(t_, nullptr); }
    explicit operator bool() const noexcept { return t_ != nullptr; }

  private:
    T convert(const dagger_value_t &v) const
    {
        using D = T;
        if constexpr (std::is_void_v<D>) {
            (void)v;
        } else if constexpr (std::is_same_v<D, dagger_value_t>) {
            return v;
        } else if constexpr (std::is_same_v<D, bool>) {
            expect(v, v.kind == DAGGER_KIND_BOOL, "bool");
            return v.u.b;
        } else if constexpr (std::is_integral_v<D>) {
            expect(v, v.kind == DAGGER_KIND_I64, "i64");
            return static_cast<D>(v.u.i);
        } else if constexpr (std::is_floating_point_v<D>) {
            expect(v, v.kind == DAGGER_KIND_F64 || v.kind == DAGGER_KIND_I64, "f64");
            return static_cast<D>(v.kind == DAGGER_KIND_F64 ? v.u.f : (double)v.u.i);
        } else if constexpr (std::is_same_v<D, std::string>) {
            expect(v, v.kind == DAGGER_KIND_STR || v.kind == DAGGER_KIND_BLOB, "str");
            return std::string(static_cast<const char *>(v.u.p), v.len);
        } else if constexpr (std::is_pointer_v<D>) {
            expect(v, v.kind == DAGGER_KIND_PTR, "ptr");
            return static_cast<D>(const_cast<void *>(v.u.p));
        } else {
            static_assert(detail::always_false<D>, "dagger::task<T>: unsupported result type");
        }
    }
    void expect(const dagger_value_t &v, bool ok, const char *want) const
    {
        if (!ok)
            throw dagger::error(DAGGER_ETYPE,
                                std::string("task ") + std::to_string(dagger_task_id(t_)) +
                                    " returned a " + dagger_kind_name(v.kind) + ", not a " + want);
    }
    dagger_task_t *t_ = nullptr;
};

namespace detail
{
template <class X> dagger_value_t arg_value(const X &x) { return to_value(x); }
template <class U> dagger_value_t arg_value(const task<U> &t) { return dagger_taskv(t.get_raw()); }

/* The result type a task of callable F gets: its return type, decayed; string_view and C
 * strings come back as std::string. */
template <class F, class Tup> struct result_of;
template <class F, class... A> struct result_of<F, std::tuple<A...>> {
    using R = std::decay_t<std::invoke_result_t<F &, A...>>;
    using type =
        std::conditional_t<std::is_same_v<R, std::string_view> || std::is_same_v<R, const char *> ||
                               std::is_same_v<R, char *>,
                           std::string, R>;
};
template <class F> using result_t = typename result_of<F, typename sig<F>::args>::type;
} // namespace detail

namespace detail
{
/* Spawn f(args...) through `impl` (dagger_spawn_impl or dagger_spawn_detached_impl). */
template <class Impl, class Ctx, class F, class... Args>
auto spawn_through(Impl impl, Ctx &&ctx, const dagger_task_opts_t *o, F &&f, Args &&...args)
{
    using D = std::decay_t<F>;
    static_assert(std::tuple_size_v<typename sig<D>::args> == sizeof...(Args),
                  "dagger::spawn: the callable takes another number of arguments than given");
    D fn(std::forward<F>(f));
    /* An empty callable (a lambda without captures, a function object) travels as nothing. */
    constexpr size_t extra = carry<D>::empty ? 0 : 1;
    dagger_value_t argv[sizeof...(Args) + 1] = {arg_value(args)...,
                                                carry<D>::pack(std::move(fn), raw(ctx))};
    return impl(raw(ctx), o, &trampoline<D>, "c++", argv, sizeof...(Args) + extra);
}
} // namespace detail

/** Spawn `f(args...)` with task options `o` (may be NULL). See spawn. */
template <class Ctx, class F, class... Args>
task<detail::result_t<std::decay_t<F>>> spawn_opts(Ctx &&ctx, const dagger_task_opts_t *o, F &&f,
                                                   Args &&...args)
{
    dagger_task_t *t = detail::spawn_through(dagger_spawn_impl, std::forward<Ctx>(ctx), o,
                                             std::forward<F>(f), std::forward<Args>(args)...);
    if (!t)
        throw std::bad_alloc();
    return task<detail::result_t<std::decay_t<F>>>(t);
}

/** Spawn `f(args...)` with options `o` (may be NULL) and no handle: dagger_spawn_detached, for
 *  tasks nobody gets (a loop inside a sync_group). Its failure goes where a released task's
 *  goes: the group's wait() throws it. Throws std::bad_alloc when no task record can be made,
 *  dagger::error for a NULL context. */
template <class Ctx, class F, class... Args>
void spawn_detached_opts(Ctx &&ctx, const dagger_task_opts_t *o, F &&f, Args &&...args)
{
    int rc = detail::spawn_through(dagger_spawn_detached_impl, std::forward<Ctx>(ctx), o,
                                   std::forward<F>(f), std::forward<Args>(args)...);
    if (rc == DAGGER_ENOMEM)
        throw std::bad_alloc();
    check(rc);
}

/** spawn_detached_opts without options. */
template <class Ctx, class F, class... Args> void spawn_detached(Ctx &&ctx, F &&f, Args &&...args)
{
    spawn_detached_opts(std::forward<Ctx>(ctx), nullptr, std::forward<F>(f),
                        std::forward<Args>(args)...);
}

/** Spawn `f(args...)`: eager, never blocks. A dagger::task argument is a dependency (f gets its
 *  value); numbers, bool, strings and pointers are passed as values. Exceptions thrown by f fail
 *  the task with their what() (dagger::error keeps its code). Throws std::bad_alloc only when the
 *  handle cannot be allocated; other spawn errors come out of get(). */
template <class Ctx, class F, class... Args>
task<detail::result_t<std::decay_t<F>>> spawn(Ctx &&ctx, F &&f, Args &&...args)
{
    return spawn_opts(std::forward<Ctx>(ctx), nullptr, std::forward<F>(f),
                      std::forward<Args>(args)...);
}

/** Free the callables (not trivially copyable ones, kept on the heap) of tasks of `ctx` that
 *  never ran. dagger::context does it when it closes; a program that spawns on a raw
 *  dagger_ctx_t calls it after a successful dagger_ctx_close(ctx) (the pointer is only a key).
 *  Thread safety: any thread. */
inline void release_callables(dagger_ctx_t *ctx) { detail::release_boxes(ctx); }

/** A sync group (RAII): tasks spawned by this thread until wait() (or the destructor) are
 *  waited for; wait() throws the first error. */
class sync_group
{
  public:
    template <class Ctx> explicit sync_group(Ctx &&ctx) : ctx_(detail::raw(ctx))
    {
        check(dagger_sync_begin(ctx_));
    }
    sync_group(const sync_group &) = delete;
    sync_group &operator=(const sync_group &) = delete;
    void wait()
    {
        if (ctx_)
            check(dagger_sync_end(std::exchange(ctx_, nullptr)));
    }
    ~sync_group()
    {
        if (ctx_ && dagger_sync_end(ctx_)) { /* a destructor cannot report: use wait() */
        }
    }

  private:
    dagger_ctx_t *ctx_;
};

namespace detail
{
/* A leaf of dagger::parallel_for: the callable lives in the caller's frame, which outlives the
 * call (dagger_parallel_for returns after the last leaf). */
template <class F> int range_leaf(dagger_tc_t *tc, int64_t lo, int64_t hi, void *ud)
{
    try {
        (*static_cast<F *>(ud))(lo, hi);
        return 0;
    } catch (...) {
        return fail_with_current_exception(tc);
    }
}
} // namespace detail

/** Call f(lo, hi) on sub-ranges covering [begin, end) once each, in tasks (dagger_parallel_for;
 *  grain 0: automatic). f runs on several threads at once. Blocks until every leaf ended.
 *  Throws dagger::error with the first failing leaf's code and message (an exception thrown by
 *  f fails its leaf with its what()), or for bad arguments. */
template <class Ctx, class F>
void parallel_for(Ctx &&ctx, int64_t begin, int64_t end, F &&f, int64_t grain = 0)
{
    using D = std::remove_reference_t<F>;
    check(dagger_parallel_for(detail::raw(ctx), begin, end, grain, &detail::range_leaf<D>,
                              const_cast<void *>(static_cast<const void *>(&f))));
}

} // namespace dagger

#endif /* DAGGER_HPP */
