/*
 * s3pump.h: the C ABI of s3pump, a blocking S3 client that uploads and
 * downloads large objects with many parts in flight.
 *
 * Link with -ls3pump (libs3pump.so or libs3pump.a; with the static library
 * also -lpthread -ldl -lm). `pkg-config --cflags --libs s3pump` gives both.
 *
 * Conventions, for every function below:
 * - Every function that can fail returns 0 (S3PUMP_OK) on success and an
 *   s3pump_status (the kind of the failure) otherwise. Functions returning a
 *   handle return NULL on failure.
 * - On failure, when `err` is not NULL, `*err` receives a new s3pump_error
 *   that the caller owns and frees with s3pump_error_free. On success `*err`
 *   is left untouched.
 * - A NULL or non-UTF-8 string argument, a NULL handle, or an options/output
 *   struct whose struct_size was not set by its _init function is an error
 *   (S3PUMP_INVALID_ARGUMENT), never a crash. No panic of the library ever
 *   crosses this boundary: it is turned into S3PUMP_INTERNAL.
 * - Options (`opts`) may be NULL for the defaults; an options struct is
 *   read, never kept: the caller may free it when the call returns.
 * - Outputs (`out`) may be NULL when the caller does not want them. An
 *   output filled by a successful call owns its strings; release them with
 *   its _free function. A failed call leaves `*out` as it was.
 * - Options and outputs start with `size_t struct_size`: set it with the
 *   struct's _init function (or to sizeof the struct). A later version of
 *   the library that adds fields reads and writes only the first
 *   struct_size bytes, so programs built against this header keep working.
 * - Strings the library returns are NUL-terminated UTF-8.
 * - A client is thread-safe: share one per process, call it from any number
 *   of threads at once. Callbacks may be called from threads of the library,
 *   never two at once for the same transfer; they must not call back into
 *   the same transfer.
 */
#ifndef S3PUMP_H
#define S3PUMP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* What s3pump_version returns for this header. */
#define S3PUMP_VERSION "0.1.0"

/* The status every function returns: 0 or the kind of the failure. */
typedef enum s3pump_status {
    S3PUMP_OK = 0,
    S3PUMP_NOT_FOUND = 1,        /* the bucket, object or upload does not exist */
    S3PUMP_ACCESS_DENIED = 2,    /* credentials, signature or permission refused */
    S3PUMP_THROTTLED = 3,        /* 429, 503, SlowDown */
    S3PUMP_SERVER_ERROR = 4,     /* a 5xx other than 503 */
    S3PUMP_TIMEOUT = 5,          /* connect or inactivity timeout, RequestTimeout */
    S3PUMP_TRANSPORT = 6,        /* DNS, connect, reset, a body cut short */
    S3PUMP_TLS = 7,              /* the server's certificate failed verification */
    S3PUMP_PRECONDITION = 8,     /* 412, 409, 416 */
    S3PUMP_OBJECT_CHANGED = 9,   /* the object changed during a download */
    S3PUMP_INVALID_ARGUMENT = 10,/* a bad argument, locally or for the server */
    S3PUMP_INVALID_RESPONSE = 11,/* the server's reply could not be understood */
    S3PUMP_CHECKSUM = 12,        /* a checksum or digest did not match */
    S3PUMP_CANCELLED = 13,       /* cancelled by a cancel handle or a progress callback */
    S3PUMP_CREDENTIALS = 14,     /* no usable credentials */
    S3PUMP_IO = 15,              /* reading the source or writing the destination failed,
                                    a callback included */
    S3PUMP_RDMA = 16,            /* the RDMA provider failed */
    S3PUMP_INTERNAL = 17,        /* a bug in s3pump (a panic included) */
    S3PUMP_OTHER = 18            /* anything else: see s3pump_error_s3_code */
} s3pump_status;

/* Declared sizes and limits: "not given". */
#define S3PUMP_SIZE_UNKNOWN UINT64_MAX

typedef struct s3pump_client s3pump_client;   /* opaque, thread-safe: share one per process */
typedef struct s3pump_error s3pump_error;     /* opaque */
typedef struct s3pump_cancel s3pump_cancel;   /* opaque, thread-safe */
typedef struct s3pump_upload s3pump_upload;   /* opaque: a push-style upload */
typedef struct s3pump_list s3pump_list;       /* opaque: a listing in progress */

/* ---- Callbacks ---------------------------------------------------------- */

