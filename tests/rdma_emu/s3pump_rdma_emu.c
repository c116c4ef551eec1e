/*
 * An emulation of an RDMA library behind docs/s3pump_rdma.h, for tests on
 * machines without an RDMA NIC. It is built from source by
 * tests/support/rdma_emu.rs and loaded by s3pump like a real library.
 *
 * - register_buffer records the range; get_token refuses a range that is not
 *   inside a registered buffer and otherwise returns
 *   "emu:<address of ptr + offset, 16 lowercase hex digits>:<len, decimal>",
 *   which the in-process test server parses to read or write that memory.
 * - Every call is counted. Counters belong to a name given in the config
 *   (`name=NAME`, "" without one), so that tests running in parallel in one
 *   process each see their own; they outlive the handle, so a test can check
 *   them after s3pump has called fini. s3pump_rdma_emu_counters reads them.
 * - The config is a list of words separated by spaces, commas or semicolons:
 *     name=NAME       counters under NAME
 *     not-ready       s3pump_rdma_ready returns 0 (see also
 *                     s3pump_rdma_emu_set_ready)
 *     fail-init       init fails
 *     fail-register   register_buffer fails
 *     fail-token      get_token fails
 *   Any other word makes init fail, naming the word.
 */
#include "s3pump_rdma.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What s3pump_rdma_emu_counters reports (mirrored in
 * tests/support/rdma_emu.rs). */
typedef struct s3pump_rdma_emu_counters {
    uint64_t init;             /* successful inits */
    uint64_t fini;             /* fini calls */
    uint64_t register_calls;   /* register_buffer calls, failed ones included */
    uint64_t deregister_calls; /* deregister_buffer calls, failed ones included */
    uint64_t get_token_calls;  /* get_token calls, failed ones included */
    uint64_t free_token_calls; /* free_token calls, bad ones included */
    uint64_t failed_calls;     /* register, deregister and get_token calls that failed */
    uint64_t bad_frees;        /* free_token of a pointer that was not an outstanding token */
    uint64_t busy_deregisters; /* deregister_buffer of a buffer with outstanding tokens */
    int64_t registered;        /* buffers registered now */
    int64_t outstanding_tokens; /* tokens minted and not yet freed */
} s3pump_rdma_emu_counters_t;

/* The counters of one name; never freed. */
struct stats {
    struct stats *next;
    char *name;
    atomic_uint_fast64_t init, fini, register_calls, deregister_calls, get_token_calls,
        free_token_calls, failed_calls, bad_frees, busy_deregisters;
    atomic_int_fast64_t registered, outstanding_tokens;
};

struct range {
    uintptr_t start;
    size_t len;
};

struct token {
    char *text;
    uintptr_t buffer; /* start of the buffer it was minted for */
};

/* One handle. */
struct emu {
    struct emu *next; /* in the list of live handles */
    struct stats *stats;
    atomic_int ready;
    int fail_register;
    int fail_token;
    pthread_mutex_t lock; /* guards ranges and tokens */
    struct range *ranges;
    size_t n_ranges, cap_ranges;
    struct token *tokens;
    size_t n_tokens, cap_tokens;
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct stats *all_stats;
static struct emu *live;

static _Thread_local char last_error[256];

static void set_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
}

static int grow(void **items, size_t *cap, size_t n, size_t size) {
    if (n < *cap)
        return 0;
    size_t want = *cap ? *cap * 2 : 8;
    void *p = realloc(*items, want * size);
    if (!p)
        return -1;
    *items = p;
    *cap = want;
    return 0;
}

/* The stats of `name`, created on first use. Call with registry_lock held. */
static struct stats *stats_named(const char *name, size_t len) {
    for (struct stats *s = all_stats; s; s = s->next)
        if (strlen(s->name) == len && memcmp(s->name, name, len) == 0)
            return s;
    struct stats *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->name = malloc(len + 1);
    if (!s->name) {
        free(s);
        return NULL;
    }
    memcpy(s->name, name, len);
    s->name[len] = '\0';
    s->next = all_stats;
    all_stats = s;
    return s;
}

uint32_t s3pump_rdma_abi_version(void) { return S3PUMP_RDMA_ABI_VERSION; }

