/*
 * loadgen: closed-loop load generator for TCP echo servers and HTTP/1.1
 * servers.
 *
 *   loadgen HOST PORT CONNS SIZE PIPELINE WARMUP_S DURATION_S
 *   loadgen --http PATH HOST PORT CONNS PIPELINE WARMUP_S DURATION_S
 *
 * Opens CONNS connections up front. Each connection repeats a round and
 * records its time; only rounds completed inside the measured window (after
 * the warm-up) are counted.
 *
 * Echo mode: a round sends PIPELINE messages of SIZE bytes in one send,
 * receives exactly PIPELINE*SIZE bytes back and checks they equal what was
 * sent.
 *
 * HTTP mode (--http): a round sends PIPELINE copies of
 * "GET PATH HTTP/1.1\r\nHost: HOST:PORT\r\n\r\n" in one send (what wrk
 * sends, with pipeline.lua when PIPELINE > 1) and receives until PIPELINE
 * whole responses are in. Responses are parsed as they arrive, across recvs
 * into a 64 KiB buffer per connection: the status line, the headers up to
 * the blank line (a head over 16 KiB is refused), then exactly
 * Content-Length body bytes, skipped by counting, so a body of any size
 * costs no memory. Each response counts as one message. Errors (the
 * connection is dropped): a status other than 2xx, a response without
 * Content-Length (chunked or close-delimited bodies are not supported; a 204
 * needs none), any Transfer-Encoding, "Connection: close", a head over
 * 16 KiB or not ending in CRLF CRLF, bytes beyond the round's responses, and
 * the server closing or resetting. Header names are matched without regard
 * to case. The first bad response is described on stderr; "mismatches" in
 * the JSON counts them all, and "size" is the bytes of one request.
 *
 * stdout: one JSON line with the results (the same keys in both modes).
 * stderr: "MEASURE_START" / "MEASURE_STOP" lines when the measured window
 *         opens and closes (the harness samples the server's CPU time
 *         then), plus diagnostics.
 * Exit status: 0 if there were no errors, 1 on any error (failed connect,
 * reset, wrong echo or bad response, or a round still incomplete 2 s after
 * the window closed), 2 on bad usage or a setup failure.
 *
 * Single threaded, on io_uring: a round is one send SQE and one recv SQE
 * (MSG_WAITALL, so the kernel gathers the whole round), and one
 * io_uring_enter per loop turn submits and reaps for all connections. On
 * loopback most of the client's time is the kernel's TCP work (the sender
 * also runs the receiver's softirq processing), so the client can only save
 * on everything around it. Measured alternatives cost more CPU per message:
 * an epoll client (write + read + a share of epoll_wait per round) about a
 * third more, a multishot recv with provided buffers even more, as it tries
 * one more recv (which finds nothing) after every echo. The harness reports
 * the client's CPU use for every run so a client-bound result can be
 * recognised. In HTTP mode the length of a round's answer is not known in
 * advance, so its recvs are plain ones (no MSG_WAITALL), each taking what
 * has arrived, polling first unless the last recv left data in the socket.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define NS_PER_S 1000000000ull
#define CONNECT_TIMEOUT_NS (5 * NS_PER_S)
#define DRAIN_TIMEOUT_NS (2 * NS_PER_S)
#define PATTERN_SHIFTS 64
#define HTTP_RBUF (64 * 1024)       /* receive buffer per connection */
#define HTTP_HEAD_MAX (16 * 1024)   /* largest response head accepted */

enum op { OP_SEND, OP_RECV };

struct conn {
	int fd;                 /* -1 once dropped */
	uint32_t id;
	uint64_t round;
	size_t sent, received;  /* progress of the current round, in bytes */
	uint64_t start_ns;      /* when the current round's send was queued */
	bool busy;              /* a round is in flight */
	uint64_t *pattern;      /* PATTERN_SHIFTS words longer than a round */
	unsigned char *sbuf;    /* this round's bytes: a window into pattern */
	unsigned char *rbuf;
	/* HTTP mode: rbuf[rstart, rend) is received and not yet parsed. */
	size_t rstart, rend;
	size_t scanned;         /* bytes from rstart already searched for CRLFCRLF */
	uint64_t body_left;     /* body bytes of the current response still due */
	uint32_t responses;     /* whole responses received this round */
	bool poll_first;        /* the next recv waits for data first */
};

