// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
//
// Uprobes on the Go runtime (amd64 register ABI, Go 1.19-1.23), loaded by lastmile-ebpf.
//
// No return probes: uretprobes move the return address, which Go's stack copying cannot
// follow. Every probe sits, where the code allows, on an instruction the kernel emulates
// (a prologue's PUSH or JBE, a CALL, a Jcc) rather than single-steps: ~1.3 µs a hit on a
// VM instead of ~10 µs (src/sites.rs). A pause is timed with Go's own clock reads, taken
// from the stack slot the loader found them in a few instructions later. Every probe gets
// its per-attachment settings from the BPF cookie, so one loaded object serves processes
// built with different Go versions at once.
//
// Always on (6 hits per GC cycle): the clock reads that start a GC pause (gcStart,
// gcMarkDone), stop the world, the clock reads that end a pause (startTheWorldWithSema,
// gcMarkTermination's work.tEnd).
// On demand (bounded windows): gopark/ready (park profile), mProf_Malloc (allocations
// Go's own sampler picked: MemProfileRate, 512 KiB by default).
//
// Events go into the ring buffer without waking the reader (BPF_RB_NO_WAKEUP), which
// drains it on a timer: a wakeup is an irq_work self-IPI, measured at 12-20 µs per event
// on these VMs and charged to the probed thread while its world is stopped.
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <linux/bpf_perf_event.h>
#include <bpf/bpf_helpers.h>

/* Cookie bits (see src/probes.rs, CookieFlags). */
#define COOKIE_STW_REASON_IN_RAX 0x1 /* Go >= 1.21: stopTheWorldWithSema(reason stwReason) */
#define COOKIE_ALLOC_SIZE_IN_RCX 0x2 /* Go >= 1.23: mProf_Malloc(mp, p, size); else (p, size) */
#define COOKIE_SWEEP_TERM_SITE 0x4   /* this clock read is gcStart's (sweep termination) */
#define COOKIE_STACK_OFFSET(c) (((c) >> 16) & 0xffff) /* where a clock probe finds Go's value */

/* STW kinds: Go's stwReason numbering (1.21+); Go 1.19's pauses are classified by the
 * clock read that precedes a GC's (none: not a GC pause). */
#define STW_UNKNOWN 0
#define STW_GC_MARK_TERM 1
#define STW_GC_SWEEP_TERM 2
#define STW_KINDS 32

#define HIST_BUCKETS 15 /* 14 finite upper bounds + the +Inf bucket */

struct stw_key {
    __u32 tgid;
    __u32 kind;
};

struct stw_stats {
    __u64 count;
    __u64 sum_ns;
    __u64 max_ns;
    __u64 buckets[HIST_BUCKETS]; /* not cumulative: bucket i counts bounds[i-1] < d <= bounds[i] */
};

struct stw_open {
    __u64 start_ns;
    __u32 kind;
    __u32 _pad;
};

struct gc_stats {
    __u64 cycles;       /* gcMarkTermination's work.tEnd reads: completed cycles, as gctrace counts */
    __u64 starts;       /* cycles started: gcStart reading the clock to stop the world */
};

/* A GC about to stop the world: Go's clock then, and which pause it is. */
struct gc_stop_pending {
    __u64 go_start_ns;
    __u32 kind;
    __u32 _pad;
};

enum event_kind { EV_STW = 1, EV_GC_DONE = 2 };

struct event {
    __u32 kind;
    __u32 tgid;
    __u32 stw_kind;
    __u32 _pad;
    __u64 start_ns;    /* STW: Go's clock read before a GC stop, else stopTheWorldWithSema entry */
    __u64 end_ns;      /* STW: Go's clock read that ends the pause */
};

struct park_key {
    __u32 tgid;
    __u32 reason;
    __s64 stack_id;    /* user stack above gopark's caller (frame pointers) */
    __u64 caller;      /* return address at gopark entry: the frame the stack walk misses */
};

struct park_stats {
    __u64 parks;
    __u64 readies;     /* parks that ended in runtime.ready while probed */
    __u64 blocked_ns;  /* summed over those */
};

struct parked_key {
    __u32 tgid;
    __u32 _pad;
    __u64 g;           /* *g of the parked goroutine */
};

struct parked_val {
    __u64 ts;
    struct park_key key;
};

struct alloc_key {
    __u32 tgid;
    __u32 _pad;
    __s64 stack_id;
    __u64 caller;
};

struct alloc_stats {
    __u64 samples;
    __u64 bytes;
};

