/* What the C test programs share: checks that exit with a message, the
 * server settings the Rust test passes through the environment, and the
 * bytes of a test object (byte i is a function of i, so any range can be
 * checked without keeping the object). */
#ifndef S3PUMP_TEST_COMMON_H
#define S3PUMP_TEST_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "s3pump.h"

#define FAIL(...)                                                        \
    do {                                                                 \
        fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                  \
        fprintf(stderr, __VA_ARGS__);                                    \
        fprintf(stderr, "\n");                                           \
        exit(1);                                                         \
    } while (0)

#define CHECK(cond)                                                      \
    do {                                                                 \
        if (!(cond)) FAIL("check failed: %s", #cond);                    \
    } while (0)

/* Runs an s3pump call that must succeed. */
#define OK(call)                                                         \
    do {                                                                 \
        s3pump_error *ok_err_ = NULL;                                    \
        s3pump_error **err = &ok_err_;                                   \
        int ok_rc_ = (call);                                             \
        if (ok_rc_ != S3PUMP_OK)                                         \
            FAIL("%s failed: %s (%s)", #call, s3pump_status_name(ok_rc_),\
                 s3pump_error_message(ok_err_));                         \
        CHECK(ok_err_ == NULL);                                          \
    } while (0)

static inline const char *env(const char *name) {
    const char *v = getenv(name);
    if (v == NULL || *v == '\0') FAIL("%s is not set", name);
    return v;
}

static inline uint8_t byte_at(uint64_t i) {
    uint64_t x = (i + 1) * 0x9E3779B97F4A7C15ull;
    return (uint8_t)(x >> 56);
}

/* A read callback's source: `size` bytes of byte_at, handed out in reads of
 * varying length. */
typedef struct source {
    uint64_t size;
    uint64_t pos;
    uint64_t calls;
} source;

static inline int64_t read_source(void *ctx, uint8_t *buf, size_t len) {
    source *s = ctx;
    uint64_t left = s->size - s->pos;
    size_t want = len;
    /* Short reads too: 1 call in 3 returns at most 1000 bytes. */
    if (s->calls++ % 3 == 2 && want > 1000) want = 1000;
    if ((uint64_t)want > left) want = (size_t)left;
    for (size_t i = 0; i < want; i++) buf[i] = byte_at(s->pos + i);
    s->pos += want;
    return (int64_t)want;
}

/* An in-order write callback's sink: checks every byte against byte_at. */
typedef struct sink {
    uint64_t pos;
    uint64_t bad;
} sink;

static inline int write_sink(void *ctx, const uint8_t *buf, size_t len) {
    sink *s = ctx;
    for (size_t i = 0; i < len; i++)
        if (buf[i] != byte_at(s->pos + i)) s->bad++;
    s->pos += len;
    return 0;
}

/* Whether the file at `path` holds exactly `size` bytes of byte_at. */
static inline int file_matches(const char *path, uint64_t size) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) return 0;
    uint64_t i = 0;
    int c, ok = 1;
    while ((c = fgetc(f)) != EOF) {
        if (i >= size || (uint8_t)c != byte_at(i)) ok = 0;
        i++;
    }
    fclose(f);
    return ok && i == size;
}

static inline void write_file(const char *path, uint64_t size) {
    FILE *f = fopen(path, "wb");
    if (f == NULL) FAIL("cannot create %s", path);
    for (uint64_t i = 0; i < size; i++) fputc(byte_at(i), f);
    if (fclose(f) != 0) FAIL("cannot write %s", path);
}

#endif
