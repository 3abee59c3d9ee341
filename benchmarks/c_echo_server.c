/*
 * c_echo_server: a minimal liburing TCP echo server, the "ceiling" the
 * Python servers are compared against.
 *
 *   c_echo_server HOST PORT        (IPv4; PORT 0 picks a free port)
 *
 * Prints "listening on HOST:PORT" once listening and exits 0 on SIGINT or
 * SIGTERM.
 *
 * Design (one thread, one ring):
 *   - one multishot accept on the listening socket;
 *   - one multishot recv per connection, drawing buffers from a provided
 *     buffer ring, so no buffer is pinned to an idle connection;
 *   - each received buffer is sent straight back and returned to the buffer
 *     ring only once its send has fully completed;
 *   - at most one send in flight per connection: two concurrent sends on one
 *     TCP socket could be reordered if the first one has to wait for socket
 *     space, so further buffers queue behind the in-flight one;
 *   - one io_uring_submit_and_wait() per loop turn, then every available CQE
 *     is handled before the next turn.
 *
 * Written against liburing 2.3, which lacks io_uring_setup_buf_ring(): the
 * buffer ring is allocated and registered by hand.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define SQ_ENTRIES 4096
#define CQ_ENTRIES 16384
#define BUF_SIZE (16 * 1024)
#define NR_BUFS 2048 /* must be a power of two */
#define BGID 0

enum op { OP_ACCEPT = 1, OP_RECV, OP_SEND };

struct conn {
	int head, tail;      /* FIFO of buffer ids to send; head is in flight */
	unsigned int off;    /* bytes of the head buffer already sent */
	bool recv_armed;     /* a multishot recv is active */
	bool send_inflight;
	bool closing;        /* peer closed or an error: close once idle */
	bool starved;        /* recv ended with -ENOBUFS, waiting for buffers */
};

static struct io_uring ring;
static struct io_uring_buf_ring *br;
static unsigned char *bufs;
static int next_bid[NR_BUFS];     /* per-buffer link for the send FIFOs */
static unsigned int buf_len[NR_BUFS];
static int nr_returned;           /* buffers added to br but not yet published */

static struct conn *conns;        /* indexed by fd */
static int *starved_fds;          /* stack of connections waiting for buffers */
static int nr_starved;
static int max_fds;

static int listen_fd;
static bool accept_paused;        /* out of fds: wait for a close */
static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void die(const char *what, int err)
{
	fprintf(stderr, "c_echo_server: %s: %s\n", what, strerror(err));
	exit(1);
}

static inline uint64_t make_ud(enum op op, int fd)
{
	return ((uint64_t)op << 32) | (uint32_t)fd;
}

static struct io_uring_sqe *get_sqe(void)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);

	if (!sqe) {
		/* SQ full: flush it to the kernel and try again. */
		io_uring_submit(&ring);
		sqe = io_uring_get_sqe(&ring);
		if (!sqe)
			die("io_uring_get_sqe", EBUSY);
	}
	return sqe;
}

static void arm_accept(void)
{
	struct io_uring_sqe *sqe = get_sqe();

	io_uring_prep_multishot_accept(sqe, listen_fd, NULL, NULL, 0);
	io_uring_sqe_set_data64(sqe, make_ud(OP_ACCEPT, listen_fd));
}

static void arm_recv(int fd)
{
	struct io_uring_sqe *sqe = get_sqe();

	io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = BGID;
	io_uring_sqe_set_data64(sqe, make_ud(OP_RECV, fd));
	conns[fd].recv_armed = true;
}

static void submit_send(int fd)
{
	struct conn *c = &conns[fd];
	struct io_uring_sqe *sqe = get_sqe();
	int bid = c->head;

	io_uring_prep_send(sqe, fd, bufs + (size_t)bid * BUF_SIZE + c->off,
			   buf_len[bid] - c->off, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, make_ud(OP_SEND, fd));
	c->send_inflight = true;
}

static void return_buffer(int bid)
{
	io_uring_buf_ring_add(br, bufs + (size_t)bid * BUF_SIZE, BUF_SIZE, bid,
			      io_uring_buf_ring_mask(NR_BUFS), nr_returned);
	nr_returned++;
}

/* Publish the buffers returned during this loop turn, then give starved
 * connections their recv back now that there is something to receive into. */