/* Per-CPU hit counters, indexed by enum counter: probe hits and failures. */
enum counter {
    C_STW_STOP, C_STW_END, C_GC_CLOCK_READ, C_GC_MARK_TERM, C_GOPARK, C_READY, C_ALLOC,
    C_EVENTS_DROPPED, C_STACK_ERRORS, C_MAP_FULL, C_COUNTERS
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 4096);
    __type(key, struct stw_key);
    __type(value, struct stw_stats);
} stw_hist SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 1024);
    __type(key, __u32);
    __type(value, struct stw_open);
} stw_inflight SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 1024);
    __type(key, __u32);
    __type(value, struct gc_stats);
} gc_counts SEC(".maps");

/* Go's clock read right before a GC stops the world (gcStart's work.tSweepTerm,
 * gcMarkDone's work.tMarkTerm), per thread, until that thread enters the STW. */
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 4096);
    __type(key, __u64);
    __type(value, struct gc_stop_pending);
} gc_stop_go_start SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 1 << 18);
} events SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, C_COUNTERS);
    __type(key, __u32);
    __type(value, __u64);
} counters SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_STACK_TRACE);
    __uint(max_entries, 16384);
    __uint(key_size, sizeof(__u32));
    __uint(value_size, 64 * sizeof(__u64));
} stacks SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 65536);
    __type(key, struct parked_key);
    __type(value, struct parked_val);
} parked SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 16384);
    __type(key, struct park_key);
    __type(value, struct park_stats);
} park_stats SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 16384);
    __type(key, struct alloc_key);
    __type(value, struct alloc_stats);
} alloc_stats SEC(".maps");

static __always_inline void count(__u32 c)
{
    __u64 *v = bpf_map_lookup_elem(&counters, &c);
    if (v)
        (*v)++;
}

/* The value of Go's clock read that a clock probe follows: in the stack, where the
 * cookie says; 0 when unreadable. */
static __always_inline __u64 go_clock_value(struct pt_regs *ctx)
{
    __u64 v = 0;
    __u64 off = COOKIE_STACK_OFFSET(bpf_get_attach_cookie(ctx));
    if (bpf_probe_read_user(&v, sizeof(v), (void *)(ctx->rsp + off)))
        return 0;
    return v;
}

static __always_inline __u32 tgid_now(void)
{
    return bpf_get_current_pid_tgid() >> 32;
}

/* Upper bounds of the STW histogram in nanoseconds; kept equal to STW_BUCKETS_SECONDS
 * in src/metrics.rs. */
static __always_inline __u32 bucket_of(__u64 ns)
{
    if (ns <= 5000) return 0;
    if (ns <= 10000) return 1;
    if (ns <= 25000) return 2;
    if (ns <= 50000) return 3;
    if (ns <= 100000) return 4;
    if (ns <= 250000) return 5;
    if (ns <= 500000) return 6;
    if (ns <= 1000000) return 7;
    if (ns <= 2500000) return 8;
    if (ns <= 5000000) return 9;
    if (ns <= 10000000) return 10;
    if (ns <= 25000000) return 11;
    if (ns <= 50000000) return 12;
    if (ns <= 100000000) return 13;
    return 14;
}

/* runtime.stopTheWorldWithSema entry: the world starts stopping. */
SEC("uprobe")
int go_stw_stop(struct pt_regs *ctx)
{
    __u32 tgid = tgid_now();
    count(C_STW_STOP);
    __u64 now = bpf_ktime_get_ns();
    __u64 pid_tid = bpf_get_current_pid_tgid();
    /* A GC pause starts where Go starts counting it: the clock read just before (gctrace
     * and go_gc_duration_seconds count from there). Timing from this probe instead loses
     * whatever passed in between, e.g. the thread being descheduled. */
    __u64 start = now;
    __u32 kind = STW_UNKNOWN;
    struct gc_stop_pending *pending = bpf_map_lookup_elem(&gc_stop_go_start, &pid_tid);
    if (pending) {
        if (pending->go_start_ns <= now && now - pending->go_start_ns < 1000000000ULL)
            start = pending->go_start_ns;
        kind = pending->kind;
        bpf_map_delete_elem(&gc_stop_go_start, &pid_tid);
    }
    if (bpf_get_attach_cookie(ctx) & COOKIE_STW_REASON_IN_RAX) {
        kind = ctx->rax & 0xff;
        if (kind >= STW_KINDS)
            kind = STW_UNKNOWN;
    }
    struct stw_open open = { .start_ns = start, .kind = kind };
    if (bpf_map_update_elem(&stw_inflight, &tgid, &open, BPF_ANY))
        count(C_MAP_FULL);
    return 0;
}

/* Ends this process's open pause at Go's clock value `go_end` (the probe's time `now` if
 * that is implausible): histogram, and an event for the validator. Nothing open: attached
 * while the world was stopped, or already ended (Go 1.19/1.21 read the clock again in
 * startTheWorldWithSema after gcMarkTermination's work.tEnd). */
