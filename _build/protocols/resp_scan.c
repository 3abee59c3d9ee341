/* The RESP fast path's framing check, for uringio/resp.py.
 *
 * Python splits a chunk of requests at every CRLF with one bytes.split and
 * takes each request's arguments from the list; what it cannot afford is to
 * check, argument by argument, that the split lines up with the framing.
 * This does that check in C: it walks the requests at the start of a chunk
 * while each is whole and "simple" -- an array of 1 to UIO_RESP_MAX_ARGS
 * bulk strings, lengths written canonically, no CRLF inside a string (where
 * the split would cut it) -- and reports how far they reach. Anything else
 * (a request cut short, an inline command, a binary value holding a CRLF,
 * malformed framing) stops the walk and is left to the Python parser, which
 * handles and reports every case. */

#include <stddef.h>
#include <string.h>

#define UIO_RESP_MAX_ARGS 1024
#define UIO_RESP_MAX_BULK (512LL * 1024 * 1024)

struct uio_resp_scan { size_t consumed; size_t lines; };

/* A canonical decimal (no sign, no leading zero) at *pos, followed by CRLF,
 * at most `max`; returns it and moves *pos past the CRLF, or -1. */
static long long uio_resp_number(const char *buf, size_t len, size_t *pos, long long max)
{
    size_t i = *pos;
    long long n = 0;
    if (i >= len || buf[i] < '0' || buf[i] > '9' || (buf[i] == '0' && i + 1 < len && buf[i + 1] != '\r'))
        return -1;
    for (; i < len && buf[i] >= '0' && buf[i] <= '9'; i++) {
        n = n * 10 + (buf[i] - '0');
        if (n > max)
            return -1;
    }
    if (i + 1 >= len || buf[i] != '\r' || buf[i + 1] != '\n')
        return -1;
    *pos = i + 2;
    return n;
}

struct uio_resp_scan uio_resp_scan(const char *buf, size_t len)
{
    struct uio_resp_scan done = {0, 0};
    size_t pos = 0;
    while (pos < len && buf[pos] == '*') {
        pos++;
        long long argc = uio_resp_number(buf, len, &pos, UIO_RESP_MAX_ARGS);
        if (argc <= 0)
            break;
        long long i;
        for (i = 0; i < argc; i++) {
            if (pos >= len || buf[pos] != '$')
                break;
            pos++;
            long long size = uio_resp_number(buf, len, &pos, UIO_RESP_MAX_BULK);
            if (size < 0 || (size_t)size + 2 > len - pos)
                break;
            const char *data = buf + pos, *cr;
            size_t left = (size_t)size;
            /* A CRLF inside the string would be a split point. */
            while (left > 1 && (cr = memchr(data, '\r', left - 1)) != NULL) {
                if (cr[1] == '\n')
                    goto stop;
                left -= (size_t)(cr + 1 - data);
                data = cr + 1;
            }
            pos += (size_t)size;
            if (buf[pos] != '\r' || buf[pos + 1] != '\n')
                break;
            pos += 2;
        }
        if (i < argc)
            break;
        done.consumed = pos;
        done.lines += 1 + 2 * (size_t)argc;
    }
stop:
    return done;
}
