/*
 * c_proxy: a minimal liburing TCP proxy, the ceiling proxy_bench.py measures
 * the Python proxies against.
 *
 *   c_proxy HOST PORT UPSTREAM_HOST UPSTREAM_PORT   (IPv4; PORT 0 picks one)
 *
 * Prints "listening on HOST:PORT" once listening; exits 0 on SIGINT or
 * SIGTERM.
 *
 * Each accepted connection gets an upstream connection (a blocking
 * connect: this is a benchmark, not a server), and each direction is the
 * loop uringio's pumps run (_build/_core/uring_pumps.c), with nothing
 * around it:
 *   - a single-shot recv on the source, its buffer picked by the kernel
 *     from a provided-buffer ring of BUF_SIZE buffers;
 *   - a send to the destination straight from that buffer, which goes back
 *     to the ring once the send has taken all of it;
 *   - one recv and one send in flight per direction (two sends on one TCP
 *     socket could be reordered), and at most PIECES buffers held;
 *   - few buffers in the ring (FIRST_BUFS), doubled whenever a recv finds
 *     none, up to NR_BUFS: the kernel cycles through all it has, and a few
 *     stay warm in cache;
 *   - EOF passed on as shutdown(SHUT_WR); a pair closes when both
 *     directions have ended, or at the first error.
 * One io_uring_submit_and_wait() per turn, then every CQE ready.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF_SIZE (1 << 20)
#define NR_BUFS 64 /* a power of two */
#define FIRST_BUFS 4
#define BGID 0
#define PIECES 2
#define MAX_DIRS 65536

enum op { OP_ACCEPT, OP_RECV, OP_SEND };

struct piece {
	unsigned short bid;
	unsigned int off, len;
};

/* One direction of a pair; dirs 2k and 2k+1 are the two of pair k. */
struct dir {
	int src, dst;
	int recving, sending, eof, done, used;
	unsigned int head, n;
	struct piece q[PIECES];
};

static struct io_uring ring;
static struct io_uring_buf_ring *br;
static char *bufs;
static unsigned added;   /* buffers 0..added-1 are in circulation */
static struct dir dirs[MAX_DIRS];
static struct sockaddr_in upstream;
static int listen_fd;
static volatile sig_atomic_t stop;

static void die(const char *what, int err)
{
	fprintf(stderr, "c_proxy: %s: %s\n", what, strerror(err));
	exit(2);
}

static struct io_uring_sqe *sqe_get(void)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
	if (!sqe) {
		io_uring_submit(&ring);
		sqe = io_uring_get_sqe(&ring);
	}
	if (!sqe)
		die("no SQE", EBUSY);
	return sqe;
}

static uint64_t ud(enum op op, int d) { return (uint64_t)op << 32 | (uint32_t)d; }

static void give_back(unsigned short bid)
{
	io_uring_buf_ring_add(br, bufs + (size_t)bid * BUF_SIZE, BUF_SIZE, bid,
			      io_uring_buf_ring_mask(NR_BUFS), 0);
	io_uring_buf_ring_advance(br, 1);
}

static void grow(unsigned n)
{
	unsigned i;
	if (n > NR_BUFS - added)
		n = NR_BUFS - added;
	for (i = 0; i < n; i++)
		io_uring_buf_ring_add(br, bufs + (size_t)(added + i) * BUF_SIZE, BUF_SIZE, added + i,
				      io_uring_buf_ring_mask(NR_BUFS), i);
	io_uring_buf_ring_advance(br, n);
	added += n;
}