static __always_inline void end_stw(__u32 tgid, __u64 go_end, __u64 now)
{
    struct stw_open *open = bpf_map_lookup_elem(&stw_inflight, &tgid);
    if (!open)
        return;
    __u64 start = open->start_ns;
    __u32 kind = open->kind;
    bpf_map_delete_elem(&stw_inflight, &tgid);
    __u64 end = (go_end > start && go_end <= now) ? go_end : now;
    __u64 d = end > start ? end - start : 0;

    struct stw_key key = { .tgid = tgid, .kind = kind };
    struct stw_stats *st = bpf_map_lookup_elem(&stw_hist, &key);
    if (!st) {
        struct stw_stats zero = {};
        bpf_map_update_elem(&stw_hist, &key, &zero, BPF_NOEXIST);
        st = bpf_map_lookup_elem(&stw_hist, &key);
        if (!st) {
            count(C_MAP_FULL);
            return;
        }
    }
    /* One STW at a time per process, but keep the updates atomic anyway. */
    __sync_fetch_and_add(&st->count, 1);
    __sync_fetch_and_add(&st->sum_ns, d);
    if (d > st->max_ns)
        st->max_ns = d;
    __u32 b = bucket_of(d);
    if (b < HIST_BUCKETS)
        __sync_fetch_and_add(&st->buckets[b], 1);

    struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
    if (!e) {
        count(C_EVENTS_DROPPED);
        return;
    }
    e->kind = EV_STW;
    e->tgid = tgid;
    e->stw_kind = kind;
    e->_pad = 0;
    e->start_ns = start;
    e->end_ns = start + d;
    bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
}

/* Just after startTheWorldWithSema's `nanotime()`: the time it returns ends the pause as
 * Go counts it. */
SEC("uprobe")
int go_stw_end(struct pt_regs *ctx)
{
    __u64 now = bpf_ktime_get_ns();
    count(C_STW_END);
    end_stw(tgid_now(), go_clock_value(ctx), now);
    return 0;
}

static __always_inline struct gc_stats *gc_stats_of(__u32 tgid)
{
    struct gc_stats *g = bpf_map_lookup_elem(&gc_counts, &tgid);
    if (g)
        return g;
    struct gc_stats zero = {};
    bpf_map_update_elem(&gc_counts, &tgid, &zero, BPF_NOEXIST);
    return bpf_map_lookup_elem(&gc_counts, &tgid);
}

/* gcStart / gcMarkDone, just after the `nanotime()` whose value starts Go's account of
 * the pause that follows: kept per thread until that thread stops the world. gcStart's
 * also counts a started cycle (a gcStart that finds a cycle running returns before it). */
SEC("uprobe")
int go_gc_stop_clock(struct pt_regs *ctx)
{
    __u64 pid_tid = bpf_get_current_pid_tgid();
    struct gc_stop_pending pending = { .go_start_ns = go_clock_value(ctx), .kind = STW_GC_MARK_TERM };
    count(C_GC_CLOCK_READ);
    if (bpf_get_attach_cookie(ctx) & COOKIE_SWEEP_TERM_SITE) {
        pending.kind = STW_GC_SWEEP_TERM;
        struct gc_stats *g = gc_stats_of(pid_tid >> 32);
        if (g)
            __sync_fetch_and_add(&g->starts, 1);
    }
    bpf_map_update_elem(&gc_stop_go_start, &pid_tid, &pending, BPF_ANY);
    return 0;
}

/* Just after gcMarkTermination's `now := nanotime()` that becomes work.tEnd: once per
 * completed cycle (gctrace prints later in the same call), and the end of the mark
 * termination pause as Go counts it, in every supported version. */
SEC("uprobe")
int go_gc_mark_term_end(struct pt_regs *ctx)
{
    __u32 tgid = tgid_now();
    __u64 now = bpf_ktime_get_ns();
    count(C_GC_MARK_TERM);
    end_stw(tgid, go_clock_value(ctx), now);
    struct gc_stats *g = gc_stats_of(tgid);
    if (g)
        __sync_fetch_and_add(&g->cycles, 1);
    struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
    if (!e) {
        count(C_EVENTS_DROPPED);
        return 0;
    }
    e->kind = EV_GC_DONE;
    e->tgid = tgid;
    e->stw_kind = 0;
    e->_pad = 0;
    e->start_ns = now;
    e->end_ns = 0;
    bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
    return 0;
}