static struct io_uring ring;
static size_t round_bytes;      /* PIPELINE * SIZE */
static uint64_t measure_start_ns, measure_end_ns;
static bool measuring, stopping;
static int busy_conns;

static uint64_t messages;       /* messages in rounds completed in the window */
static uint32_t *lat_ns;        /* one entry per round completed in the window */
static size_t nr_lat, cap_lat;
static uint64_t connect_errors, resets, mismatches, stalled;
static uint32_t pipeline;
static bool http_mode;
static unsigned char *http_round; /* HTTP mode: PIPELINE requests, all rounds */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

static double cpu_seconds(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
	       (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static uint64_t splitmix64(uint64_t x)
{
	x += 0x9E3779B97F4A7C15ull;
	x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
	x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
	return x ^ (x >> 31);
}

/* Random bytes, different for every connection. Round r sends the window
 * starting at word r % PATTERN_SHIFTS, so consecutive rounds differ too: an
 * echo that is stale, crossed between connections, shifted or altered fails
 * the check, and no round pays for generating its bytes. */
static void init_pattern(struct conn *c, size_t words)
{
	for (size_t i = 0; i < words; i++)
		c->pattern[i] = splitmix64(((uint64_t)c->id << 32) + i);
}

static void record_latency(uint64_t ns)
{
	if (nr_lat == cap_lat) {
		cap_lat = cap_lat ? cap_lat * 2 : 1 << 20;
		lat_ns = realloc(lat_ns, cap_lat * sizeof(*lat_ns));
		if (!lat_ns) {
			perror("loadgen: realloc");
			exit(2);
		}
	}
	lat_ns[nr_lat++] = ns > UINT32_MAX ? UINT32_MAX : (uint32_t)ns;
}

static struct io_uring_sqe *get_sqe(void)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);

	if (!sqe) {
		io_uring_submit(&ring); /* SQ full: hand it to the kernel */
		sqe = io_uring_get_sqe(&ring);
	}
	return sqe;
}

static void queue_send(struct conn *c)
{
	struct io_uring_sqe *sqe = get_sqe();

	io_uring_prep_send(sqe, c->fd, c->sbuf + c->sent,
			   round_bytes - c->sent, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, (uint64_t)c->id << 1 | OP_SEND);
}

static void queue_recv(struct conn *c)
{
	struct io_uring_sqe *sqe = get_sqe();

	if (http_mode) {
		/* As much as has arrived; the responses' length is unknown. */
		io_uring_prep_recv(sqe, c->fd, c->rbuf + c->rend,
				   HTTP_RBUF - c->rend, 0);
		if (c->poll_first)
			sqe->ioprio |= IORING_RECVSEND_POLL_FIRST;
	} else {
		/* The echo cannot be there yet: wait for data instead of trying
		 * a recv that would fail, and let the kernel gather the whole
		 * round. */
		io_uring_prep_recv(sqe, c->fd, c->rbuf + c->received,
				   round_bytes - c->received, MSG_WAITALL);
		sqe->ioprio |= IORING_RECVSEND_POLL_FIRST;
	}
	io_uring_sqe_set_data64(sqe, (uint64_t)c->id << 1 | OP_RECV);
}

/* Stop using a connection. Its requests still in flight end with an error
 * after the shutdown and are ignored because fd is -1. */
static void drop_conn(struct conn *c)
{
	shutdown(c->fd, SHUT_RDWR);
	close(c->fd);
	c->fd = -1;
	if (c->busy) {
		c->busy = false;
		busy_conns--;
	}
}

static void start_round(struct conn *c, uint64_t t)
{
	c->round++;
	c->sent = c->received = 0;
	c->start_ns = t;
	if (http_mode) {
		c->sbuf = http_round;
		c->responses = 0;
		c->poll_first = true; /* no answer before the requests */
	} else {
		c->sbuf = (unsigned char *)(c->pattern + c->round % PATTERN_SHIFTS);
	}
	queue_send(c);
	queue_recv(c);
}

