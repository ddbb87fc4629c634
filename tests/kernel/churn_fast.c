/*
 * A fast TCP churn for the nethogs test: hundreds of short connections per second, which
 * the Python churn (churn.py) cannot make in a TCG guest. Usage: churn_fast NCLIENTS.
 * Forks a server (accepts and closes, on 127.0.0.1, an ephemeral port) and NCLIENTS
 * clients named "cf-client" that connect, send 100 bytes and close in a loop; prints
 * "READY PORT" once the first connection went through, then runs until its process group
 * is killed.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static void client(struct sockaddr_in *addr)
{
	char buf[100];
	memset(buf, 'x', sizeof(buf));
	prctl(PR_SET_NAME, "cf-client", 0, 0, 0);
	for (;;) {
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		if (fd < 0)
			continue;
		if (connect(fd, (struct sockaddr *)addr, sizeof(*addr)) == 0)
			(void)write(fd, buf, sizeof(buf));
		close(fd);
	}
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 3;
	struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(addr);
	int lst = socket(AF_INET, SOCK_STREAM, 0);
	int one = 1;
	setpgid(0, 0);
	setsockopt(lst, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lst, (struct sockaddr *)&addr, sizeof(addr)) || listen(lst, 1024) ||
	    getsockname(lst, (struct sockaddr *)&addr, &len)) {
		perror("churn_fast: listener");
		return 1;
	}
	if (fork() == 0) {
		prctl(PR_SET_NAME, "cf-server", 0, 0, 0);
		for (;;) {
			int fd = accept(lst, NULL, NULL);
			if (fd >= 0)
				close(fd);
		}
	}
	for (int i = 0; i < n; i++)
		if (fork() == 0)
			client(&addr);
	printf("READY %d\n", ntohs(addr.sin_port));
	fflush(stdout);
	for (;;)
		pause();
}
