/*
 * A deliberately broken RDMA library, to test the checks s3pump makes when it
 * loads one (tests/rdma_ffi.rs). Built by tests/support/rdma_emu.rs with:
 *   -DOMIT_GET_TOKEN      leave out s3pump_rdma_get_token
 *   -DABI_VERSION=N       report ABI version N
 * Nothing here is ever expected to move data: init always fails.
 */
#include "s3pump_rdma.h"

#ifndef ABI_VERSION
#define ABI_VERSION S3PUMP_RDMA_ABI_VERSION
#endif

uint32_t s3pump_rdma_abi_version(void) { return ABI_VERSION; }

void *s3pump_rdma_init(const char *config, char *err, size_t err_len) {
    (void)config;
    if (err_len > 0)
        err[0] = '\0';
    return 0;
}

int s3pump_rdma_ready(void *handle) {
    (void)handle;
    return 0;
}

int s3pump_rdma_register_buffer(void *handle, void *ptr, size_t len) {
    (void)handle;
    (void)ptr;
    (void)len;
    return 1;
}

int s3pump_rdma_deregister_buffer(void *handle, void *ptr) {
    (void)handle;
    (void)ptr;
    return 1;
}

#ifndef OMIT_GET_TOKEN
char *s3pump_rdma_get_token(void *handle, void *ptr, size_t len, size_t offset, int op) {
    (void)handle;
    (void)ptr;
    (void)len;
    (void)offset;
    (void)op;
    return 0;
}
#endif

void s3pump_rdma_free_token(void *handle, char *token) {
    (void)handle;
    (void)token;
}

const char *s3pump_rdma_last_error(void *handle) {
    (void)handle;
    return 0;
}

void s3pump_rdma_fini(void *handle) { (void)handle; }
