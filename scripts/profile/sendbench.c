// sendbench: what batching a fan-out's system calls could save. One small
// send to each of N loopback TCP sockets per round, either one send(2) per
// socket, as the transport's flusher does, or all N as one io_uring
// submission; a child process reads every socket through epoll, as the
// receivers do. Prints the sender's and the receivers' CPU per send and the
// round's duration (issue 15; BENCHMARKS.md, "What a delivery costs").
//
//   apt-get install liburing-dev
//   gcc -O2 -o /tmp/sendbench scripts/profile/sendbench.c -luring
//   /tmp/sendbench SOCKETS ROUNDS BYTES write|uring GAP_MS
//   for r in 1 2 3; do /tmp/sendbench 1000 500 200 write 10; /tmp/sendbench 1000 500 200 uring 10; done
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
static double cpu(int who) { struct rusage r; getrusage(who, &r); return r.ru_utime.tv_sec + r.ru_utime.tv_usec / 1e6 + r.ru_stime.tv_sec + r.ru_stime.tv_usec / 1e6; }
static int cmp(const void *a, const void *b) { double x = *(double *)a, y = *(double *)b; return x < y ? -1 : x > y; }

int main(int argc, char **argv) {
	int n = atoi(argv[1]), rounds = atoi(argv[2]), size = atoi(argv[3]), uring = strcmp(argv[4], "uring") == 0;
	double gap = atof(argv[5]) / 1000;
	int l = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof a;
	bind(l, (void *)&a, sizeof a); listen(l, 4096); getsockname(l, (void *)&a, &al);
	int *cl = calloc(n, sizeof(int)), *sv = calloc(n, sizeof(int));
	for (int i = 0; i < n; i++) {
		cl[i] = socket(AF_INET, SOCK_STREAM, 0);
		if (connect(cl[i], (void *)&a, sizeof a)) { perror("connect"); return 1; }
		sv[i] = accept(l, 0, 0);
		int one = 1; setsockopt(sv[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	}
	pid_t kid = fork();
	if (kid == 0) { // receivers
		for (int i = 0; i < n; i++) close(sv[i]);
		int ep = epoll_create1(0);
		for (int i = 0; i < n; i++) { struct epoll_event e = {.events = EPOLLIN, .data.fd = cl[i]}; epoll_ctl(ep, EPOLL_CTL_ADD, cl[i], &e); }
		char buf[65536]; struct epoll_event ev[256]; int open = n;
		while (open > 0) {
			int k = epoll_wait(ep, ev, 256, -1);
			for (int j = 0; j < k; j++) {
				ssize_t r = read(ev[j].data.fd, buf, sizeof buf);
				if (r == 0) { epoll_ctl(ep, EPOLL_CTL_DEL, ev[j].data.fd, 0); open--; }
			}
		}
		return 0;
	}
	for (int i = 0; i < n; i++) close(cl[i]);
	char *msg = malloc(size); memset(msg, 'x', size);
	struct io_uring ring;
	if (uring && io_uring_queue_init(n, &ring, 0)) { perror("io_uring"); return 1; }
	double *dur = calloc(rounds, sizeof(double));
	long short_ = 0;
	double c0 = cpu(RUSAGE_SELF), t0 = now(), next = t0;
	for (int r = 0; r < rounds; r++) {
		{ struct timespec ts = {(time_t)next, (long)((next - (time_t)next) * 1e9)}; clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, 0); }
		next += gap;
		double s = now();
		if (!uring) {
			for (int i = 0; i < n; i++) if (send(sv[i], msg, size, MSG_DONTWAIT) != size) short_++;
		} else {
			for (int i = 0; i < n; i++) { struct io_uring_sqe *q = io_uring_get_sqe(&ring); io_uring_prep_send(q, sv[i], msg, size, MSG_DONTWAIT); }
			io_uring_submit_and_wait(&ring, n);
			struct io_uring_cqe *c; unsigned head, k = 0;
			io_uring_for_each_cqe(&ring, head, c) { if (c->res != size) short_++; k++; }
			io_uring_cq_advance(&ring, k);
		}
		dur[r] = (now() - s) * 1000;
	}
	double c1 = cpu(RUSAGE_SELF) - c0, wall = now() - t0;
	for (int i = 0; i < n; i++) close(sv[i]);
	int st; struct rusage kr; wait4(kid, &st, 0, &kr);
	double kc = kr.ru_utime.tv_sec + kr.ru_utime.tv_usec / 1e6 + kr.ru_stime.tv_sec + kr.ru_stime.tv_usec / 1e6;
	qsort(dur, rounds, sizeof(double), cmp);
	printf("%s n=%d size=%d rounds=%d: sender %.2f us/send (cpu), receiver %.2f us/send (cpu), round p50 %.2f p99 %.2f ms, short %ld, wall %.1fs cpu %.2f\n",
		uring ? "uring" : "write", n, size, rounds, c1 * 1e6 / ((double)n * rounds), kc * 1e6 / ((double)n * rounds), dur[rounds / 2], dur[rounds * 99 / 100], short_, wall, c1);
	return 0;
}