/* runtime.gopark(unlockf, lock, reason waitReason, ...): reason in RCX, current g in R14. */
SEC("uprobe")
int go_gopark(struct pt_regs *ctx)
{
    count(C_GOPARK);
    struct parked_val v = {};
    v.ts = bpf_ktime_get_ns();
    v.key.tgid = tgid_now();
    v.key.reason = ctx->rcx & 0xff;
    v.key.stack_id = bpf_get_stackid(ctx, &stacks, BPF_F_USER_STACK | BPF_F_REUSE_STACKID);
    if (v.key.stack_id < 0)
        count(C_STACK_ERRORS);
    bpf_probe_read_user(&v.key.caller, sizeof(v.key.caller), (void *)ctx->rsp);

    struct park_stats *st = bpf_map_lookup_elem(&park_stats, &v.key);
    if (!st) {
        struct park_stats zero = {};
        bpf_map_update_elem(&park_stats, &v.key, &zero, BPF_NOEXIST);
        st = bpf_map_lookup_elem(&park_stats, &v.key);
    }
    if (!st) {
        count(C_MAP_FULL);
        return 0;
    }
    __sync_fetch_and_add(&st->parks, 1);
    struct parked_key pk = { .tgid = v.key.tgid, .g = ctx->r14 };
    bpf_map_update_elem(&parked, &pk, &v, BPF_ANY);
    return 0;
}

/* runtime.ready(gp *g, ...): gp in RAX. goready is inlined into it from Go 1.21 on. */
SEC("uprobe")
int go_ready(struct pt_regs *ctx)
{
    count(C_READY);
    struct parked_key pk = { .tgid = tgid_now(), .g = ctx->rax };
    struct parked_val *v = bpf_map_lookup_elem(&parked, &pk);
    if (!v)
        return 0; /* parked before the window, or woken by a path we do not probe */
    __u64 now = bpf_ktime_get_ns();
    __u64 blocked = now > v->ts ? now - v->ts : 0;
    struct park_stats *st = bpf_map_lookup_elem(&park_stats, &v->key);
    if (st) {
        __sync_fetch_and_add(&st->readies, 1);
        __sync_fetch_and_add(&st->blocked_ns, blocked);
    }
    bpf_map_delete_elem(&parked, &pk);
    return 0;
}

/* runtime.mProf_Malloc: called only for allocations Go's profiler sampled. */
SEC("uprobe")
int go_alloc_sample(struct pt_regs *ctx)
{
    count(C_ALLOC);
    struct alloc_key k = {};
    k.tgid = tgid_now();
    k.stack_id = bpf_get_stackid(ctx, &stacks, BPF_F_USER_STACK | BPF_F_REUSE_STACKID);
    if (k.stack_id < 0)
        count(C_STACK_ERRORS);
    bpf_probe_read_user(&k.caller, sizeof(k.caller), (void *)ctx->rsp);
    /* Both registers are read as plain loads: the verifier refuses a computed ctx offset. */
    __u64 rcx = *(volatile unsigned long *)&ctx->rcx;
    __u64 rbx = *(volatile unsigned long *)&ctx->rbx;
    __u64 size = (bpf_get_attach_cookie(ctx) & COOKIE_ALLOC_SIZE_IN_RCX) ? rcx : rbx;
    struct alloc_stats *st = bpf_map_lookup_elem(&alloc_stats, &k);
    if (!st) {
        struct alloc_stats zero = {};
        bpf_map_update_elem(&alloc_stats, &k, &zero, BPF_NOEXIST);
        st = bpf_map_lookup_elem(&alloc_stats, &k);
    }
    if (!st) {
        count(C_MAP_FULL);
        return 0;
    }
    __sync_fetch_and_add(&st->samples, 1);
    __sync_fetch_and_add(&st->bytes, size);
    return 0;
}

/* CPU-clock samples (every CPU, a few kHz) that land in a process being calibrated for a
 * profile, in user mode and in the kernel: its user/system split at 16 times /proc's
 * 250 Hz tick, which at a second of CPU left the overhead estimate ±20 % apart between
 * windows. Only processes user space entered here are counted. */
struct cpu_split {
    __u64 user;
    __u64 kernel;
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 64);
    __type(key, __u32);
    __type(value, struct cpu_split);
} cpu_samples SEC(".maps");

SEC("perf_event")
int cpu_sample(struct bpf_perf_event_data *ctx)
{
    __u32 tgid = tgid_now();
    struct cpu_split *c = bpf_map_lookup_elem(&cpu_samples, &tgid);
    if (!c)
        return 0;
    if (ctx->regs.cs & 3)
        __sync_fetch_and_add(&c->user, 1);
    else
        __sync_fetch_and_add(&c->kernel, 1);
    return 0;
}

/* GPL-compatible: bpf_probe_read_user and bpf_get_stackid are GPL-only helpers. */
char LICENSE[] SEC("license") = "Dual BSD/GPL";
