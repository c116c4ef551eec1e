/* Failures through the C ABI: bad arguments, server errors, failing
 * callbacks, cancelling (from a progress callback and from another thread)
 * and aborting a push upload. The Rust test then checks that the server
 * holds no multipart upload and none of the failed objects.
 *
 * Environment: S3PUMP_C_ENDPOINT, S3PUMP_C_REGION, S3PUMP_C_ACCESS_KEY,
 * S3PUMP_C_SECRET_KEY, S3PUMP_C_BUCKET (the client is built from explicit
 * settings here, nothing from AWS_*). */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <time.h>

#include "common.h"

#define MIB (1024u * 1024u)

static const char *bucket;

/* Expects `rc` to be `status` with an error whose message contains `text`. */
static void expect(int line, int rc, s3pump_error *e, int status, const char *text) {
    if (rc != status)
        FAIL("line %d: got %s, expected %s (%s)", line, s3pump_status_name(rc),
             s3pump_status_name(status), s3pump_error_message(e));
    if (e == NULL || s3pump_error_kind(e) != status) FAIL("line %d: no error or wrong kind", line);
    if (strstr(s3pump_error_message(e), text) == NULL)
        FAIL("line %d: message \"%s\" lacks \"%s\"", line, s3pump_error_message(e), text);
    s3pump_error_free(e);
}
#define EXPECT(call, status, text)                                       \
    do {                                                                 \
        s3pump_error *e_ = NULL;                                         \
        s3pump_error **err = &e_;                                        \
        int rc_ = (call);                                                \
        expect(__LINE__, rc_, e_, status, text);                         \
    } while (0)

static s3pump_client *client_with(const char *secret) {
    s3pump_client_options o;
    s3pump_client_options_init(&o);
    o.endpoint = env("S3PUMP_C_ENDPOINT");
    o.region = env("S3PUMP_C_REGION");
    o.access_key_id = env("S3PUMP_C_ACCESS_KEY");
    o.secret_access_key = secret;
    s3pump_error *e = NULL;
    s3pump_client *c = s3pump_client_new(&o, &e);
    if (c == NULL) FAIL("s3pump_client_new: %s", s3pump_error_message(e));
    return c;
}

/* A read callback that fails after 12 MiB (a multipart upload is open). */
static int64_t read_then_fail(void *ctx, uint8_t *buf, size_t len) {
    source *s = ctx;
    if (s->pos >= 12 * MIB) return -5;
    return read_source(ctx, buf, len);
}

static int write_fails(void *ctx, const uint8_t *buf, size_t len) {
    (void)ctx, (void)buf, (void)len;
    return 7;
}

static int cancel_at_first(void *ctx, uint64_t done, uint64_t total) {
    (void)done, (void)total;
    ++*(int *)ctx;
    return 1;
}

static int no_credentials(void *ctx, s3pump_credentials *out) {
    (void)ctx, (void)out;
    return 1;
}

/* An endless slow stream: only a cancel ends its upload. */
static int64_t read_slowly(void *ctx, uint8_t *buf, size_t len) {
    struct timespec ms = {0, 1000000};
    nanosleep(&ms, NULL);
    return read_source(ctx, buf, len < 65536 ? len : 65536);
}

static void *cancel_later(void *cancel) {
    struct timespec t = {0, 300000000};
    nanosleep(&t, NULL);
    s3pump_cancel_cancel(cancel);
    return NULL;
}