void *s3pump_rdma_init(const char *config, char *err, size_t err_len) {
    const char *name = "";
    size_t name_len = 0;
    int ready = 1, fail_init = 0, fail_register = 0, fail_token = 0;
    const char *seps = " \t\r\n,;";
    for (const char *p = config ? config : ""; *p;) {
        size_t n = strcspn(p, seps);
        if (n == 0) {
            p++;
            continue;
        }
        if (n > 5 && memcmp(p, "name=", 5) == 0) {
            name = p + 5;
            name_len = n - 5;
        } else if (n == 9 && memcmp(p, "not-ready", 9) == 0) {
            ready = 0;
        } else if (n == 9 && memcmp(p, "fail-init", 9) == 0) {
            fail_init = 1;
        } else if (n == 13 && memcmp(p, "fail-register", 13) == 0) {
            fail_register = 1;
        } else if (n == 10 && memcmp(p, "fail-token", 10) == 0) {
            fail_token = 1;
        } else {
            snprintf(err, err_len, "unknown emulation option '%.*s'", (int)n, p);
            return NULL;
        }
        p += n;
    }
    if (fail_init) {
        snprintf(err, err_len, "emulated init failure (config \"%s\")", config ? config : "");
        return NULL;
    }
    struct emu *e = calloc(1, sizeof *e);
    if (!e) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&e->lock, NULL);
    atomic_init(&e->ready, ready);
    e->fail_register = fail_register;
    e->fail_token = fail_token;
    pthread_mutex_lock(&registry_lock);
    e->stats = stats_named(name, name_len);
    if (e->stats) {
        e->next = live;
        live = e;
    }
    pthread_mutex_unlock(&registry_lock);
    if (!e->stats) {
        free(e);
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    atomic_fetch_add(&e->stats->init, 1);
    return e;
}

int s3pump_rdma_ready(void *handle) {
    struct emu *e = handle;
    return atomic_load(&e->ready);
}

int s3pump_rdma_register_buffer(void *handle, void *ptr, size_t len) {
    struct emu *e = handle;
    struct stats *s = e->stats;
    uintptr_t start = (uintptr_t)ptr;
    int rc = 0;
    atomic_fetch_add(&s->register_calls, 1);
    pthread_mutex_lock(&e->lock);
    if (e->fail_register) {
        set_error("emulated registration failure for %zu bytes at %p", len, ptr);
        rc = 1;
    } else if (!ptr || len == 0 || len > S3PUMP_RDMA_MAX_BUFFER || start + len < start) {
        set_error("cannot register %zu bytes at %p: bad range", len, ptr);
        rc = 2;
    } else {
        for (size_t i = 0; i < e->n_ranges; i++) {
            struct range *r = &e->ranges[i];
            if (start < r->start + r->len && r->start < start + len) {
                set_error("cannot register %zu bytes at %p: overlaps the buffer of %zu bytes at "
                          "%p",
                          len, ptr, r->len, (void *)r->start);
                rc = 3;
                break;
            }
        }
        if (rc == 0 && grow((void **)&e->ranges, &e->cap_ranges, e->n_ranges, sizeof *e->ranges)) {
            set_error("out of memory");
            rc = 4;
        }
        if (rc == 0) {
            e->ranges[e->n_ranges++] = (struct range){start, len};
            atomic_fetch_add(&s->registered, 1);
        }
    }
    pthread_mutex_unlock(&e->lock);
    if (rc)
        atomic_fetch_add(&s->failed_calls, 1);
    return rc;
}

int s3pump_rdma_deregister_buffer(void *handle, void *ptr) {
    struct emu *e = handle;
    struct stats *s = e->stats;
    uintptr_t start = (uintptr_t)ptr;
    int rc = 1;
    atomic_fetch_add(&s->deregister_calls, 1);
    pthread_mutex_lock(&e->lock);
    for (size_t i = 0; i < e->n_ranges; i++) {
        if (e->ranges[i].start == start) {
            e->ranges[i] = e->ranges[--e->n_ranges];
            rc = 0;
            break;
        }
    }
    if (rc == 0) {
        for (size_t i = 0; i < e->n_tokens; i++) {
            if (e->tokens[i].buffer == start) {
                atomic_fetch_add(&s->busy_deregisters, 1);
                break;
            }
        }
    }
    pthread_mutex_unlock(&e->lock);
    if (rc) {
        set_error("cannot deregister %p: not a registered buffer", ptr);
        atomic_fetch_add(&s->failed_calls, 1);
    } else {
        atomic_fetch_sub(&s->registered, 1);
    }
    return rc;
}