static void complete_round(struct conn *c)
{
	uint64_t t = now_ns();

	if (!http_mode && memcmp(c->rbuf, c->sbuf, round_bytes) != 0) {
		size_t off = 0;

		while (c->rbuf[off] == c->sbuf[off])
			off++;
		if (!mismatches)
			fprintf(stderr,
				"loadgen: wrong echo on connection %u round %llu at byte %zu: "
				"got 0x%02x, expected 0x%02x\n", c->id,
				(unsigned long long)c->round, off, c->rbuf[off], c->sbuf[off]);
		mismatches++;
		drop_conn(c);
		return;
	}
	if (measuring && t <= measure_end_ns) {
		messages += pipeline;
		record_latency(t - c->start_ns);
	}
	if (stopping) {
		c->busy = false;
		busy_conns--;
	} else {
		start_round(c, t);
	}
}

/* A bad response: described on stderr if it is the first, counted, and the
 * connection dropped. Returns -1. */
__attribute__((format(printf, 2, 3)))
static int http_error(struct conn *c, const char *fmt, ...)
{
	if (!mismatches) {
		va_list ap;

		fprintf(stderr, "loadgen: connection %u: ", c->id);
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
		fputc('\n', stderr);
	}
	mismatches++;
	drop_conn(c);
	return -1;
}

/* For messages: the first line of s (at most 100 bytes), non-printable bytes
 * as '?'. */
static const char *printable_line(const unsigned char *s, size_t len)
{
	static char out[101];
	size_t i;

	for (i = 0; i < len && i < sizeof(out) - 1 && s[i] != '\r' && s[i] != '\n'; i++)
		out[i] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
	out[i] = '\0';
	return out;
}

static bool name_is(const unsigned char *name, size_t len, const char *want)
{
	return len == strlen(want) && strncasecmp((const char *)name, want, len) == 0;
}

/* Whether the comma-separated list v[0, len) holds the token "close". */
static bool has_close(const unsigned char *v, size_t len)
{
	size_t i = 0;

	while (i < len) {
		size_t start, end;

		while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
			i++;
		start = i;
		while (i < len && v[i] != ',')
			i++;
		end = i;
		while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t'))
			end--;
		if (name_is(v + start, end - start, "close"))
			return true;
	}
	return false;
}

/* Checks one response head, h[0, len) ending in CRLF CRLF, and sets
 * body_left. Returns 0, or -1 after http_error. */
static int parse_head(struct conn *c, const unsigned char *h, size_t len)
{
	const unsigned char *end = h + len - 2; /* the blank line's CRLF */
	const unsigned char *line = (const unsigned char *)memchr(h, '\n', len) + 1;
	uint64_t length = 0;
	bool have_length = false;
	int status;

	/* "HTTP/1.x NNN" followed by a space or the line's end */
	if (len < 14 || memcmp(h, "HTTP/1.", 7) != 0 || h[7] < '0' || h[7] > '9' ||
	    h[8] != ' ' || h[9] < '0' || h[9] > '9' || h[10] < '0' || h[10] > '9' ||
	    h[11] < '0' || h[11] > '9' || (h[12] != ' ' && h[12] != '\r'))
		return http_error(c, "not an HTTP/1.x status line: \"%s\"",
				  printable_line(h, len));
	status = (h[9] - '0') * 100 + (h[10] - '0') * 10 + (h[11] - '0');
	if (status < 200 || status > 299)
		return http_error(c, "status %d, not 2xx: \"%s\"", status,
				  printable_line(h, len));
	while (line < end) {
		const unsigned char *eol = memchr(line, '\n', end + 1 - line);
		const unsigned char *colon = memchr(line, ':', eol - line);
		const unsigned char *v, *vend = eol;
		size_t name_len;

		if (!colon)
			return http_error(c, "header line without a colon: \"%s\"",
					  printable_line(line, eol - line));
		name_len = colon - line;
		v = colon + 1;
		while (v < vend && (*v == ' ' || *v == '\t'))
			v++;
		while (vend > v && (vend[-1] == '\r' || vend[-1] == ' ' || vend[-1] == '\t'))
			vend--;
		if (name_is(line, name_len, "content-length")) {
			uint64_t n = 0;

			if (v == vend || vend - v > 18)
				return http_error(c, "bad Content-Length: \"%s\"",
						  printable_line(line, eol - line));
			for (const unsigned char *p = v; p < vend; p++) {
				if (*p < '0' || *p > '9')
					return http_error(c, "bad Content-Length: \"%s\"",
							  printable_line(line, eol - line));
				n = n * 10 + (*p - '0');
			}
			if (have_length && n != length)
				return http_error(c, "two different Content-Lengths");
			length = n;
			have_length = true;
		} else if (name_is(line, name_len, "transfer-encoding")) {
			return http_error(c, "\"%s\": Transfer-Encoding (chunked) is not "
					  "supported, loadgen needs Content-Length",
					  printable_line(line, eol - line));
		} else if (name_is(line, name_len, "connection") && has_close(v, vend - v)) {
			return http_error(c, "the server sent \"Connection: close\": loadgen "
					  "needs keep-alive");
		}
		line = eol + 1;
	}
	if (!have_length && status != 204)
		return http_error(c, "status %d response without Content-Length: chunked "
				  "or close-delimited bodies are not supported", status);
	c->body_left = status == 204 ? 0 : length;
	return 0;
}