int main(void) {
    bucket = env("S3PUMP_C_BUCKET");
    s3pump_client *client = client_with(env("S3PUMP_C_SECRET_KEY"));
    s3pump_put_options put;
    s3pump_put_options_init(&put);
    put.part_size = 5 * MIB;
    uint8_t data[100] = {0};

    /* Bad arguments: errors naming what was wrong, nothing sent. */
    EXPECT(s3pump_put_buffer(client, NULL, "k", data, 10, NULL, NULL, err),
           S3PUMP_INVALID_ARGUMENT, "bucket is NULL");
    EXPECT(s3pump_put_buffer(NULL, bucket, "k", data, 10, NULL, NULL, err),
           S3PUMP_INVALID_ARGUMENT, "client is NULL");
    EXPECT(s3pump_put_buffer(client, bucket, "bad\xff", data, 10, NULL, NULL, err),
           S3PUMP_INVALID_ARGUMENT, "key is not valid UTF-8");
    EXPECT(s3pump_put_object(client, bucket, "k", NULL, NULL, NULL, NULL, err),
           S3PUMP_INVALID_ARGUMENT, "read is NULL");
    s3pump_put_options uninit;
    memset(&uninit, 0, sizeof uninit);
    EXPECT(s3pump_put_buffer(client, bucket, "k", data, 10, &uninit, NULL, err),
           S3PUMP_INVALID_ARGUMENT, "s3pump_put_options_init");
    s3pump_put_output out_uninit;
    memset(&out_uninit, 0, sizeof out_uninit);
    EXPECT(s3pump_put_buffer(client, bucket, "k", data, 10, NULL, &out_uninit, err),
           S3PUMP_INVALID_ARGUMENT, "s3pump_put_output_init");
    EXPECT(s3pump_upload_file(client, bucket, "k", "/nonexistent/file", NULL, NULL, err),
           S3PUMP_IO, "/nonexistent/file");
    /* err may be NULL: the status alone. */
    CHECK(s3pump_put_buffer(client, NULL, "k", data, 10, NULL, NULL, NULL) ==
          S3PUMP_INVALID_ARGUMENT);
    s3pump_client_options copts;
    s3pump_client_options_init(&copts);
    copts.addressing = 9;
    s3pump_error *e = NULL;
    CHECK(s3pump_client_new(&copts, &e) == NULL);
    expect(__LINE__, s3pump_error_kind(e), e, S3PUMP_INVALID_ARGUMENT, "addressing is 9");

    /* Server errors. */
    EXPECT(s3pump_head_object(client, bucket, "missing", NULL, err), S3PUMP_NOT_FOUND, "");
    EXPECT(s3pump_download_to_buffer(client, "no-such-bucket", "k", data, 10, NULL, NULL, err),
           S3PUMP_NOT_FOUND, "");
    s3pump_client *wrong = client_with("not-the-secret");
    EXPECT(s3pump_put_buffer(wrong, bucket, "k", data, 10, NULL, NULL, err),
           S3PUMP_ACCESS_DENIED, "");
    s3pump_client_free(wrong);
    s3pump_client_options_init(&copts);
    copts.endpoint = env("S3PUMP_C_ENDPOINT");
    copts.credentials = no_credentials;
    s3pump_client *nocreds = s3pump_client_new(&copts, &e);
    if (nocreds != NULL) {
        EXPECT(s3pump_put_buffer(nocreds, bucket, "k", data, 10, NULL, NULL, err),
               S3PUMP_CREDENTIALS, "credentials callback failed");
        s3pump_client_free(nocreds);
    } else {
        expect(__LINE__, s3pump_error_kind(e), e, S3PUMP_CREDENTIALS, "credentials callback failed");
    }

    /* A failing read callback aborts the multipart upload. */
    source src = {64 * MIB, 0, 0};
    EXPECT(s3pump_put_object(client, bucket, "failed.bin", read_then_fail, &src, &put, NULL, err),
           S3PUMP_IO, "the read callback failed (returned -5)");

    /* A failing write callback stops the download. */
    OK(s3pump_put_buffer(client, bucket, "hundred.bin", data, 100, NULL, NULL, err));
    EXPECT(s3pump_download(client, bucket, "hundred.bin", write_fails, NULL, NULL, NULL, err),
           S3PUMP_IO, "the write callback failed (returned 7)");
    EXPECT(s3pump_download_to_buffer(client, bucket, "hundred.bin", data, 99, NULL, NULL, err),
           S3PUMP_IO, "larger than the buffer of 99 bytes");

    /* A progress callback that cancels. */
    int calls = 0;
    s3pump_put_options cancelling = put;
    cancelling.progress = cancel_at_first;
    cancelling.progress_ctx = &calls;
    source src2 = {24 * MIB, 0, 0};
    EXPECT(s3pump_put_object(client, bucket, "cancelled.bin", read_source, &src2, &cancelling,
                             NULL, err),
           S3PUMP_CANCELLED, "cancelled");
    CHECK(calls == 1);

    /* A cancel handle triggered from another thread stops an endless upload. */
    s3pump_cancel *cancel = s3pump_cancel_new();
    CHECK(!s3pump_cancel_is_cancelled(cancel));
    s3pump_put_options with_cancel = put;
    with_cancel.cancel = cancel;
    pthread_t t;
    CHECK(pthread_create(&t, NULL, cancel_later, cancel) == 0);
    source endless = {UINT64_MAX, 0, 0};
    EXPECT(s3pump_put_object(client, bucket, "endless.bin", read_slowly, &endless, &with_cancel,
                             NULL, err),
           S3PUMP_CANCELLED, "cancelled");
    CHECK(pthread_join(t, NULL) == 0);
    CHECK(s3pump_cancel_is_cancelled(cancel));
    s3pump_cancel_free(cancel);

    /* A push upload aborted after a multipart upload began. */
    s3pump_upload *up = s3pump_upload_open(client, bucket, "aborted.bin", &put, &e);
    if (up == NULL) FAIL("s3pump_upload_open: %s", s3pump_error_message(e));
    uint8_t *buf = calloc(1, 12 * MIB);
    CHECK(buf != NULL);
    OK(s3pump_upload_write(up, buf, 12 * MIB, err));
    free(buf);
    s3pump_upload_abort(up);
    EXPECT(s3pump_upload_write(NULL, data, 1, err), S3PUMP_INVALID_ARGUMENT, "upload is NULL");

    s3pump_client_free(client);
    printf("errors: ok\n");
    return 0;
}
