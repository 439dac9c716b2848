/* The Linux peer of the load tests and benchmarks: accept connections on PORT (IPv4 and
 * IPv6, one dual-stack socket), close each at once, count them. SIGTERM or SIGINT ends
 * it; it prints the count on stdout ("accepted N").  Usage: accept_server PORT [WORKERS
 * [echo]] (WORKERS processes share the port with SO_REUSEPORT; their counts are summed;
 * with "echo" each connection's first read is written back before the close). */
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define SRV_BACKLOG 65535

static volatile sig_atomic_t srv_stop;

static void srv_on_signal(int sig) { (void)sig; srv_stop = 1; }

static int srv_listen(int port) {
    int fd = socket(AF_INET6, SOCK_STREAM, 0), off = 0, on = 1;
    struct sockaddr_in6 a;
    if (fd < 0) return -1;
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on);
    memset(&a, 0, sizeof a);
    a.sin6_family = AF_INET6;
    a.sin6_port = htons((unsigned short)port);
    a.sin6_addr = in6addr_any;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, SRV_BACKLOG) < 0) return -1;
    return fd;
}

static int srv_echo;

static void srv_answer(int c) {
    char buf[65536];
    ssize_t got = read(c, buf, sizeof buf);
    if (got > 0 && write(c, buf, (size_t)got) < 0)
        perror("write");
}

static long srv_accept_loop(int fd) {
    long n = 0;
    while (!srv_stop) {
        int c = accept(fd, NULL, NULL);
        if (c >= 0 && srv_echo) srv_answer(c);
        if (c >= 0) { close(c); n++; }
        else if (errno != EINTR && errno != ECONNABORTED) break;
    }
    return n;
}

int main(int argc, char **argv) {
    int port = argc > 1 ? atoi(argv[1]) : 0, workers = argc > 2 ? atoi(argv[2]) : 1, fds[2];
    pid_t kids[64];
    srv_echo = argc > 3 && strcmp(argv[3], "echo") == 0;
    struct sigaction sa;
    long total = 0;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = srv_on_signal;            /* no SA_RESTART: accept() returns EINTR */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    if (port <= 0 || port > 65535 || workers < 1 || workers > 64 || pipe(fds) < 0) return 2;
    for (int w = 0; w < workers; w++) {
        if ((kids[w] = fork()) == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);  /* a killed parent takes its workers along */
            int fd = srv_listen(port);
            long n;
            if (fd < 0) { perror("listen"); _exit(1); }
            if (w == 0) { printf("listening\n"); fflush(stdout); }
            n = srv_accept_loop(fd);
            if (write(fds[1], &n, sizeof n) != sizeof n) _exit(1);
            _exit(0);
        }
    }
    while (!srv_stop) pause();
    for (int w = 0; w < workers; w++)       /* only our own workers: never the process group */
        if (kids[w] > 0) kill(kids[w], SIGTERM);
    for (int w = 0; w < workers; w++) {
        long n = 0;
        if (kids[w] > 0) waitpid(kids[w], NULL, 0);
        if (read(fds[0], &n, sizeof n) == sizeof n) total += n;
    }
    printf("accepted %ld\n", total);
    return 0;
}