char *s3pump_rdma_get_token(void *handle, void *ptr, size_t len, size_t offset, int op) {
    struct emu *e = handle;
    struct stats *s = e->stats;
    uintptr_t start = (uintptr_t)ptr;
    char *text = NULL;
    atomic_fetch_add(&s->get_token_calls, 1);
    pthread_mutex_lock(&e->lock);
    struct range *r = NULL;
    for (size_t i = 0; i < e->n_ranges; i++)
        if (e->ranges[i].start == start)
            r = &e->ranges[i];
    if (e->fail_token) {
        set_error("emulated token failure");
    } else if (op != S3PUMP_RDMA_OP_PUT && op != S3PUMP_RDMA_OP_GET) {
        set_error("bad op %d", op);
    } else if (!r) {
        set_error("%p is not the start of a registered buffer", ptr);
    } else if (offset > r->len || len > r->len - offset) {
        set_error("range [%zu, %zu + %zu) is outside the buffer of %zu bytes at %p", offset, offset,
                  len, r->len, ptr);
    } else if (grow((void **)&e->tokens, &e->cap_tokens, e->n_tokens, sizeof *e->tokens)) {
        set_error("out of memory");
    } else {
        char buf[64];
        int n = snprintf(buf, sizeof buf, "emu:%016" PRIxPTR ":%zu", start + offset, len);
        text = malloc((size_t)n + 1);
        if (text) {
            memcpy(text, buf, (size_t)n + 1);
            e->tokens[e->n_tokens++] = (struct token){text, start};
        } else {
            set_error("out of memory");
        }
    }
    pthread_mutex_unlock(&e->lock);
    if (text)
        atomic_fetch_add(&s->outstanding_tokens, 1);
    else
        atomic_fetch_add(&s->failed_calls, 1);
    return text;
}

void s3pump_rdma_free_token(void *handle, char *token) {
    struct emu *e = handle;
    struct stats *s = e->stats;
    int found = 0;
    atomic_fetch_add(&s->free_token_calls, 1);
    pthread_mutex_lock(&e->lock);
    for (size_t i = 0; i < e->n_tokens; i++) {
        if (e->tokens[i].text == token) {
            e->tokens[i] = e->tokens[--e->n_tokens];
            found = 1;
            break;
        }
    }
    pthread_mutex_unlock(&e->lock);
    if (found) {
        free(token);
        atomic_fetch_sub(&s->outstanding_tokens, 1);
    } else {
        atomic_fetch_add(&s->bad_frees, 1);
    }
}

const char *s3pump_rdma_last_error(void *handle) {
    (void)handle;
    return last_error[0] ? last_error : NULL;
}

void s3pump_rdma_fini(void *handle) {
    struct emu *e = handle;
    pthread_mutex_lock(&registry_lock);
    for (struct emu **p = &live; *p; p = &(*p)->next) {
        if (*p == e) {
            *p = e->next;
            break;
        }
    }
    pthread_mutex_unlock(&registry_lock);
    atomic_fetch_add(&e->stats->fini, 1);
    /* Leaked tokens stay counted as outstanding; their memory is freed. */
    for (size_t i = 0; i < e->n_tokens; i++)
        free(e->tokens[i].text);
    free(e->tokens);
    free(e->ranges);
    pthread_mutex_destroy(&e->lock);
    free(e);
}

/* --- Test hooks, not part of s3pump_rdma.h. --- */

/* sizeof(s3pump_rdma_emu_counters_t), for the Rust mirror to check. */
size_t s3pump_rdma_emu_counters_size(void) { return sizeof(s3pump_rdma_emu_counters_t); }

/* Copies the counters of `name` into *out. Returns 0, or -1 when no handle
 * was ever created under that name. */
int s3pump_rdma_emu_counters(const char *name, s3pump_rdma_emu_counters_t *out) {
    pthread_mutex_lock(&registry_lock);
    struct stats *s = all_stats;
    while (s && strcmp(s->name, name) != 0)
        s = s->next;
    pthread_mutex_unlock(&registry_lock);
    if (!s)
        return -1;
    out->init = atomic_load(&s->init);
    out->fini = atomic_load(&s->fini);
    out->register_calls = atomic_load(&s->register_calls);
    out->deregister_calls = atomic_load(&s->deregister_calls);
    out->get_token_calls = atomic_load(&s->get_token_calls);
    out->free_token_calls = atomic_load(&s->free_token_calls);
    out->failed_calls = atomic_load(&s->failed_calls);
    out->bad_frees = atomic_load(&s->bad_frees);
    out->busy_deregisters = atomic_load(&s->busy_deregisters);
    out->registered = atomic_load(&s->registered);
    out->outstanding_tokens = atomic_load(&s->outstanding_tokens);
    return 0;
}

/* Makes s3pump_rdma_ready return `ready` on every live handle created under
 * `name`. Returns how many handles it changed. */
int s3pump_rdma_emu_set_ready(const char *name, int ready) {
    int n = 0;
    pthread_mutex_lock(&registry_lock);
    for (struct emu *e = live; e; e = e->next) {
        if (strcmp(e->stats->name, name) == 0) {
            atomic_store(&e->ready, ready ? 1 : 0);
            n++;
        }
    }
    pthread_mutex_unlock(&registry_lock);
    return n;
}
