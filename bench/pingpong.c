/*
 * pingpong: the data-path and setup helper of bench/isolation.ts.
 * Compiled at bench time (gcc -O2), never installed.
 *
 *   pingpong server ADDR PORT
 *       listens on ADDR:PORT, prints "ready ADDR:PORT" (the address the
 *       kernel actually bound, so a cell's wildcard rewrite is visible), then
 *       serves connections one after another until killed.
 *   pingpong client ADDR PORT SRC pp SIZE COUNT     -> {"usPerRt":..}
 *   pingpong client ADDR PORT SRC bulk BYTES        -> {"gbps":..}
 *   pingpong client ADDR PORT SRC crr COUNT         -> {"usPerConn":..}
 *       SRC is a source address to bind before connect, or "-" for none.
 *       Every result line also carries the local and peer addresses seen by
 *       the client, so the bench can check which path it really measured.
 *   pingpong nsconf < LINES
 *       each line "NETNS_PATH IFNAME ADDR PREFIXLEN": setns into the netns
 *       and, over rtnetlink, set lo up, add ADDR/PREFIXLEN to IFNAME and set
 *       IFNAME up. One process for all containers: `ip -batch` cannot switch
 *       network namespaces between lines, and one `ip -n` per container
 *       would measure process spawning, not the kernel.
 *
 * Timing is taken inside this program (CLOCK_MONOTONIC), so process spawn,
 * nsenter and cgroup joins never count.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* if_nametoindex without <net/if.h>, which clashes with <linux/if.h> */
extern unsigned int if_nametoindex(const char *ifname);

enum { MODE_PP = 1, MODE_BULK = 2, MODE_CRR = 3 };

/* First bytes of every connection: what the client wants. */
struct hdr {
	uint32_t mode;
	uint32_t size;
	uint64_t count;
};

#define BULK_CHUNK (256 * 1024)