/* Fills up to `len` bytes of `buf`; returns how many (>0), 0 at the end of
 * the data, <0 on error (the upload is aborted: S3PUMP_IO). */
typedef int64_t (*s3pump_read_fn)(void *ctx, uint8_t *buf, size_t len);

/* Takes all `len` bytes of `buf`, the next ones of the object; returns 0, or
 * non-zero on error (the download stops: S3PUMP_IO). */
typedef int (*s3pump_write_fn)(void *ctx, const uint8_t *buf, size_t len);

/* How far a transfer has got: `done` bytes of `total` (S3PUMP_SIZE_UNKNOWN
 * when not declared). Returns 0 to go on, non-zero to cancel the transfer
 * (it then fails with S3PUMP_CANCELLED and leaves nothing behind). */
typedef int (*s3pump_progress_fn)(void *ctx, uint64_t done, uint64_t total);

/* Credentials handed out by a credentials callback: the strings are copied
 * before the callback's caller returns. */
typedef struct s3pump_credentials {
    const char *access_key_id;
    const char *secret_access_key;
    const char *session_token;     /* NULL: none */
    int64_t expires_unix;          /* seconds since 1970 when they expire; 0: never */
} s3pump_credentials;

/* Fills `*out` and returns 0, or returns non-zero when there are no
 * credentials (the request fails with S3PUMP_CREDENTIALS). Called from any
 * thread, before the first request and again before the credentials expire. */
typedef int (*s3pump_credentials_fn)(void *ctx, s3pump_credentials *out);

/* ---- Errors ------------------------------------------------------------- */

/* The message of `err` (owned by `err`), or "" when `err` is NULL. */
const char *s3pump_error_message(const s3pump_error *err);
/* The kind of `err` (an s3pump_status), or S3PUMP_OK when `err` is NULL. */
int s3pump_error_kind(const s3pump_error *err);
/* The S3 error code (such as "NoSuchKey") owned by `err`, or NULL. */
const char *s3pump_error_s3_code(const s3pump_error *err);
/* The multipart upload an upload failure belonged to (owned by `err`), or NULL. */
const char *s3pump_error_upload_id(const s3pump_error *err);
/* Whether sending the same request again may succeed (1) or not (0). */
int s3pump_error_is_retryable(const s3pump_error *err);
/* Frees `err`; NULL is a no-op. */
void s3pump_error_free(s3pump_error *err);
/* A static name for a status, such as "NOT_FOUND"; "UNKNOWN" for other values. */
const char *s3pump_status_name(int status);
/* The library's version, static. */
const char *s3pump_version(void);

/* ---- Clients ------------------------------------------------------------ */

typedef enum s3pump_addressing {
    S3PUMP_ADDRESSING_AUTO = 0,   /* path style for custom endpoints, virtual host on AWS */
    S3PUMP_ADDRESSING_PATH = 1,
    S3PUMP_ADDRESSING_VIRTUAL_HOST = 2
} s3pump_addressing;

typedef struct s3pump_client_options {
    size_t struct_size;            /* set by s3pump_client_options_init */
    /* 1: resolve every setting left unset (NULL / 0) the way the AWS CLI does,
     * from the environment and the shared files, as s3pump_client_from_env.
     * 0 (the default): read nothing from the environment. */
    int from_env;
    const char *endpoint;          /* such as "http://127.0.0.1:9000"; NULL: AWS */
    const char *region;            /* NULL: the default (us-east-1) */
    const char *access_key_id;     /* with secret_access_key: static credentials */
    const char *secret_access_key;
    const char *session_token;     /* NULL: none */
    s3pump_credentials_fn credentials; /* or a callback (NULL: none) */
    void *credentials_ctx;
    int anonymous;                 /* 1: unsigned requests */
    const char *profile;           /* with from_env: the profile of the shared files */
    int addressing;                /* an s3pump_addressing */
    uint64_t memory_limit;         /* bytes of transfer buffers; 0: the default (2 GiB) */
    uint32_t max_connections;      /* 0: the default (64) */
    uint32_t connect_timeout_ms;   /* 0: the default (10 s) */
    uint32_t idle_timeout_ms;      /* 0: the default (30 s) */
    const char *ca_bundle;         /* PEM file of CAs to trust as well; NULL: none */
    const char *proxy;             /* proxy URL; NULL: none (or the environment's) */
    int no_proxy;                  /* 1: never use a proxy */
} s3pump_client_options;

