/*
 * s3pump_rdma.h: the C interface s3pump loads at run time to send parts by
 * RDMA. ABI version 1.
 *
 * A site implements these functions in a shared library (usually a small
 * shim around its vendor RDMA client, see docs/RDMA.md) and points s3pump at
 * it with S3PUMP_RDMA_LIBRARY=/path/lib.so, `--rdma-library PATH`, or
 * `FfiRdmaProvider::load(path, config)` in Rust. s3pump dlopens the library,
 * resolves every function below by name when it loads (a missing one is an
 * error naming it), and checks s3pump_rdma_abi_version() first.
 *
 * How s3pump drives it:
 *
 *   h = s3pump_rdma_init(config, err, sizeof err)   once per provider
 *   s3pump_rdma_ready(h)                            before registering memory
 *   s3pump_rdma_register_buffer(h, buf, len)        once per part buffer
 *     per request, on a worker thread:
 *     t = s3pump_rdma_get_token(h, buf, n, off, S3PUMP_RDMA_OP_PUT)
 *     ... HTTP request carrying `x-amz-rdma-token: <t>` ...
 *     s3pump_rdma_free_token(h, t)                  after the reply
 *   s3pump_rdma_deregister_buffer(h, buf)           before buf is unmapped
 *   s3pump_rdma_fini(h)                             once, last
 *
 * Threads. Every function except init and fini may be called concurrently
 * from several threads on the same handle: tokens are minted and freed from
 * s3pump's worker threads (one thread per part in flight), and buffers are
 * registered and deregistered from whichever thread needs a new one. The
 * library does its own locking. s3pump never calls a function on a handle
 * after, or concurrently with, fini on that handle.
 *
 * Lifetimes.
 *  - The handle lives from init until fini. fini is called exactly once, after
 *    every buffer registered on the handle has been deregistered and every
 *    token minted on it has been freed.
 *  - A registered buffer stays mapped and valid until deregister_buffer on it
 *    has returned. s3pump registers each buffer once and deregisters it once;
 *    it never registers overlapping buffers on one handle.
 *  - A token is valid from get_token until free_token. s3pump passes back the
 *    exact pointer get_token returned, once, before deregistering the buffer
 *    the token was minted for. It copies the text before sending it and never
 *    writes through the pointer.
 *  - Strings the library returns (last_error) belong to the library.
 */
#ifndef S3PUMP_RDMA_H
#define S3PUMP_RDMA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The version of this interface. s3pump refuses a library whose
 * s3pump_rdma_abi_version() returns anything else. */
#define S3PUMP_RDMA_ABI_VERSION 1u

/* Values of the `op` argument of s3pump_rdma_get_token. Note that NVIDIA
 * cuObject numbers its cuObjOpType_t the other way round (CUOBJ_GET = 0,
 * CUOBJ_PUT = 1): a shim must translate, not cast. */
#define S3PUMP_RDMA_OP_PUT 0 /* upload: the server reads the range */
#define S3PUMP_RDMA_OP_GET 1 /* download: the server writes the range */

/* The largest buffer s3pump registers: 4 GiB - 1 bytes. A library with a
 * lower limit fails register_buffer for larger buffers (s3pump then reports
 * the error), so configure part sizes below it. */
#define S3PUMP_RDMA_MAX_BUFFER 0xFFFFFFFFull

/* Returns S3PUMP_RDMA_ABI_VERSION as the library was built. Called first,
 * before init; must not fail. */
uint32_t s3pump_rdma_abi_version(void);

/* Creates a client. `config` is a NUL-terminated, library-defined string
 * (S3PUMP_RDMA_CONFIG, "" when unset), never NULL. Returns an opaque non-NULL
 * handle, or NULL on failure after writing a NUL-terminated message of at
 * most err_len bytes (terminator included) into `err`. s3pump passes a
 * zeroed buffer of at least 256 bytes. May block (e.g. to connect). */
void *s3pump_rdma_init(const char *config, char *err, size_t err_len);

/* Non-zero when the client can move data now (connected to the RDMA
 * fabric); 0 otherwise, and s3pump then sends over HTTP. Cheap: s3pump calls
 * it before registering each buffer. */
int s3pump_rdma_ready(void *handle);

/* Registers `len` bytes of host memory at `ptr` (0 < len <=
 * S3PUMP_RDMA_MAX_BUFFER; s3pump's part buffers are page-aligned anonymous
 * mappings) with the NIC. Returns 0 on success, any other value
 * on failure (then last_error says why). */
int s3pump_rdma_register_buffer(void *handle, void *ptr, size_t len);

/* Deregisters the buffer registered at `ptr` (the same pointer given to
 * register_buffer). Returns 0 on success, any other value on failure (s3pump
 * logs last_error; the memory is unmapped afterwards either way). */
int s3pump_rdma_deregister_buffer(void *handle, void *ptr);

/* Mints a token that lets the server access [ptr + offset, ptr + offset +
 * len) for one request. `ptr` is the start of a registered buffer (as given
 * to register_buffer) and offset + len does not exceed its length; `op` is
 * S3PUMP_RDMA_OP_PUT or S3PUMP_RDMA_OP_GET. Returns a NUL-terminated string
 * of visible ASCII (0x21..0x7E, it goes in an HTTP header as is) that stays
 * valid until free_token, or NULL on failure (then last_error says why).
 * Every call returns a new token: s3pump mints a fresh one for each attempt
 * of a request, and the library may pick a different path each time. */
char *s3pump_rdma_get_token(void *handle, void *ptr, size_t len, size_t offset, int op);

/* Releases a token returned by get_token on this handle. */
void s3pump_rdma_free_token(void *handle, char *token);

/* Describes the last failure of a call made on the calling thread (a
 * thread-local message), or returns NULL when there is nothing to say.
 * s3pump calls it right after a failing call, on the same thread, and copies
 * the text; it must stay valid until the next call on that thread. */
const char *s3pump_rdma_last_error(void *handle);

/* Destroys the client. Called once, last. */
void s3pump_rdma_fini(void *handle);

#ifdef __cplusplus
}
#endif

#endif /* S3PUMP_RDMA_H */