/* n more bytes arrived at rbuf + rend: parse what can be. Returns 1 when the
 * round's responses are all in, 0 when more are due (a recv is queued),
 * -1 when the connection was dropped. */
static int http_received(struct conn *c, size_t n, bool more_waiting)
{
	c->rend += n;
	while (c->rstart < c->rend && c->responses < pipeline) {
		unsigned char *p = c->rbuf + c->rstart;
		size_t avail = c->rend - c->rstart;

		if (c->body_left) { /* skip body bytes: counted, never kept */
			size_t skip = avail < c->body_left ? avail : c->body_left;

			c->rstart += skip;
			c->body_left -= skip;
			if (!c->body_left)
				c->responses++;
			continue;
		}
		/* A head: find its end, resuming where the last search stopped
		 * (less 3 bytes, which may start the CRLF CRLF). */
		size_t from = c->scanned > 3 ? c->scanned - 3 : 0;
		unsigned char *blank = memmem(p + from, avail - from, "\r\n\r\n", 4);

		if (!blank || (size_t)(blank + 4 - p) > HTTP_HEAD_MAX) {
			if (avail > HTTP_HEAD_MAX || blank)
				return http_error(c, "response head over %d bytes (or without "
						  "CRLF CRLF): \"%s\"", HTTP_HEAD_MAX,
						  printable_line(p, avail));
			c->scanned = avail;
			break;
		}
		size_t head_len = blank + 4 - p;

		if (parse_head(c, p, head_len) < 0)
			return -1;
		c->scanned = 0;
		c->rstart += head_len;
		if (!c->body_left)
			c->responses++;
	}
	if (c->responses == pipeline) {
		if (c->rstart < c->rend)
			return http_error(c, "%zu bytes after the round's %u responses: \"%s\"",
					  c->rend - c->rstart, pipeline,
					  printable_line(c->rbuf + c->rstart, c->rend - c->rstart));
		c->rstart = c->rend = 0;
		return 1;
	}
	if (c->rstart == c->rend) {
		c->rstart = c->rend = 0;
	} else if (c->rstart) {
		/* Only part of a head (at most HTTP_HEAD_MAX) is left over: move
		 * it to the front for room to receive the rest. */
		memmove(c->rbuf, c->rbuf + c->rstart, c->rend - c->rstart);
		c->rend -= c->rstart;
		c->rstart = 0;
	}
	c->poll_first = !more_waiting;
	queue_recv(c);
	return 0;
}

