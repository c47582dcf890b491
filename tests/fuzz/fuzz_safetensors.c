/* tests/fuzz/fuzz_safetensors.c: libFuzzer harness for the safetensors reader. Input byte 0
 * picks the mode: even = the rest is a JSON header parsed for a data section whose length is
 * taken from bytes 1..4; odd = the rest is a whole file, opened through a memfd and every tensor
 * read as float32. Either way: no crash, no leak, no read outside the buffer. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "monosem/io.h"

static void touch_all(const ms_safetensors *st, int read)
{
    for (int i = 0; i < st->n; i++) {
        const ms_safetensors_tensor *t = &st->tensors[i];
        if (ms_safetensors_find(st, t->name) == NULL) abort(); /* every listed name must be found */
        if (t->end < t->begin || t->end > st->data_len) abort();
        if (read && t->numel <= (1u << 20)) {
            float *buf = malloc((size_t)t->numel * sizeof(float) + 1);
            ms_err err = {0};
            if (buf) ms_safetensors_read_f32(st, t, buf, &err);
            free(buf);
        }
    }
    for (int i = 0; i < st->n_meta; i++)
        if (ms_safetensors_meta(st, st->meta[2 * i]) == NULL) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    ms_safetensors st;
    ms_err err = {0};
    if ((data[0] & 1) == 0) {
        if (size < 5) return 0;
        uint32_t dl;
        memcpy(&dl, data + 1, 4);
        if (ms_safetensors_parse_header(&st, "fuzz", (const char *)data + 5, size - 5, dl, &err) == MS_OK) {
            touch_all(&st, 0);
            ms_safetensors_close(&st);
        } else if (err.msg[0] == '\0' || strchr(err.msg, '\n')) {
            abort(); /* every error is one non-empty line */
        }
        return 0;
    }
    int fd = memfd_create("fuzz.safetensors", 0);
    if (fd < 0) return 0;
    if (write(fd, data + 1, size - 1) == (ssize_t)(size - 1)) {
        char path[64];
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        if (ms_safetensors_open(&st, path, &err) == MS_OK) {
            touch_all(&st, 1);
            ms_safetensors_close(&st);
        } else if (err.msg[0] == '\0' || strchr(err.msg, '\n')) {
            abort();
        }
    }
    close(fd);
    return 0;
}
