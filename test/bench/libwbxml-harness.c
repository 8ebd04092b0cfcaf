/*
 * libwbxml-harness: times libwbxml's one-call converters in-process, for test/bench/codec.bench.ts.
 *
 *   libwbxml-harness decode <file.wbxml> <iterations> [<out.xml>]
 *   libwbxml-harness encode <file.xml>   <iterations> [<out.wbxml>]
 *
 * decode = wbxml_conv_wbxml2xml_withlen, compact XML (no indentation), language from the public id.
 * encode = wbxml_conv_xml2wbxml_withlen, WBXML 1.2, no string table, ignorable whitespace dropped:
 *          the same options as `xml2wbxml -n -v 1.2`.
 *
 * Each operation includes freeing its result. After a warm-up of iterations/10 (at least 20)
 * operations, <iterations> operations are timed with clock_gettime(CLOCK_MONOTONIC) in BATCHES
 * batches; one line is printed on stdout:
 *
 *   median_us=<median of the per-op microseconds of the batches> mean_us=... min_us=...
 *   iterations=... batches=... in_bytes=... out_bytes=... libwbxml=<version>
 *   batches_us=<each batch's per-op microseconds, in order, comma-separated>
 *
 * With <out>, the result of the last operation is written there (the bench checks it). Errors go to
 * stderr with exit status 1 (usage: 2).
 *
 * Built by the bench: cc -O2 -I/usr/include/libwbxml-1.0 libwbxml-harness.c -lwbxml2
 * (Debian: libwbxml2-dev, gcc).
 */
#define _POSIX_C_SOURCE 199309L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <wbxml/wbxml.h>

/* The converters allocate their result with wbxml_malloc; its counterpart is exported by libwbxml2
 * but declared only in an internal header (wbxml_mem.h). */
extern void wbxml_free(void *memblock);

enum { BATCHES = 21 };

enum mode { MODE_DECODE, MODE_ENCODE };

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static unsigned char *read_file(const char *path, unsigned long *len) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        perror(path);
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    unsigned char *buf = malloc(cap + 1);
    for (;;) {
        if (buf == NULL) {
            fclose(f);
            fprintf(stderr, "out of memory\n");
            return NULL;
        }
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        cap *= 2;
        unsigned char *grown = realloc(buf, cap + 1);
        if (grown == NULL) free(buf);
        buf = grown;
    }
    int failed = ferror(f);
    fclose(f);
    if (failed) {
        fprintf(stderr, "%s: read error\n", path);
        free(buf);
        return NULL;
    }
    buf[n] = '\0'; /* harmless for WBXML, convenient for XML */
    *len = (unsigned long)n;
    return buf;
}

/* One conversion; the result is freed unless keep is non-NULL (then the caller frees it). */
static WBXMLError convert(enum mode mode, WB_UTINY *in, WB_ULONG in_len, WB_ULONG *out_len, WB_UTINY **keep) {
    WB_UTINY *out = NULL;
    WBXMLError ret;
    *out_len = 0;
    if (mode == MODE_DECODE) {
        WBXMLGenXMLParams params;
        params.gen_type = WBXML_GEN_XML_COMPACT;
        params.lang = WBXML_LANG_UNKNOWN;        /* from the document's public id */
        params.charset = WBXML_CHARSET_UNKNOWN;  /* from the document */
        params.indent = 0;
        params.keep_ignorable_ws = FALSE;
        ret = wbxml_conv_wbxml2xml_withlen(in, in_len, &out, out_len, &params);
    } else {
        WBXMLGenWBXMLParams params;
        params.wbxml_version = WBXML_VERSION_12;  /* -v 1.2 */
        params.keep_ignorable_ws = FALSE;         /* no -k */
        params.use_strtbl = FALSE;                /* -n */
        params.produce_anonymous = FALSE;         /* no -a */
        ret = wbxml_conv_xml2wbxml_withlen(in, in_len, &out, out_len, &params);
    }
    if (keep != NULL) *keep = out;
    else if (out != NULL) wbxml_free(out);
    return ret;
}

int main(int argc, char **argv) {
    if (argc < 4 || argc > 5 || (strcmp(argv[1], "decode") != 0 && strcmp(argv[1], "encode") != 0)) {
        fprintf(stderr, "usage: %s decode|encode <input> <iterations> [<output>]\n", argv[0]);
        return 2;
    }
    enum mode mode = strcmp(argv[1], "decode") == 0 ? MODE_DECODE : MODE_ENCODE;
    char *end = NULL;
    unsigned long iterations = strtoul(argv[3], &end, 10);
    if (end == argv[3] || *end != '\0' || iterations < BATCHES) {
        fprintf(stderr, "iterations must be an integer >= %d\n", BATCHES);
        return 2;
    }
    unsigned long in_len = 0;
    WB_UTINY *in = read_file(argv[2], &in_len);
    if (in == NULL) return 1;

    /* Check once, and keep the output for the caller. */
    WB_ULONG out_len = 0;
    WB_UTINY *out = NULL;
    WBXMLError ret = convert(mode, in, (WB_ULONG)in_len, &out_len, &out);
    if (ret != WBXML_OK) {
        fprintf(stderr, "libwbxml %s failed: %s\n", argv[1], (const char *)wbxml_errors_string(ret));
        free(in);
        return 1;
    }
    if (argc == 5) {
        FILE *f = fopen(argv[4], "wb");
        if (f == NULL || fwrite(out, 1, out_len, f) != out_len || fclose(f) != 0) {
            perror(argv[4]);
            wbxml_free(out);
            free(in);
            return 1;
        }
    }
    wbxml_free(out);

    unsigned long warmup = iterations / 10 < 20 ? 20 : iterations / 10;
    WB_ULONG len = 0;
    for (unsigned long i = 0; i < warmup; i++) {
        if (convert(mode, in, (WB_ULONG)in_len, &len, NULL) != WBXML_OK) {
            fprintf(stderr, "libwbxml %s failed during warm-up\n", argv[1]);
            free(in);
            return 1;
        }
    }

    double per_op[BATCHES];
    unsigned long per_batch = iterations / BATCHES;
    unsigned long failures = 0;
    for (int b = 0; b < BATCHES; b++) {
        double t0 = now_us();
        for (unsigned long i = 0; i < per_batch; i++) if (convert(mode, in, (WB_ULONG)in_len, &len, NULL) != WBXML_OK) failures++;
        double t1 = now_us();
        per_op[b] = (t1 - t0) / (double)per_batch;
    }
    free(in);
    if (failures > 0) {
        fprintf(stderr, "libwbxml %s failed during timing\n", argv[1]);
        return 1;
    }

    double sorted[BATCHES], sum = 0;
    for (int b = 0; b < BATCHES; b++) {
        sorted[b] = per_op[b];
        sum += per_op[b];
    }
    qsort(sorted, BATCHES, sizeof sorted[0], cmp_double);
    printf("median_us=%.4f mean_us=%.4f min_us=%.4f iterations=%lu batches=%d in_bytes=%lu out_bytes=%lu libwbxml=%s batches_us=",
           sorted[BATCHES / 2], sum / BATCHES, sorted[0], per_batch * BATCHES, BATCHES, in_len, (unsigned long)out_len,
           WBXML_LIB_VERSION);
    for (int b = 0; b < BATCHES; b++) printf(b == 0 ? "%.4f" : ",%.4f", per_op[b]);
    printf("\n");
    return 0;
}