static void handle_cqe(struct conn *conns, struct io_uring_cqe *cqe)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	struct conn *c = &conns[ud >> 1];
	int res = cqe->res;

	if (c->fd < 0)
		return;
	if (res <= 0) {
		if (res == 0)
			fprintf(stderr, "loadgen: server closed connection %u\n", c->id);
		else if (!mismatches && !resets)
			fprintf(stderr, "loadgen: %s on connection %u: %s\n",
				(ud & 1) == OP_SEND ? "send" : "recv", c->id, strerror(-res));
		resets++;
		drop_conn(c);
		return;
	}
	if ((ud & 1) == OP_SEND) {
		c->sent += res;
		if (c->sent < round_bytes) {
			queue_send(c); /* short send: push the rest */
			return;
		}
	} else if (http_mode) {
		if (http_received(c, res, cqe->flags & IORING_CQE_F_SOCK_NONEMPTY) <= 0)
			return;
		/* All the responses are in: the round's receiving is done, as
		 * in echo mode once round_bytes are back. */
		c->received = round_bytes;
	} else {
		c->received += res;
		if (c->received < round_bytes) {
			queue_recv(c);
			return;
		}
	}
	/* The round is over once both directions are done; the CQEs of a
	 * round's send and recv may be reaped in either order. */
	if (c->sent == round_bytes && c->received == round_bytes)
		complete_round(c);
}

static void setup_ring(unsigned int sq_entries)
{
	static const unsigned int flag_sets[] = {
		IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
		IORING_SETUP_COOP_TASKRUN,
		0,
	};
	int ret = -EINVAL;

	for (size_t i = 0; i < sizeof(flag_sets) / sizeof(flag_sets[0]); i++) {
		struct io_uring_params p = {.flags = flag_sets[i]};

		ret = io_uring_queue_init_params(sq_entries, &ring, &p);
		if (ret != -EINVAL)
			break;
	}
	if (ret < 0) {
		fprintf(stderr, "loadgen: io_uring_queue_init: %s\n", strerror(-ret));
		exit(2);
	}
	io_uring_register_ring_fd(&ring);
}

/* The default soft limit (often 1024) is too low for 1000 connections. */
static void raise_fd_limit(rlim_t want)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want)
		return;
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want) {
		struct rlimit raised = {want, want};

		if (setrlimit(RLIMIT_NOFILE, &raised) == 0) /* CAP_SYS_RESOURCE */
			return;
		fprintf(stderr, "loadgen: the open-file limit is %llu, too low for all "
			"connections\n", (unsigned long long)rl.rlim_max);
		want = rl.rlim_max;
	}
	rl.rlim_cur = want;
	setrlimit(RLIMIT_NOFILE, &rl);
}

/* Blocking connect, retried until the deadline: the server may still be
 * starting, or its accept queue may be momentarily full. Returns the socket
 * or -errno. */
static int connect_one(const struct sockaddr_in *addr, uint64_t deadline)
{
	for (;;) {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		int one = 1;

		if (fd < 0)
			return -errno;
		if (connect(fd, (const struct sockaddr *)addr, sizeof(*addr)) == 0) {
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
			return fd;
		}
		int err = errno;

		close(fd);
		if (now_ns() >= deadline)
			return -err;
		usleep(20000);
	}
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x > y) - (x < y);
}

static double percentile_us(double q)
{
	if (!nr_lat)
		return 0;
	size_t i = (size_t)(q * (nr_lat - 1) + 0.5);

	return lat_ns[i] / 1000.0;
}

static long parse_long(const char *s, const char *what, long min)
{
	char *end;
	long v = strtol(s, &end, 10);

	if (*s == '\0' || *end != '\0' || v < min) {
		fprintf(stderr, "loadgen: bad %s: %s\n", what, s);
		exit(2);
	}
	return v;
}

static double parse_seconds(const char *s, const char *what)
{
	char *end;
	double v = strtod(s, &end);

	if (*s == '\0' || *end != '\0' || v < 0) {
		fprintf(stderr, "loadgen: bad %s: %s\n", what, s);
		exit(2);
	}
	return v;
}

/* HTTP mode: PIPELINE copies of the request, what every round sends.
 * Returns the size of one request. */