static void publish_buffers(void)
{
	if (!nr_returned)
		return;
	io_uring_buf_ring_advance(br, nr_returned);
	nr_returned = 0;
	while (nr_starved) {
		int fd = starved_fds[--nr_starved];

		if (conns[fd].starved) {
			conns[fd].starved = false;
			arm_recv(fd);
		}
	}
}

static void close_conn(int fd)
{
	memset(&conns[fd], 0, sizeof(conns[fd]));
	conns[fd].head = conns[fd].tail = -1;
	close(fd);
	if (accept_paused) {
		accept_paused = false;
		arm_accept();
	}
}

/* Close once neither a recv nor a send can still complete on this fd, so a
 * late CQE can never be mistaken for a new connection reusing the number. */
static void maybe_close(int fd)
{
	struct conn *c = &conns[fd];

	if (c->closing && !c->recv_armed && !c->send_inflight)
		close_conn(fd);
}

static void handle_accept(struct io_uring_cqe *cqe)
{
	int fd = cqe->res;

	if (fd == -EMFILE || fd == -ENFILE) {
		/* Re-arming now would fail again at once, for as long as the
		 * connection waits in the backlog: resume after a close. */
		if (!accept_paused)
			fprintf(stderr, "c_echo_server: accept: %s\n", strerror(-fd));
		accept_paused = !(cqe->flags & IORING_CQE_F_MORE);
		return;
	}
	if (!(cqe->flags & IORING_CQE_F_MORE))
		arm_accept();
	if (fd < 0) {
		if (fd != -ECANCELED)
			fprintf(stderr, "c_echo_server: accept: %s\n", strerror(-fd));
		return;
	}
	if (fd >= max_fds) {
		close(fd);
		return;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	memset(&conns[fd], 0, sizeof(conns[fd]));
	conns[fd].head = conns[fd].tail = -1;
	arm_recv(fd);
}

static void handle_recv(int fd, struct io_uring_cqe *cqe)
{
	struct conn *c = &conns[fd];

	if (!(cqe->flags & IORING_CQE_F_MORE))
		c->recv_armed = false;

	if (cqe->res > 0) {
		int bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;

		if (c->closing) {
			/* Sending already failed: discard what is still coming. */
			return_buffer(bid);
			maybe_close(fd);
			return;
		}
		buf_len[bid] = cqe->res;
		next_bid[bid] = -1;
		if (c->tail < 0)
			c->head = bid;
		else
			next_bid[c->tail] = bid;
		c->tail = bid;
		if (!c->send_inflight) {
			c->off = 0;
			submit_send(fd);
		}
		/* The kernel ends a multishot recv for reasons other than
		 * errors (e.g. CQ overflow); just start a new one. */
		if (!c->recv_armed && !c->closing)
			arm_recv(fd);
	} else if (cqe->res == -ENOBUFS) {
		/* Data is waiting but the buffer ring is empty: re-arm as soon as
		 * completed sends hand buffers back, rather than spinning. */
		if (c->closing) {
			maybe_close(fd);
		} else {
			c->starved = true;
			starved_fds[nr_starved++] = fd;
		}
	} else {
		/* EOF or a connection error: finish pending sends, then close. */
		c->closing = true;
		maybe_close(fd);
	}
}

static void handle_send(int fd, struct io_uring_cqe *cqe)
{
	struct conn *c = &conns[fd];
	int bid = c->head;

	c->send_inflight = false;
	if (cqe->res <= 0) {
		/* Peer is gone: drop what is queued. Shutting the socket down
		 * makes an active recv complete so the fd can be closed. */
		while (c->head >= 0) {
			int next = next_bid[c->head];

			return_buffer(c->head);
			c->head = next;
		}
		c->tail = -1;
		c->closing = true;
		c->starved = false; /* its entry on the starved stack goes stale */
		if (c->recv_armed)
			shutdown(fd, SHUT_RDWR);
		maybe_close(fd);
		return;
	}
	c->off += cqe->res;
	if (c->off < buf_len[bid]) {
		submit_send(fd); /* short send: push the rest */
		return;
	}
	c->head = next_bid[bid];
	if (c->head < 0)
		c->tail = -1;
	return_buffer(bid);
	c->off = 0;
	if (c->head >= 0)
		submit_send(fd);
	else
		maybe_close(fd);
}

static void handle_cqe(struct io_uring_cqe *cqe)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	int fd = (int)(uint32_t)ud;

	switch ((enum op)(ud >> 32)) {
	case OP_ACCEPT:
		handle_accept(cqe);
		break;
	case OP_RECV:
		handle_recv(fd, cqe);
		break;
	case OP_SEND:
		handle_send(fd, cqe);
		break;
	}
}

