/*
 * atomic.h - every memory-ordering primitive fab uses on shared memory, in
 * one place.  All shared words are C11 _Atomic fields; call sites say which
 * operation pairs with which (see STYLE.md "Memory ordering").
 *
 * x86-64 note: acquire loads and release stores compile to plain moves; the
 * only costly operations are read-modify-writes and the seq_cst fence, which
 * the fast paths use at most once per publish (the Dekker handshake with a
 * sleeping peer).
 */
#ifndef FAB_ATOMIC_H
#define FAB_ATOMIC_H

#include <stdatomic.h>
#include <stdint.h>

#define load_relaxed(p) atomic_load_explicit((p), memory_order_relaxed)
#define load_acquire(p) atomic_load_explicit((p), memory_order_acquire)
#define load_seq_cst(p) atomic_load_explicit((p), memory_order_seq_cst)
#define store_relaxed(p, v) atomic_store_explicit((p), (v), memory_order_relaxed)
#define store_release(p, v) atomic_store_explicit((p), (v), memory_order_release)
#define store_seq_cst(p, v) atomic_store_explicit((p), (v), memory_order_seq_cst)

/* Strong CAS; on failure *expp receives the current value. acq_rel on
 * success (the winner both acquires what the previous owner published and
 * publishes what it wrote before), acquire on failure. */
#define cas(p, expp, des)                                                     \
	atomic_compare_exchange_strong_explicit((p), (expp), (des),           \
						memory_order_acq_rel,         \
						memory_order_acquire)

/* seq_cst CAS: used where a claim must be ordered against a later load of
 * another word in one total order (claim a slot, then read `closed`). */
#define cas_seq_cst(p, expp, des)                                             \
	atomic_compare_exchange_strong_explicit((p), (expp), (des),           \
						memory_order_seq_cst,         \
						memory_order_seq_cst)

#define fetch_add_relaxed(p, v) atomic_fetch_add_explicit((p), (v), memory_order_relaxed)
#define fetch_add_seq_cst(p, v) atomic_fetch_add_explicit((p), (v), memory_order_seq_cst)
#define fetch_sub_seq_cst(p, v) atomic_fetch_sub_explicit((p), (v), memory_order_seq_cst)

#define fence_seq_cst() atomic_thread_fence(memory_order_seq_cst)
#define fence_acquire() atomic_thread_fence(memory_order_acquire)
#define fence_release() atomic_thread_fence(memory_order_release)

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#else
	__asm__ __volatile__("" ::: "memory");
#endif
}

#endif /* FAB_ATOMIC_H */
