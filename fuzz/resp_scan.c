/*
 * libFuzzer harness for the RESP fast path's framing check,
 * _build/protocols/resp_scan.c (uio_resp_scan), compiled in whole.
 *
 * RespProtocol._run_whole (uringio/protocols/resp.py) trusts the scan's
 * answer: it splits the chunk at the first `lines` CRLFs with one
 * bytes.split and reads each request's argument count and arguments from
 * the pieces, with no check of its own. So the harness checks what that
 * trust needs, against a reference written here from the protocol's rules:
 *
 *   1. consumed <= len, and consumed ends a line (or is 0 with lines 0);
 *   2. buf[:consumed] holds exactly `lines` CRLFs, and cut at them it is a
 *      run of whole requests, each "*N" (N canonical, 1..1024) then N pairs
 *      "$L" (L canonical) and L bytes -- which is what the split relies on;
 *   3. the answer is the reference's (ref_scan below, written without the
 *      scanner's shortcuts): the scan stops at the first request that is
 *      not whole and simple, and never before it;
 *   4. a longer buffer with the same start never gets a shorter answer, and
 *      buf[:consumed] alone gets the same one (the scan looks at no byte
 *      past what it admits, but for the request that stops it).
 * The input is copied into a buffer of exactly its length, so ASan sees
 * any read past the end.
 */
#define _GNU_SOURCE   /* memmem */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/resp_scan.c"

#define FAIL(...) do { fprintf(stderr, "resp_scan: " __VA_ARGS__); fputc('\n', stderr); \
                       abort(); } while (0)

/* A canonical decimal at buf[*pos..] ending a line ("0", or no leading
 * zero), at most max: its value, *pos past the CRLF; -1 otherwise. */
static long long ref_number(const unsigned char *buf, size_t len, size_t *pos, long long max)
{
    size_t start = *pos, i = start;
    while (i < len && buf[i] >= '0' && buf[i] <= '9')
        i++;
    size_t digits = i - start;
    if (digits == 0 || digits > 19 || (digits > 1 && buf[start] == '0'))
        return -1;
    if (i + 2 > len || buf[i] != '\r' || buf[i + 1] != '\n')
        return -1;
    long long n = 0;
    for (size_t k = start; k < i; k++)
        n = n * 10 + (buf[k] - '0');
    if (n > max)
        return -1;
    *pos = i + 2;
    return n;
}

static int has_crlf(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i + 1 < n; i++)
        if (p[i] == '\r' && p[i + 1] == '\n')
            return 1;
    return 0;
}

/* The whole, simple requests at the start of buf, by the rules alone. */
static struct uio_resp_scan ref_scan(const unsigned char *buf, size_t len)
{
    struct uio_resp_scan done = {0, 0};
    size_t pos = 0;
    for (;;) {
        if (pos >= len || buf[pos] != '*')
            return done;
        pos++;
        long long argc = ref_number(buf, len, &pos, UIO_RESP_MAX_ARGS);
        if (argc < 1)
            return done;
        for (long long a = 0; a < argc; a++) {
            if (pos >= len || buf[pos] != '$')
                return done;
            pos++;
            long long size = ref_number(buf, len, &pos, UIO_RESP_MAX_BULK);
            if (size < 0 || (unsigned long long)size + 2 > len - pos)
                return done;
            if (has_crlf(buf + pos, (size_t)size) || buf[pos + size] != '\r' ||
                    buf[pos + size + 1] != '\n')
                return done;
            pos += (size_t)size + 2;
        }
        done.consumed = pos;
        done.lines += 1 + 2 * (size_t)argc;
    }
}

/* buf[:consumed] cut at its CRLFs, as bytes.split does, read as requests. */
static void check_split(const unsigned char *buf, struct uio_resp_scan s)
{
    size_t at = 0, line = 0;
    while (at < s.consumed) {
        /* "*N" */
        const unsigned char *cr = memmem(buf + at, s.consumed - at, "\r\n", 2);
        if (cr == NULL || buf[at] != '*')
            FAIL("line %zu at %zu is not an array header", line, at);
        long long argc = 0;
        for (const unsigned char *p = buf + at + 1; p < cr; p++)
            argc = argc * 10 + (*p - '0');
        if (argc < 1 || argc > UIO_RESP_MAX_ARGS)
            FAIL("argument count %lld at %zu", argc, at);
        at = (size_t)(cr - buf) + 2;
        line++;
        for (long long a = 0; a < argc; a++) {
            cr = memmem(buf + at, s.consumed - at, "\r\n", 2);
            if (cr == NULL || buf[at] != '$')
                FAIL("line %zu at %zu is not a bulk header", line, at);
            long long size = 0;
            for (const unsigned char *p = buf + at + 1; p < cr; p++)
                size = size * 10 + (*p - '0');
            at = (size_t)(cr - buf) + 2;
            cr = memmem(buf + at, s.consumed - at, "\r\n", 2);
            if (cr == NULL || (long long)(cr - (buf + at)) != size)
                FAIL("the split cuts a bulk string of %lld at %zu", size, at);
            at = (size_t)(cr - buf) + 2;
            line += 2;
        }
    }
    if (at != s.consumed || line != s.lines)
        FAIL("consumed %zu holds %zu lines, the scan says %zu", s.consumed, line, s.lines);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);
    struct uio_resp_scan s = uio_resp_scan((const char *)buf, size);
    if (s.consumed > size)
        FAIL("consumed %zu of %zu", s.consumed, size);
    if ((s.consumed == 0) != (s.lines == 0))
        FAIL("consumed %zu but %zu lines", s.consumed, s.lines);
    if (s.consumed && (buf[s.consumed - 2] != '\r' || buf[s.consumed - 1] != '\n'))
        FAIL("consumed %zu does not end a line", s.consumed);
    check_split(buf, s);
    struct uio_resp_scan r = ref_scan(buf, size);
    if (r.consumed != s.consumed || r.lines != s.lines)
        FAIL("scan (%zu, %zu), reference (%zu, %zu)", s.consumed, s.lines, r.consumed, r.lines);
    /* The admitted prefix alone, in its own exact-size buffer. */
    unsigned char *prefix = malloc(s.consumed ? s.consumed : 1);
    memcpy(prefix, buf, s.consumed);
    struct uio_resp_scan p = uio_resp_scan((const char *)prefix, s.consumed);
    if (p.consumed != s.consumed || p.lines != s.lines)
        FAIL("the prefix scans as (%zu, %zu), the whole as (%zu, %zu)", p.consumed, p.lines,
             s.consumed, s.lines);
    /* A shorter buffer never gets a longer answer (monotone in the data). */
    if (size) {
        struct uio_resp_scan q = uio_resp_scan((const char *)buf, size - 1);
        if (q.consumed > s.consumed || q.lines > s.lines)
            FAIL("%zu bytes scan to %zu, %zu bytes to %zu", size - 1, q.consumed, size,
                 s.consumed);
    }
    free(prefix);
    free(buf);
    return 0;
}