void s3pump_client_options_init(s3pump_client_options *opts);

/* A client configured as Client::from_env (the AWS CLI's environment
 * variables, profile and credentials chain). NULL on failure. Free with
 * s3pump_client_free. */
s3pump_client *s3pump_client_from_env(s3pump_error **err);
/* A client from explicit settings (`opts` NULL: every default). NULL on
 * failure. Free with s3pump_client_free. */
s3pump_client *s3pump_client_new(const s3pump_client_options *opts, s3pump_error **err);
/* Frees `client` once no call on it is running; NULL is a no-op. */
void s3pump_client_free(s3pump_client *client);

/* ---- Cancelling --------------------------------------------------------- */

/* A cancel handle: give it to transfers through their options, then call
 * s3pump_cancel_cancel from any thread to stop them. Free with
 * s3pump_cancel_free once no transfer using it is running. */
s3pump_cancel *s3pump_cancel_new(void);
void s3pump_cancel_cancel(const s3pump_cancel *cancel);
int s3pump_cancel_is_cancelled(const s3pump_cancel *cancel);
void s3pump_cancel_free(s3pump_cancel *cancel);

/* ---- Uploads ------------------------------------------------------------ */

typedef enum s3pump_checksum {
    S3PUMP_CHECKSUM_CRC64NVME = 0, /* the default */
    S3PUMP_CHECKSUM_CRC32C = 1,
    S3PUMP_CHECKSUM_NONE = 2
} s3pump_checksum;

typedef struct s3pump_put_options {
    size_t struct_size;            /* set by s3pump_put_options_init */
    uint64_t part_size;            /* 0: chosen from the size (8 MiB at least) */
    uint32_t max_inflight_parts;   /* 0: the default (8) */
    uint64_t size;                 /* the declared size; S3PUMP_SIZE_UNKNOWN: not declared */
    uint64_t memory_limit;         /* 0: the client's */
    const char *content_type;      /* NULL: none */
    int checksum;                  /* an s3pump_checksum */
    int keep_failed_upload;        /* 1: do not abort a failed multipart upload */
    s3pump_progress_fn progress;   /* NULL: none */
    void *progress_ctx;
    const s3pump_cancel *cancel;   /* NULL: none */
} s3pump_put_options;

void s3pump_put_options_init(s3pump_put_options *opts);

typedef struct s3pump_put_output {
    size_t struct_size;            /* set by s3pump_put_output_init */
    uint64_t bytes;                /* bytes uploaded */
    uint32_t parts;                /* parts (1 for a single PutObject) */
    char *etag;                    /* the object's ETag, quotes included */
    char *version_id;              /* NULL when the bucket is not versioned */
    char *checksum;                /* the object's checksum (base64), or NULL */
} s3pump_put_output;

void s3pump_put_output_init(s3pump_put_output *out);
/* Frees the strings of `out` and sets them to NULL; NULL is a no-op. */
void s3pump_put_output_free(s3pump_put_output *out);

/* Uploads what `read` returns until it returns 0, with up to
 * max_inflight_parts parts in flight. `read` is called from a thread of the
 * library, one call at a time; a failing `read` aborts the upload. */
int s3pump_put_object(s3pump_client *client, const char *bucket, const char *key,
                      s3pump_read_fn read, void *ctx, const s3pump_put_options *opts,
                      s3pump_put_output *out, s3pump_error **err);
/* Uploads `len` bytes of `buf` (not kept after the call returns). */
int s3pump_put_buffer(s3pump_client *client, const char *bucket, const char *key,
                      const uint8_t *buf, size_t len, const s3pump_put_options *opts,
                      s3pump_put_output *out, s3pump_error **err);
/* Uploads the file at `path`, each part read by the worker sending it. */
int s3pump_upload_file(s3pump_client *client, const char *bucket, const char *key, const char *path,
                       const s3pump_put_options *opts, s3pump_put_output *out, s3pump_error **err);

/* A push-style upload: open it, write buffers as they are produced, then
 * finish (complete the object) or abort (leave nothing behind). Each write
 * blocks until its bytes are in the library's buffers. One thread at a time
 * per upload. Both finish and abort free the handle. */
s3pump_upload *s3pump_upload_open(s3pump_client *client, const char *bucket, const char *key,
                                  const s3pump_put_options *opts, s3pump_error **err);