static long build_http_round(const char *path, const char *host, long port)
{
	for (const char *p = path; *p; p++) {
		if ((unsigned char)*p <= ' ' || *p == 0x7f) {
			fprintf(stderr, "loadgen: bad path (a space or control byte): %s\n",
				path);
			exit(2);
		}
	}
	if (path[0] != '/') {
		fprintf(stderr, "loadgen: the path must start with '/': %s\n", path);
		exit(2);
	}
	int len = snprintf(NULL, 0, "GET %s HTTP/1.1\r\nHost: %s:%ld\r\n\r\n",
			   path, host, port);

	http_round = malloc((size_t)len * pipeline + 1);
	if (!http_round) {
		perror("loadgen: malloc");
		exit(2);
	}
	for (uint32_t i = 0; i < pipeline; i++)
		snprintf((char *)http_round + (size_t)i * len, len + 1,
			 "GET %s HTTP/1.1\r\nHost: %s:%ld\r\n\r\n", path, host, port);
	return len;
}

int main(int argc, char **argv)
{
	http_mode = argc > 1 && strcmp(argv[1], "--http") == 0;
	if (argc != (http_mode ? 9 : 8)) {
		fprintf(stderr,
			"usage: %s HOST PORT CONNS SIZE PIPELINE WARMUP_S DURATION_S\n"
			"       %s --http PATH HOST PORT CONNS PIPELINE WARMUP_S DURATION_S\n",
			argv[0], argv[0]);
		return 2;
	}
	/* arg[0] is HOST; HTTP mode has PATH before it and no SIZE. */
	char **arg = argv + (http_mode ? 3 : 1);
	struct sockaddr_in addr = {.sin_family = AF_INET};
	long nconns = parse_long(arg[2], "connection count", 1);
	long size = http_mode ? 0 : parse_long(arg[3], "message size", 1);
	char **rest = arg + (http_mode ? 3 : 4);

	pipeline = parse_long(rest[0], "pipeline depth", 1);
	double warmup = parse_seconds(rest[1], "warm-up");
	double duration = parse_seconds(rest[2], "duration");

	if (inet_pton(AF_INET, arg[0], &addr.sin_addr) != 1) {
		fprintf(stderr, "loadgen: not an IPv4 address: %s\n", arg[0]);
		return 2;
	}
	long port = parse_long(arg[1], "port", 1);

	addr.sin_port = htons(port);
	if (http_mode)
		size = build_http_round(argv[2], arg[0], port);
	round_bytes = (size_t)size * pipeline;

	raise_fd_limit((rlim_t)nconns + 64);
	struct conn *conns = calloc(nconns, sizeof(*conns));
	size_t words = (round_bytes + 7) / 8 + PATTERN_SHIFTS;
	unsigned int sq_entries = 64;

	if (!conns) {
		perror("loadgen: calloc");
		return 2;
	}
	/* Room for every connection's send and recv in one turn. */
	while (sq_entries < 2 * nconns && sq_entries < 32768)
		sq_entries *= 2;
	setup_ring(sq_entries);
	uint64_t deadline = now_ns() + CONNECT_TIMEOUT_NS;
	long connected = 0;

	for (long i = 0; i < nconns; i++) {
		struct conn *c = &conns[i];

		c->id = i;
		c->fd = connect_one(&addr, deadline);
		if (c->fd < 0) {
			if (!connect_errors++)
				fprintf(stderr, "loadgen: connect: %s\n", strerror(-c->fd));
			c->fd = -1;
			continue;
		}
		if (http_mode) {
			c->rbuf = malloc(HTTP_RBUF);
		} else {
			c->pattern = malloc(words * 8);
			c->rbuf = malloc(round_bytes);
		}
		if ((!http_mode && !c->pattern) || !c->rbuf) {
			perror("loadgen: malloc");
			return 2;
		}
		if (!http_mode)
			init_pattern(c, words);
		connected++;
	}

	uint64_t t0 = now_ns();
	uint64_t duration_ns = (uint64_t)(duration * NS_PER_S);
	double cpu_start = 0, cpu_end = 0;

	/* Provisional: the window really opens when the loop notices (below). */
	measure_start_ns = t0 + (uint64_t)(warmup * NS_PER_S);
	measure_end_ns = measure_start_ns + duration_ns;
	for (long i = 0; i < nconns; i++) {
		if (conns[i].fd >= 0) {
			conns[i].busy = true;
			busy_conns++;
			start_round(&conns[i], t0);
		}
	}

	uint64_t drain_deadline = 0;

	for (;;) {
		uint64_t t = now_ns();

		if (!stopping && busy_conns == 0)
			break; /* every connection failed */
		if (!measuring && !stopping && t >= measure_start_ns) {
			measuring = true;
			measure_start_ns = t;
			measure_end_ns = t + duration_ns;
			cpu_start = cpu_seconds();
			fprintf(stderr, "MEASURE_START\n");
		}
		if (!stopping && t >= measure_end_ns) {
			/* Close the window, then let in-flight rounds finish so the
			 * server sees orderly closes, not resets. */
			cpu_end = cpu_seconds();
			fprintf(stderr, "MEASURE_STOP\n");
			measuring = false;
			stopping = true;
			drain_deadline = t + DRAIN_TIMEOUT_NS;
		}
		if (stopping && (busy_conns == 0 || t >= drain_deadline))
			break;

		uint64_t next = stopping ? drain_deadline
			      : measuring ? measure_end_ns : measure_start_ns;
		struct __kernel_timespec ts = {
			.tv_sec = (next - t) / NS_PER_S,
			.tv_nsec = (next - t) % NS_PER_S,
		};
		struct io_uring_cqe *cqe;
		unsigned int head, seen = 0;
		int ret = io_uring_submit_and_wait_timeout(&ring, &cqe, 1, &ts, NULL);

		if (ret < 0 && ret != -ETIME && ret != -EINTR) {
			fprintf(stderr, "loadgen: io_uring_submit_and_wait_timeout: %s\n",
				strerror(-ret));
			return 2;
		}
		io_uring_for_each_cqe(&ring, head, cqe) {
			handle_cqe(conns, cqe);
			seen++;
		}
		io_uring_cq_advance(&ring, seen);
	}
	if (measuring) { /* every connection failed inside the window */
		cpu_end = cpu_seconds();
		fprintf(stderr, "MEASURE_STOP\n");
	} else if (!stopping) { /* ... or before it opened */
		cpu_end = cpu_start;
	}

	uint64_t t_end = now_ns() < measure_end_ns ? now_ns() : measure_end_ns;
	double seconds = t_end > measure_start_ns
			 ? (t_end - measure_start_ns) / (double)NS_PER_S : 0;

	qsort(lat_ns, nr_lat, sizeof(*lat_ns), cmp_u32);
	/* Rounds still waiting after the drain period: bytes were lost. */
	stalled = busy_conns;
	if (stalled)
		fprintf(stderr, "loadgen: %llu connections still waiting for their %s\n",
			(unsigned long long)stalled, http_mode ? "responses" : "echo");
	uint64_t errors = connect_errors + resets + mismatches + stalled;

	printf("{\"messages\": %llu, \"seconds\": %.6f, \"msgs_per_s\": %.1f, "
	       "\"p50_us\": %.1f, \"p99_us\": %.1f, \"errors\": %llu, "
	       "\"connect_errors\": %llu, \"resets\": %llu, \"mismatches\": %llu, "
	       "\"stalled\": %llu, "
	       "\"client_cpu_s\": %.6f, \"connections\": %ld, \"size\": %ld, "
	       "\"pipeline\": %u}\n",
	       (unsigned long long)messages, seconds,
	       seconds > 0 ? messages / seconds : 0.0,
	       percentile_us(0.50), percentile_us(0.99),
	       (unsigned long long)errors, (unsigned long long)connect_errors,
	       (unsigned long long)resets, (unsigned long long)mismatches,
	       (unsigned long long)stalled,
	       cpu_end - cpu_start, connected, size, pipeline);
	fflush(stdout);

	for (long i = 0; i < nconns; i++)
		if (conns[i].fd >= 0)
			close(conns[i].fd);
	return errors ? 1 : 0;
}