static void setup_ring(void)
{
	/* DEFER_TASKRUN (6.1+) runs completion work only when we ask for
	 * events, i.e. in our one io_uring_enter per turn, instead of
	 * interrupting us; COOP_TASKRUN (5.19+) is the next best thing. */
	static const unsigned int flag_sets[] = {
		IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
		IORING_SETUP_COOP_TASKRUN,
		0,
	};
	int ret = -EINVAL;

	for (size_t i = 0; i < sizeof(flag_sets) / sizeof(flag_sets[0]); i++) {
		struct io_uring_params p = {0};

		p.flags = flag_sets[i] | IORING_SETUP_CQSIZE;
		p.cq_entries = CQ_ENTRIES;
		ret = io_uring_queue_init_params(SQ_ENTRIES, &ring, &p);
		if (ret != -EINVAL)
			break;
	}
	if (ret < 0)
		die("io_uring_queue_init", -ret);
	io_uring_register_ring_fd(&ring); /* optional speed-up; ignore failure */
}

static void setup_buffers(void)
{
	size_t ring_bytes = NR_BUFS * sizeof(struct io_uring_buf);
	struct io_uring_buf_reg reg = {0};
	long page = sysconf(_SC_PAGESIZE);
	int ret;

	/* The kernel requires the buffer ring itself to be page aligned. */
	ret = posix_memalign((void **)&br, page, ring_bytes);
	if (ret)
		die("posix_memalign", ret);
	ret = posix_memalign((void **)&bufs, page, (size_t)NR_BUFS * BUF_SIZE);
	if (ret)
		die("posix_memalign", ret);

	reg.ring_addr = (uint64_t)(uintptr_t)br;
	reg.ring_entries = NR_BUFS;
	reg.bgid = BGID;
	ret = io_uring_register_buf_ring(&ring, &reg, 0);
	if (ret)
		die("io_uring_register_buf_ring", -ret);

	io_uring_buf_ring_init(br);
	for (int bid = 0; bid < NR_BUFS; bid++)
		return_buffer(bid);
	io_uring_buf_ring_advance(br, nr_returned);
	nr_returned = 0;
}

static void setup_listener(const char *host, int port)
{
	struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
	socklen_t len = sizeof(addr);
	int one = 1;

	if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
		fprintf(stderr, "c_echo_server: not an IPv4 address: %s\n", host);
		exit(2);
	}
	listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (listen_fd < 0)
		die("socket", errno);
	setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(listen_fd, (struct sockaddr *)&addr, sizeof(addr)) < 0)
		die("bind", errno);
	if (listen(listen_fd, SOMAXCONN) < 0)
		die("listen", errno);
	if (getsockname(listen_fd, (struct sockaddr *)&addr, &len) < 0)
		die("getsockname", errno);
	printf("listening on %s:%d\n", host, ntohs(addr.sin_port));
	fflush(stdout);
}

int main(int argc, char **argv)
{
	struct rlimit rl;
	struct sigaction sa = {.sa_handler = on_signal};

	if (argc != 3) {
		fprintf(stderr, "usage: %s HOST PORT\n", argv[0]);
		return 2;
	}

	/* One fd per connection: allow as many as the hard limit permits. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		max_fds = rl.rlim_cur > 1 << 20 ? 1 << 20 : (int)rl.rlim_cur;
	} else {
		max_fds = 1024;
	}
	conns = calloc(max_fds, sizeof(*conns));
	starved_fds = calloc(max_fds, sizeof(*starved_fds));
	if (!conns || !starved_fds)
		die("calloc", ENOMEM);

	/* No SA_RESTART: the signal must interrupt io_uring_enter. */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	setup_ring();
	setup_buffers();
	setup_listener(argv[1], atoi(argv[2]));
	arm_accept();

	while (!stop) {
		struct io_uring_cqe *cqe;
		unsigned int head, seen = 0;
		int ret = io_uring_submit_and_wait(&ring, 1);

		if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY)
			die("io_uring_submit_and_wait", -ret);
		io_uring_for_each_cqe(&ring, head, cqe) {
			handle_cqe(cqe);
			seen++;
		}
		io_uring_cq_advance(&ring, seen);
		publish_buffers();
	}

	io_uring_queue_exit(&ring);
	close(listen_fd);
	return 0;
}
