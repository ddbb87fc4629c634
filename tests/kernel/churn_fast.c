/*
 * Socket churn for the reliability and nethogs tests: thousands of short TCP connections and
 * UDP sockets per second, which a Python churn cannot make in a TCG guest.
 *
 * Usage: churn_fast TCP_CLIENTS [UDP_CHURNERS]
 *
 * Forks a server ("cf-server", on [::] with IPv4 mapped, an ephemeral port: it accepts and
 * holds the last RING connections, closing the oldest as a new one comes; it never reads, so
 * its close resets the connection and no TIME-WAIT piles up; the client's side waits in
 * FIN-WAIT-2 meanwhile, the server's in CLOSE-WAIT), TCP_CLIENTS clients ("cf-client": connect, send 100 bytes, close, in a loop; odd ones
 * over 127.0.0.1, even ones over ::1) and UDP_CHURNERS ("cf-udp": open a UDP socket, bind it
 * to a loopback address, send itself a byte, close; odd ones IPv4, even ones IPv6). Prints
 * "READY PORT" once the first connection went through, then runs until its process group is
 * sent SIGTERM; the first process then prints "MADE TCP UDP": the connections and UDP sockets
 * its children made (shared counters).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* Connections the server holds, closing the oldest as it accepts one: a few milliseconds each. */
#define RING 64

struct counts {
	unsigned long tcp, udp;
};

static struct counts *counts;
static volatile sig_atomic_t stop;

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

static socklen_t loopback(int family, unsigned short port, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)ss;
		in->sin_family = AF_INET;
		in->sin_port = htons(port);
		in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		return sizeof(*in);
	}
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
	in6->sin6_family = AF_INET6;
	in6->sin6_port = htons(port);
	in6->sin6_addr = in6addr_loopback;
	return sizeof(*in6);
}

static void client(int family, unsigned short port)
{
	char buf[100];
	struct sockaddr_storage addr;
	socklen_t len = loopback(family, port, &addr);
	memset(buf, 'x', sizeof(buf));
	prctl(PR_SET_NAME, "cf-client", 0, 0, 0);
	for (;;) {
		int fd = socket(family, SOCK_STREAM, 0);
		if (fd < 0) {
			usleep(1000);
			continue;
		}
		if (connect(fd, (struct sockaddr *)&addr, len) == 0) {
			(void)write(fd, buf, sizeof(buf));
			__atomic_fetch_add(&counts->tcp, 1, __ATOMIC_RELAXED);
		} else {
			usleep(1000); /* out of ports or backlog: let TIME-WAITs go */
		}
		close(fd);
	}
}

static void udp_churner(int family)
{
	struct sockaddr_storage addr;
	prctl(PR_SET_NAME, "cf-udp", 0, 0, 0);
	for (;;) {
		socklen_t len = loopback(family, 0, &addr);
		int fd = socket(family, SOCK_DGRAM, 0);
		if (fd < 0) {
			usleep(1000);
			continue;
		}
		if (bind(fd, (struct sockaddr *)&addr, len) == 0 &&
		    getsockname(fd, (struct sockaddr *)&addr, &len) == 0) {
			(void)sendto(fd, "y", 1, 0, (struct sockaddr *)&addr, len);
			__atomic_fetch_add(&counts->udp, 1, __ATOMIC_RELAXED);
		}
		close(fd);
	}
}

int main(int argc, char **argv)
{
	int ntcp = argc > 1 ? atoi(argv[1]) : 3;
	int nudp = argc > 2 ? atoi(argv[2]) : 0;
	struct sockaddr_in6 addr = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_ANY_INIT};
	socklen_t len = sizeof(addr);
	int lst = socket(AF_INET6, SOCK_STREAM, 0);
	int one = 1, zero = 0;
	struct sigaction sa = {.sa_handler = on_term};

	setpgid(0, 0);
	sigaction(SIGTERM, &sa, NULL); /* the children reset it: SIGTERM ends them */
	counts = mmap(NULL, sizeof(*counts), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (counts == MAP_FAILED || lst < 0) {
		perror("churn_fast");
		return 1;
	}
	setsockopt(lst, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	setsockopt(lst, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	if (bind(lst, (struct sockaddr *)&addr, sizeof(addr)) || listen(lst, 1024) ||
	    getsockname(lst, (struct sockaddr *)&addr, &len)) {
		perror("churn_fast: listener");
		return 1;
	}
	unsigned short port = ntohs(addr.sin6_port);
	if (fork() == 0) {
		signal(SIGTERM, SIG_DFL);
		int ring[RING], next = 0;
		prctl(PR_SET_NAME, "cf-server", 0, 0, 0);
		for (int i = 0; i < RING; i++)
			ring[i] = -1;
		for (;;) {
			int fd = accept(lst, NULL, NULL);
			if (fd < 0)
				continue;
			if (ring[next] >= 0)
				close(ring[next]);
			ring[next] = fd;
			next = (next + 1) % RING;
		}
	}
	close(lst);
	for (int i = 0; i < ntcp; i++)
		if (fork() == 0) {
			signal(SIGTERM, SIG_DFL);
			client(i % 2 ? AF_INET : AF_INET6, port);
		}
	for (int i = 0; i < nudp; i++)
		if (fork() == 0) {
			signal(SIGTERM, SIG_DFL);
			udp_churner(i % 2 ? AF_INET : AF_INET6);
		}
	while (ntcp && !__atomic_load_n(&counts->tcp, __ATOMIC_RELAXED) && !stop)
		usleep(1000);
	printf("READY %u\n", port);
	fflush(stdout);
	while (!stop)
		usleep(100000); /* not pause(): a SIGTERM just before it would be missed */
	while (wait(NULL) > 0)
		;
	printf("MADE %lu %lu\n", counts->tcp, counts->udp);
	fflush(stdout);
	return 0;
}