int s3pump_upload_write(s3pump_upload *upload, const uint8_t *buf, size_t len, s3pump_error **err);
int s3pump_upload_finish(s3pump_upload *upload, s3pump_put_output *out, s3pump_error **err);
void s3pump_upload_abort(s3pump_upload *upload);

/* ---- Downloads ---------------------------------------------------------- */

typedef struct s3pump_download_options {
    size_t struct_size;            /* set by s3pump_download_options_init */
    uint64_t part_size;            /* 0: the default */
    uint32_t max_inflight_parts;   /* 0: the default (8) */
    uint64_t memory_limit;         /* 0: the client's */
    int verify_checksum;           /* 1 (the default): check a full-object checksum */
    s3pump_progress_fn progress;   /* NULL: none */
    void *progress_ctx;
    const s3pump_cancel *cancel;   /* NULL: none */
} s3pump_download_options;

void s3pump_download_options_init(s3pump_download_options *opts);

typedef struct s3pump_download_output {
    size_t struct_size;            /* set by s3pump_download_output_init */
    uint64_t size;                 /* the object's size */
    uint64_t parts;                /* ranged GETs */
    char *etag;
    char *version_id;              /* NULL: none */
    char *checksum;                /* the checksum verified, or NULL */
} s3pump_download_output;

void s3pump_download_output_init(s3pump_download_output *out);
/* Frees the strings of `out` and sets them to NULL; NULL is a no-op. */
void s3pump_download_output_free(s3pump_download_output *out);

/* Downloads into the file at `path`: ranges written at their offsets in
 * parallel into a temporary file renamed over `path` at the end; on failure
 * `path` is left as it was. */
int s3pump_download_to_file(s3pump_client *client, const char *bucket, const char *key, const char *path,
                            const s3pump_download_options *opts, s3pump_download_output *out,
                            s3pump_error **err);
/* Downloads strictly in order through `write`, called on the caller's thread. */
int s3pump_download(s3pump_client *client, const char *bucket, const char *key,
                    s3pump_write_fn write, void *ctx, const s3pump_download_options *opts,
                    s3pump_download_output *out, s3pump_error **err);
/* Downloads into the caller's buffer of `cap` bytes; an object larger than
 * `cap` is S3PUMP_IO (the buffer then holds a prefix of it). */
int s3pump_download_to_buffer(s3pump_client *client, const char *bucket, const char *key,
                              uint8_t *buf, size_t cap, const s3pump_download_options *opts,
                              s3pump_download_output *out, s3pump_error **err);

/* ---- Objects ------------------------------------------------------------ */

typedef struct s3pump_object_info {
    size_t struct_size;            /* set by s3pump_object_info_init */
    uint64_t size;
    char *etag;
    char *content_type;            /* NULL: none */
    char *version_id;              /* NULL: none */
    char *last_modified;           /* as the server sent it, or NULL */
} s3pump_object_info;

void s3pump_object_info_init(s3pump_object_info *info);
void s3pump_object_info_free(s3pump_object_info *info);

/* HeadObject: S3PUMP_NOT_FOUND when the object (or bucket) does not exist. */
int s3pump_head_object(s3pump_client *client, const char *bucket, const char *key,
                       s3pump_object_info *out, s3pump_error **err);
/* DeleteObject (deleting a missing key succeeds, as in S3). */
int s3pump_delete_object(s3pump_client *client, const char *bucket, const char *key,
                         s3pump_error **err);

typedef struct s3pump_object_summary {
    size_t struct_size;            /* set by s3pump_object_summary_init */
    char *key;                     /* NULL: the listing has ended */
    uint64_t size;
    char *etag;                    /* NULL: none */
    char *last_modified;           /* NULL: none */
} s3pump_object_summary;

void s3pump_object_summary_init(s3pump_object_summary *item);
void s3pump_object_summary_free(s3pump_object_summary *item);

/* Lists the objects under `prefix` ("" for all), pages fetched as
 * s3pump_list_next asks for them. Free with s3pump_list_free. */
s3pump_list *s3pump_list_objects(s3pump_client *client, const char *bucket, const char *prefix,
                                 s3pump_error **err);
/* The next object into `*out` (free its strings with
 * s3pump_object_summary_free); at the end returns 0 with out->key NULL. */
int s3pump_list_next(s3pump_list *list, s3pump_object_summary *out, s3pump_error **err);
void s3pump_list_free(s3pump_list *list);

#ifdef __cplusplus
}
#endif

#endif /* S3PUMP_H */