static void arm_recv(int d)
{
	struct dir *x = &dirs[d];
	if (x->recving || x->eof || x->done || x->n == PIECES)
		return;
	struct io_uring_sqe *sqe = sqe_get();
	io_uring_prep_recv(sqe, x->src, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = BGID;
	io_uring_sqe_set_data64(sqe, ud(OP_RECV, d));
	x->recving = 1;
}

static void arm_send(int d)
{
	struct dir *x = &dirs[d];
	if (x->sending || x->n == 0 || x->done)
		return;
	struct piece *p = &x->q[x->head];
	struct io_uring_sqe *sqe = sqe_get();
	io_uring_prep_send(sqe, x->dst, bufs + (size_t)p->bid * BUF_SIZE + p->off, p->len,
			   MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, ud(OP_SEND, d));
	x->sending = 1;
}

/* A direction is over once nothing of it is in flight; the pair's fds
 * close once both are. */
static void settle(int d)
{
	struct dir *x = &dirs[d], *other = &dirs[d ^ 1];
	if (x->recving || x->sending)
		return;
	if (!x->done && !(x->eof && x->n == 0))
		return;
	if (!x->done) {
		shutdown(x->dst, SHUT_WR);   /* src's EOF, every byte out */
		x->done = 1;
	}
	for (; x->n; x->n--, x->head = (x->head + 1) % PIECES)
		give_back(x->q[x->head].bid);
	if (other->done && !other->recving && !other->sending && x->used && other->used) {
		close(x->src);
		close(x->dst);
		x->used = other->used = 0;
	}
}

static void fail(int d)
{
	/* An error ends both directions: shutting both sockets down ends
	 * what is in flight on them. */
	struct dir *x = &dirs[d];
	dirs[d].done = dirs[d ^ 1].done = 1;
	shutdown(x->src, SHUT_RDWR);
	shutdown(x->dst, SHUT_RDWR);
}

static void on_accept(int fd)
{
	int d = -1, i, one = 1;
	for (i = 0; i < MAX_DIRS; i += 2)
		if (!dirs[i].used && !dirs[i + 1].used && !dirs[i].recving && !dirs[i].sending &&
		    !dirs[i + 1].recving && !dirs[i + 1].sending) {
			d = i;
			break;
		}
	int up = socket(AF_INET, SOCK_STREAM, 0);
	if (d < 0 || up < 0 || connect(up, (struct sockaddr *)&upstream, sizeof(upstream))) {
		close(fd);
		if (up >= 0)
			close(up);
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(up, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	memset(&dirs[d], 0, 2 * sizeof(struct dir));
	dirs[d] = (struct dir){.src = fd, .dst = up, .used = 1};
	dirs[d + 1] = (struct dir){.src = up, .dst = fd, .used = 1};
	arm_recv(d);
	arm_recv(d + 1);
}

static void on_cqe(struct io_uring_cqe *cqe)
{
	uint64_t u = io_uring_cqe_get_data64(cqe);
	int d = (int)(uint32_t)u, res = cqe->res;
	struct dir *x = &dirs[d];

	switch ((enum op)(u >> 32)) {
	case OP_ACCEPT:
		if (res >= 0)
			on_accept(res);
		if (!(cqe->flags & IORING_CQE_F_MORE) && !stop) {
			struct io_uring_sqe *sqe = sqe_get();
			io_uring_prep_multishot_accept(sqe, listen_fd, NULL, NULL, 0);
			io_uring_sqe_set_data64(sqe, ud(OP_ACCEPT, 0));
		}
		return;
	case OP_RECV:
		x->recving = 0;
		if (res > 0) {
			unsigned int slot = (x->head + x->n) % PIECES;
			x->q[slot] = (struct piece){cqe->flags >> IORING_CQE_BUFFER_SHIFT, 0, res};
			x->n++;
		} else if (res == 0) {
			x->eof = 1;
		} else if (res == -ENOBUFS) {
			grow(added);
		} else {
			fail(d);
		}
		break;
	case OP_SEND:
		x->sending = 0;
		if (res > 0) {
			struct piece *p = &x->q[x->head];
			p->off += res;
			p->len -= res;
			if (p->len == 0) {
				give_back(p->bid);
				x->head = (x->head + 1) % PIECES;
				x->n--;
			}
		} else {
			fail(d);
		}
		break;
	}
	/* (-ENOBUFS: re-armed here, the ring refilled by the sends in flight.) */
	arm_send(d);
	arm_recv(d);
	settle(d);
}

static void on_signal(int sig) { (void)sig; stop = 1; }

int main(int argc, char **argv)
{
	struct sockaddr_in addr = {.sin_family = AF_INET};
	socklen_t len = sizeof(addr);
	struct io_uring_buf_reg reg = {0};
	struct io_uring_params params = {0};
	int one = 1, ret;

	if (argc != 5) {
		fprintf(stderr, "usage: c_proxy HOST PORT UPSTREAM_HOST UPSTREAM_PORT\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	upstream.sin_family = AF_INET;
	upstream.sin_port = htons(atoi(argv[4]));
	if (inet_pton(AF_INET, argv[1], &addr.sin_addr) != 1 ||
	    inet_pton(AF_INET, argv[3], &upstream.sin_addr) != 1)
		die("address", EINVAL);
	addr.sin_port = htons(atoi(argv[2]));
	listen_fd = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(listen_fd, (struct sockaddr *)&addr, sizeof(addr)) || listen(listen_fd, 4096))
		die("bind/listen", errno);
	getsockname(listen_fd, (struct sockaddr *)&addr, &len);

	params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
	if ((ret = io_uring_queue_init_params(1024, &ring, &params)) < 0)
		die("io_uring_queue_init", -ret);
	if (posix_memalign((void **)&br, 4096, NR_BUFS * sizeof(struct io_uring_buf)) ||
	    posix_memalign((void **)&bufs, 4096, (size_t)NR_BUFS * BUF_SIZE))
		die("buffers", ENOMEM);
	reg.ring_addr = (unsigned long)br;
	reg.ring_entries = NR_BUFS;
	reg.bgid = BGID;
	if ((ret = io_uring_register_buf_ring(&ring, &reg, 0)))
		die("io_uring_register_buf_ring", -ret);
	io_uring_buf_ring_init(br);
	grow(FIRST_BUFS);

	struct io_uring_sqe *sqe = sqe_get();
	io_uring_prep_multishot_accept(sqe, listen_fd, NULL, NULL, 0);
	io_uring_sqe_set_data64(sqe, ud(OP_ACCEPT, 0));
	printf("listening on %s:%d\n", argv[1], ntohs(addr.sin_port));
	fflush(stdout);

	while (!stop) {
		struct io_uring_cqe *cqe;
		unsigned head, n = 0;
		ret = io_uring_submit_and_wait(&ring, 1);
		if (ret < 0 && ret != -EINTR)
			die("io_uring_submit_and_wait", -ret);
		io_uring_for_each_cqe(&ring, head, cqe) {
			on_cqe(cqe);
			n++;
		}
		io_uring_cq_advance(&ring, n);
	}
	return 0;
}