static void die(const char *what)
{
	fprintf(stderr, "pingpong: %s: %s\n", what, strerror(errno));
	exit(1);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int read_full(int fd, void *buf, size_t len)
{
	char *p = buf;
	while (len > 0) {
		ssize_t n = read(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int write_full(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static void parse_addr(const char *text, uint16_t port, struct sockaddr_in *sa)
{
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons(port);
	if (inet_pton(AF_INET, text, &sa->sin_addr) != 1) {
		fprintf(stderr, "pingpong: bad IPv4 address %s\n", text);
		exit(2);
	}
}

static void fmt_addr(const struct sockaddr_in *sa, char *out, size_t len)
{
	char ip[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, &sa->sin_addr, ip, sizeof(ip));
	snprintf(out, len, "%s:%u", ip, ntohs(sa->sin_port));
}

/* ---------------------------------------------------------------- server */

static void serve_one(int c)
{
	static char buf[BULK_CHUNK];
	struct hdr h;
	int one = 1;

	if (read_full(c, &h, sizeof(h)) < 0)
		return;
	setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (h.mode == MODE_PP) {
		if (h.size == 0 || h.size > sizeof(buf))
			return;
		for (uint64_t i = 0; i < h.count; i++) {
			if (read_full(c, buf, h.size) < 0 || write_full(c, buf, h.size) < 0)
				return;
		}
	} else if (h.mode == MODE_BULK) {
		uint64_t left = h.count;
		while (left > 0) {
			ssize_t n = read(c, buf, left < sizeof(buf) ? left : sizeof(buf));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				return;
			left -= (uint64_t)n;
		}
		/* the ack: the client stops its clock only when every byte arrived */
		write_full(c, "k", 1);
	} else if (h.mode == MODE_CRR) {
		write_full(c, "k", 1);
	}
}

static void __attribute__((noreturn)) cmd_server(const char *addr, uint16_t port)
{
	struct sockaddr_in sa, bound;
	socklen_t blen = sizeof(bound);
	char text[64];
	int one = 1;
	int s = socket(AF_INET, SOCK_STREAM, 0);

	if (s < 0)
		die("socket");
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	parse_addr(addr, port, &sa);
	if (bind(s, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("bind");
	if (listen(s, 512) < 0)
		die("listen");
	if (getsockname(s, (struct sockaddr *)&bound, &blen) < 0)
		die("getsockname");
	fmt_addr(&bound, text, sizeof(text));
	printf("ready %s\n", text);
	fflush(stdout);
	signal(SIGPIPE, SIG_IGN);
	for (;;) {
		int c = accept(s, NULL, NULL);
		if (c < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			die("accept");
		}
		serve_one(c);
		close(c);
	}
}

/* ---------------------------------------------------------------- client */

static int dial(const struct sockaddr_in *dst, const char *src, int linger0)
{
	int one = 1;
	int s = socket(AF_INET, SOCK_STREAM, 0);
	if (s < 0)
		die("socket");
	if (linger0) {
		/* RST on close: thousands of short connections leave no TIME_WAIT
		 * behind to exhaust ports across repetitions */
		struct linger l = { .l_onoff = 1, .l_linger = 0 };
		setsockopt(s, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
	}
	if (strcmp(src, "-") != 0) {
		struct sockaddr_in sa;
		parse_addr(src, 0, &sa);
		if (bind(s, (struct sockaddr *)&sa, sizeof(sa)) < 0)
			die("bind source");
	}
	if (connect(s, (const struct sockaddr *)dst, sizeof(*dst)) < 0)
		die("connect");
	setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return s;
}

static void print_result(int s, const char *key, double value)
{
	struct sockaddr_in local, peer;
	socklen_t ll = sizeof(local), pl = sizeof(peer);
	char lt[64] = "?", pt[64] = "?";
	if (getsockname(s, (struct sockaddr *)&local, &ll) == 0)
		fmt_addr(&local, lt, sizeof(lt));
	if (getpeername(s, (struct sockaddr *)&peer, &pl) == 0)
		fmt_addr(&peer, pt, sizeof(pt));
	printf("{\"%s\":%.6f,\"local\":\"%s\",\"peer\":\"%s\"}\n", key, value, lt, pt);
}

static int cmd_client(int argc, char **argv)
{
	struct sockaddr_in dst;
	const char *src = argv[4];
	const char *mode = argv[5];
	static char buf[BULK_CHUNK];

	parse_addr(argv[2], (uint16_t)atoi(argv[3]), &dst);
	signal(SIGPIPE, SIG_IGN);

	if (strcmp(mode, "pp") == 0 && argc == 8) {
		struct hdr h = { MODE_PP, (uint32_t)atoi(argv[6]), 0 };
		uint64_t count = strtoull(argv[7], NULL, 10);
		/* warm-up rounds (caches, ARP, TCP's delayed-ACK state) not timed */
		uint64_t warm = count / 10 + 10;
		h.count = warm + count;
		if (h.size == 0 || h.size > sizeof(buf))
			return 2;
		int s = dial(&dst, src, 0);
		if (write_full(s, &h, sizeof(h)) < 0)
			die("write header");
		memset(buf, 'p', h.size);
		double t0 = 0;
		for (uint64_t i = 0; i < h.count; i++) {
			if (i == warm)
				t0 = now_s();
			if (write_full(s, buf, h.size) < 0 || read_full(s, buf, h.size) < 0)
				die("ping-pong");
		}
		print_result(s, "usPerRt", (now_s() - t0) * 1e6 / (double)count);
		close(s);
		return 0;
	}
	if (strcmp(mode, "bulk") == 0 && argc == 7) {
		struct hdr h = { MODE_BULK, 0, strtoull(argv[6], NULL, 10) };
		int s = dial(&dst, src, 0);
		char ack;
		memset(buf, 'b', sizeof(buf));
		if (write_full(s, &h, sizeof(h)) < 0)
			die("write header");
		double t0 = now_s();
		uint64_t left = h.count;
		while (left > 0) {
			size_t n = left < sizeof(buf) ? left : sizeof(buf);
			if (write_full(s, buf, n) < 0)
				die("bulk write");
			left -= n;
		}
		if (read_full(s, &ack, 1) < 0)
			die("bulk ack");
		double dt = now_s() - t0;
		print_result(s, "gbps", (double)h.count * 8 / dt / 1e9);
		close(s);
		return 0;
	}
	if (strcmp(mode, "crr") == 0 && argc == 7) {
		struct hdr h = { MODE_CRR, 0, 0 };
		uint64_t count = strtoull(argv[6], NULL, 10);
		uint64_t warm = count / 10 + 10;
		double t0 = 0;
		int last = -1;
		char ack;
		for (uint64_t i = 0; i < warm + count; i++) {
			if (i == warm)
				t0 = now_s();
			int s = dial(&dst, src, 1);
			if (write_full(s, &h, sizeof(h)) < 0 || read_full(s, &ack, 1) < 0)
				die("crr");
			if (i + 1 == warm + count) {
				last = s; /* kept open to report its addresses */
				break;
			}
			close(s);
		}
		print_result(last, "usPerConn", (now_s() - t0) * 1e6 / (double)count);
		close(last);
		return 0;
	}
	fprintf(stderr, "pingpong: bad client arguments\n");
	return 2;
}

/* ---------------------------------------------------------------- nsconf */

static int nl_seq;

/* Sends one request and waits for its ack; returns 0 or -errno. */
static int nl_talk(int fd, struct nlmsghdr *n)
{
	char buf[8192];
	n->nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
	n->nlmsg_seq = (uint32_t)++nl_seq;
	if (send(fd, n, n->nlmsg_len, 0) < 0)
		return -errno;
	for (;;) {
		ssize_t len = recv(fd, buf, sizeof(buf), 0);
		if (len < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)len);
		     h = NLMSG_NEXT(h, len)) {
			if (h->nlmsg_seq != n->nlmsg_seq || h->nlmsg_type != NLMSG_ERROR)
				continue;
			return ((struct nlmsgerr *)NLMSG_DATA(h))->error;
		}
	}
}

static int link_up(int fd, int ifindex)
{
	struct {
		struct nlmsghdr n;
		struct ifinfomsg i;
	} req;
	memset(&req, 0, sizeof(req));
	req.n.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifinfomsg));
	req.n.nlmsg_type = RTM_NEWLINK;
	req.i.ifi_family = AF_UNSPEC;
	req.i.ifi_index = ifindex;
	req.i.ifi_flags = IFF_UP;
	req.i.ifi_change = IFF_UP;
	return nl_talk(fd, &req.n);
}

static void add_attr(struct nlmsghdr *n, unsigned short type, const void *data, size_t len)
{
	struct rtattr *rta = (struct rtattr *)((char *)n + NLMSG_ALIGN(n->nlmsg_len));
	rta->rta_type = type;
	rta->rta_len = (unsigned short)RTA_LENGTH(len);
	memcpy(RTA_DATA(rta), data, len);
	n->nlmsg_len = NLMSG_ALIGN(n->nlmsg_len) + RTA_ALIGN(rta->rta_len);
}

static int addr_add(int fd, int ifindex, struct in_addr a, int plen)
{
	struct {
		struct nlmsghdr n;
		struct ifaddrmsg a;
		char attrs[64];
	} req;
	memset(&req, 0, sizeof(req));
	req.n.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifaddrmsg));
	req.n.nlmsg_type = RTM_NEWADDR;
	req.n.nlmsg_flags = NLM_F_CREATE | NLM_F_EXCL;
	req.a.ifa_family = AF_INET;
	req.a.ifa_prefixlen = (unsigned char)plen;
	req.a.ifa_index = (unsigned)ifindex;
	add_attr(&req.n, IFA_LOCAL, &a, 4);
	add_attr(&req.n, IFA_ADDRESS, &a, 4);
	return nl_talk(fd, &req.n);
}

static int cmd_nsconf(void)
{
	char path[512], ifname[IFNAMSIZ + 1], addr[64];
	int plen, done = 0;

	while (scanf("%511s %16s %63s %d", path, ifname, addr, &plen) == 4) {
		struct in_addr a;
		int nsfd = open(path, O_RDONLY | O_CLOEXEC);
		if (nsfd < 0)
			die(path);
		if (setns(nsfd, CLONE_NEWNET) < 0)
			die("setns");
		close(nsfd);
		/* the netlink socket belongs to the netns it was created in:
		 * one per container, after the setns */
		int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
		if (fd < 0)
			die("netlink socket");
		if (inet_pton(AF_INET, addr, &a) != 1) {
			fprintf(stderr, "pingpong: bad address %s\n", addr);
			return 2;
		}
		int idx = (int)if_nametoindex(ifname);
		int err;
		if (idx == 0)
			die(ifname);
		if ((err = link_up(fd, 1)) < 0 || (err = addr_add(fd, idx, a, plen)) < 0 ||
		    (err = link_up(fd, idx)) < 0) {
			errno = -err;
			die(path);
		}
		close(fd);
		done++;
	}
	printf("%d\n", done);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 4 && strcmp(argv[1], "server") == 0)
		cmd_server(argv[2], (uint16_t)atoi(argv[3]));
	if (argc >= 6 && strcmp(argv[1], "client") == 0)
		return cmd_client(argc, argv);
	if (argc == 2 && strcmp(argv[1], "nsconf") == 0)
		return cmd_nsconf();
	fprintf(stderr, "usage: pingpong server ADDR PORT | client ADDR PORT SRC pp SIZE COUNT | "
			"client ADDR PORT SRC bulk BYTES | client ADDR PORT SRC crr COUNT | nsconf\n");
	return 2;
}
