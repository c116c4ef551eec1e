/* The main job through the C ABI: a client from the environment uploads
 * from a read callback (multipart), from a file and by pushing buffers, and
 * downloads each object back, byte-identical, into a file, through an
 * in-order callback and into a buffer; then head, list and delete.
 *
 * Environment: AWS_ENDPOINT_URL_S3, AWS_REGION, AWS_ACCESS_KEY_ID,
 * AWS_SECRET_ACCESS_KEY (read by s3pump_client_from_env), S3PUMP_C_BUCKET,
 * S3PUMP_C_DIR (a scratch directory), S3PUMP_C_SIZE (bytes per object). */
#include "common.h"

#define MIB (1024u * 1024u)

int main(void) {
    const char *bucket = env("S3PUMP_C_BUCKET");
    const char *dir = env("S3PUMP_C_DIR");
    uint64_t size = strtoull(env("S3PUMP_C_SIZE"), NULL, 10);
    char src_path[4096], dst_path[4096];
    snprintf(src_path, sizeof src_path, "%s/source.bin", dir);
    snprintf(dst_path, sizeof dst_path, "%s/back.bin", dir);

    s3pump_error *e = NULL;
    s3pump_client *client = s3pump_client_from_env(&e);
    if (client == NULL) FAIL("s3pump_client_from_env: %s", s3pump_error_message(e));

    s3pump_put_options put;
    s3pump_put_options_init(&put);
    put.part_size = 5 * MIB;
    put.max_inflight_parts = 4;

    /* 1. Pull upload from a read callback: a stream of unknown size. */
    source src = {size, 0, 0};
    s3pump_put_output out;
    s3pump_put_output_init(&out);
    OK(s3pump_put_object(client, bucket, "pulled.bin", read_source, &src, &put, &out, err));
    CHECK(out.bytes == size);
    CHECK(out.parts == (uint32_t)((size + 5 * MIB - 1) / (5 * MIB)));
    CHECK(out.parts > 1);
    CHECK(out.etag != NULL && out.etag[0] == '"');
    CHECK(src.pos == size);
    s3pump_put_output_free(&out);
    CHECK(out.etag == NULL);

    /* ... downloaded back in order through a write callback. */
    s3pump_download_options dl;
    s3pump_download_options_init(&dl);
    dl.part_size = 1 * MIB;
    dl.max_inflight_parts = 4;
    sink snk = {0, 0};
    s3pump_download_output dout;
    s3pump_download_output_init(&dout);
    OK(s3pump_download(client, bucket, "pulled.bin", write_sink, &snk, &dl, &dout, err));
    CHECK(snk.pos == size);
    CHECK(snk.bad == 0);
    CHECK(dout.size == size);
    CHECK(dout.parts > 1);
    s3pump_download_output_free(&dout);

    /* 2. A file uploaded and downloaded back into another file. */
    write_file(src_path, size);
    s3pump_put_output_init(&out);
    OK(s3pump_upload_file(client, bucket, "file.bin", src_path, &put, &out, err));
    CHECK(out.bytes == size);
    CHECK(out.parts > 1);
    s3pump_put_output_free(&out);
    OK(s3pump_download_to_file(client, bucket, "file.bin", dst_path, &dl, &dout, err));
    CHECK(dout.size == size);
    CHECK(file_matches(dst_path, size));
    s3pump_download_output_free(&dout);

    /* 3. A push upload: the program writes buffers of odd sizes. */
    s3pump_upload *up = s3pump_upload_open(client, bucket, "pushed.bin", &put, &e);
    if (up == NULL) FAIL("s3pump_upload_open: %s", s3pump_error_message(e));
    size_t chunk = 777777;
    uint8_t *buf = malloc(chunk);
    CHECK(buf != NULL);
    for (uint64_t pos = 0; pos < size;) {
        size_t n = size - pos < chunk ? (size_t)(size - pos) : chunk;
        for (size_t i = 0; i < n; i++) buf[i] = byte_at(pos + i);
        OK(s3pump_upload_write(up, buf, n, err));
        pos += n;
    }
    free(buf);
    s3pump_put_output_init(&out);
    OK(s3pump_upload_finish(up, &out, err));
    CHECK(out.bytes == size);
    s3pump_put_output_free(&out);

    /* ... downloaded back into the caller's buffer. */
    uint8_t *back = malloc(size);
    CHECK(back != NULL);
    OK(s3pump_download_to_buffer(client, bucket, "pushed.bin", back, size, NULL, NULL, err));
    for (uint64_t i = 0; i < size; i++)
        if (back[i] != byte_at(i)) FAIL("pushed.bin differs at byte %llu", (unsigned long long)i);

    /* 4. A small object from a buffer: one PutObject. */
    s3pump_put_output_init(&out);
    OK(s3pump_put_buffer(client, bucket, "small.bin", back, 1000, NULL, &out, err));
    CHECK(out.parts == 1 && out.bytes == 1000);
    s3pump_put_output_free(&out);
    free(back);

    /* 5. Head, list, delete. */
    s3pump_object_info info;
    s3pump_object_info_init(&info);
    OK(s3pump_head_object(client, bucket, "file.bin", &info, err));
    CHECK(info.size == size);
    CHECK(info.etag != NULL);
    s3pump_object_info_free(&info);

    s3pump_list *list = s3pump_list_objects(client, bucket, "", &e);
    if (list == NULL) FAIL("s3pump_list_objects: %s", s3pump_error_message(e));
    const char *want[] = {"file.bin", "pulled.bin", "pushed.bin", "small.bin"};
    size_t n = 0;
    for (;;) {
        s3pump_object_summary item;
        s3pump_object_summary_init(&item);
        OK(s3pump_list_next(list, &item, err));
        if (item.key == NULL) break;
        CHECK(n < 4);
        if (strcmp(item.key, want[n]) != 0) FAIL("listed %s, expected %s", item.key, want[n]);
        CHECK(item.size == (n == 3 ? 1000 : size));
        s3pump_object_summary_free(&item);
        n++;
    }
    CHECK(n == 4);
    s3pump_list_free(list);

    OK(s3pump_delete_object(client, bucket, "small.bin", err));
    s3pump_object_info_init(&info);
    int rc = s3pump_head_object(client, bucket, "small.bin", &info, &e);
    CHECK(rc == S3PUMP_NOT_FOUND);
    CHECK(s3pump_error_kind(e) == S3PUMP_NOT_FOUND);
    s3pump_error_free(e);

    s3pump_client_free(client);
    printf("roundtrip: ok\n");
    return 0;
}
