/*
 * agentdock-hold: keeps a session's program running in its container when the service goes
 * away, and hands its terminal to the next service. See service/runtimes/holder.py.
 *
 *   agentdock-hold run BASE ROWS COLS PROGRAM [ARG...]
 *   agentdock-hold attach BASE ROWS COLS [OFFSET]
 *
 * `run` opens a PTY of ROWS x COLS, starts PROGRAM on it (a session leader: its process group
 * is the session's) and relays between that PTY and its own standard input and output, which
 * are the service's exec stream (no TTY: the stream is a pair of pipes). When the stream ends
 * (the service stopped or died), the program runs on; what it prints meanwhile is kept, the
 * latest KEEP bytes of it, and `attach` — a new exec of a new service — hands its own standard
 * input and output to the holder over BASE.sock (SCM_RIGHTS), gets the kept output first, and
 * lives until the holder lets go of it. A newer attach replaces an older one.
 *
 * Input, from the service: frames of a type byte, a big-endian 16-bit length and the payload.
 * Type 0: bytes for the program's terminal. Type 1: a resize (rows, cols: big-endian 16-bit).
 * Output: the program's bytes, unchanged and never dropped while a client is attached (the
 * program waits for a slow client, as on a terminal).
 *
 * Files, named BASE.*, in a directory of the session's user: .sock (the holder's socket),
 * .pid (the program's pid: its process group and session), .exit (its exit status, 128 + the
 * signal when a signal ended it), .tail (what it printed after the last client went away,
 * when it ended unattended: the next attach prints it). Everything here runs as the session's
 * user and trusts nothing that user could write: it only ever steers that user's own session.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define GONE 111             /* attach: there is no session to attach to */
#define KEEP (256 * 1024)    /* output kept for a client: its buffer, and the detached history */
#define INCAP (64 * 1024)    /* input waiting for the program */
#define QUIET_MS 100         /* after the program's exit: output is over after this much quiet */
#define DRAIN_MS 2000        /* ... or after this long at most (background writers) */

static char path_sock[4096], path_pid[4096], path_exit[4096], path_tail[4096];

static void die(const char *what) {
    fprintf(stderr, "agentdock-hold: %s: %s\n", what, strerror(errno));
    exit(125);
}

static void paths(const char *b) {
    if (snprintf(path_sock, sizeof path_sock, "%s.sock", b) >= (int)sizeof path_sock) {
        errno = ENAMETOOLONG;
        die("base");
    }
    snprintf(path_pid, sizeof path_pid, "%s.pid", b);
    snprintf(path_exit, sizeof path_exit, "%s.exit", b);
    snprintf(path_tail, sizeof path_tail, "%s.tail", b);
}

static unsigned short number(const char *text) {
    char *end;
    long value = strtol(text, &end, 10);
    if (*text == '\0' || *end != '\0' || value < 1 || value > 9999) {
        fprintf(stderr, "agentdock-hold: not a terminal size: %s\n", text);
        exit(125);
    }
    return (unsigned short)value;
}

static struct sockaddr_un address(void) {
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path_sock) >= sizeof addr.sun_path) {
        errno = ENAMETOOLONG;
        die(path_sock);
    }
    strcpy(addr.sun_path, path_sock);
    return addr;
}

static void write_all(int fd, const char *data, size_t len) {
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        data += n;
        len -= (size_t)n;
    }
}

/* A small file, replaced whole (written aside, then renamed over). */
static void write_file(const char *path, const char *data, size_t len) {
    char aside[4200];
    snprintf(aside, sizeof aside, "%s.new", path);
    int fd = open(aside, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    write_all(fd, data, len);
    close(fd);
    rename(aside, path);
}

static long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void nonblocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

/* Offsets and sizes travel big-endian, as the service reads and writes them. */
static void put64(unsigned char *out, uint64_t value) {
    for (int i = 0; i < 8; i++)
        out[i] = (unsigned char)(value >> (56 - 8 * i));
}

static uint64_t get64(const unsigned char *in) {
    uint64_t value = 0;
    for (int i = 0; i < 8; i++)
        value = value << 8 | in[i];
    return value;
}

static unsigned short get16(const unsigned char *in) { return (unsigned short)(in[0] << 8 | in[1]); }

/* ---- output: the latest KEEP bytes, indexed by their offset in all the program printed ---- */
static char ring[KEEP];
static uint64_t total;   /* bytes the program has printed: the offset of the next one */
static uint64_t kept;    /* how many of the latest of them the ring holds */
static uint64_t sent;    /* the offset of the next byte for the client */
static unsigned char header[8];
static size_t header_left; /* a client's stream starts with the offset of its first byte */

static uint64_t unsent(void) { return total - sent; }
static uint64_t pending_out(void) { return header_left + unsent(); }

/* Room for output while a client is attached: what it has not had is never overwritten. */
static size_t ring_room(void) { return (size_t)(KEEP - unsent()); }

static void ring_put(const char *data, size_t len) {
    while (len > 0) {
        size_t at = (size_t)(total % KEEP), n = KEEP - at < len ? KEEP - at : len;
        memcpy(ring + at, data, n);
        data += n;
        len -= n;
        total += n;
        kept = kept + n > KEEP ? KEEP : kept + n;
    }
    if (sent < total - kept) /* no client took it in time: the oldest is gone */
        sent = total - kept;
}

/* The next client gets the program's output from offset `from` on, as far as it is kept. */
static void start_stream(uint64_t from) {
    if (from > total)
        from = total;
    if (from < total - kept)
        from = total - kept;
    sent = from;
    put64(header, from);
    header_left = 8;
}

/* ---- the client: the exec stream's standard input and output ---- */
static int in_fd = -1, out_fd = -1, conn_fd = -1; /* conn: the `attach` process that lent them */
static unsigned char frame[3];
static size_t frame_len, payload_left;
static unsigned char frame_type, resize_buf[4];
static size_t resize_len;
static char keys[INCAP];
static size_t keys_len;

static int null_fd = -1;

static void detach(void) {
    if (null_fd >= 0)
        dup2(null_fd, 2); /* the first exec's stream ends only when nothing here holds it */
    if (in_fd >= 0)
        close(in_fd);
    if (out_fd >= 0 && out_fd != in_fd)
        close(out_fd);
    if (conn_fd >= 0)
        close(conn_fd);
    in_fd = out_fd = conn_fd = -1;
    frame_len = payload_left = resize_len = 0;
    header_left = 0;
}

static int master = -1;
static pid_t child;

static void set_size(unsigned short rows, unsigned short cols, int redraw) {
    struct winsize ws = {.ws_row = rows, .ws_col = cols};
    ioctl(master, TIOCSWINSZ, &ws);
    if (redraw) { /* a program at this size already redraws only on a signal */
        pid_t group = tcgetpgrp(master);
        kill(group > 0 ? -group : -child, SIGWINCH);
    }
}

/* Parses what the client sent: key bytes gather in `keys`, resizes apply at once. */
static void take_input(const unsigned char *data, size_t len) {
    while (len > 0) {
        if (payload_left == 0 && frame_len < 3) {
            frame[frame_len++] = *data++;
            len--;
            if (frame_len == 3) {
                frame_type = frame[0];
                payload_left = ((size_t)frame[1] << 8) | frame[2];
                resize_len = 0;
                frame_len = payload_left == 0 ? 0 : 3;
            }
            continue;
        }
        size_t n = len < payload_left ? len : payload_left;
        if (frame_type == 0) {
            memcpy(keys + keys_len, data, n); /* fits: never read more than the room left */
            keys_len += n;
        } else if (frame_type == 1) {
            for (size_t i = 0; i < n && resize_len < 4; i++)
                resize_buf[resize_len++] = data[i];
        }
        data += n;
        len -= n;
        payload_left -= n;
        if (payload_left == 0) {
            if (frame_type == 1 && resize_len == 4) {
                unsigned short rows = get16(resize_buf), cols = get16(resize_buf + 2);
                if (rows > 0 && cols > 0)
                    set_size(rows, cols, 0);
            }
            frame_len = 0;
        }
    }
}

/* A new client from `attach`: its stdin, stdout, size and the offset it wants output from. */
static void accept_client(int listener) {
    int conn = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
    if (conn < 0)
        return;
    struct timeval limit = {.tv_sec = 1};
    setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
    unsigned char size[12];
    struct iovec iov = {.iov_base = size, .iov_len = sizeof size};
    union {
        char buf[CMSG_SPACE(2 * sizeof(int))];
        struct cmsghdr align;
    } control;
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof control.buf};
    ssize_t got = recvmsg(conn, &msg, MSG_CMSG_CLOEXEC);
    struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
    int fds[2] = {-1, -1};
    if (cmsg && cmsg->cmsg_level == SOL_SOCKET && cmsg->cmsg_type == SCM_RIGHTS) {
        size_t count = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        memcpy(fds, CMSG_DATA(cmsg), (count < 2 ? count : 2) * sizeof(int));
        for (size_t i = 2; i < count; i++) {
            int extra;
            memcpy(&extra, CMSG_DATA(cmsg) + i * sizeof(int), sizeof(int));
            close(extra);
        }
    }
    if (got != (ssize_t)sizeof size || fds[0] < 0 || fds[1] < 0) {
        if (fds[0] >= 0)
            close(fds[0]);
        if (fds[1] >= 0)
            close(fds[1]);
        close(conn);
        return;
    }
    detach(); /* the older client's `attach` ends when its socket closes */
    in_fd = fds[0];
    out_fd = fds[1];
    conn_fd = conn;
    nonblocking(in_fd);
    nonblocking(out_fd);
    unsigned short rows = get16(size), cols = get16(size + 2);
    uint64_t from = get64(size + 4);
    start_stream(from == UINT64_MAX ? sent : from);
    if (rows > 0 && cols > 0)
        set_size(rows, cols, 1);
}

/* Writes what the client has not had yet; false when the client is gone. */
static int flush_out(void) {
    while (header_left > 0 || unsent() > 0) {
        const char *at;
        size_t len;
        if (header_left > 0) {
            at = (const char *)header + 8 - header_left;
            len = header_left;
        } else {
            size_t from = (size_t)(sent % KEEP);
            at = ring + from;
            len = (size_t)(unsent() < KEEP - from ? unsent() : KEEP - from);
        }
        ssize_t n = write(out_fd, at, len);
        if (n > 0) {
            if (header_left > 0)
                header_left -= (size_t)n;
            else
                sent += (uint64_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return 1;
        return 0;
    }
    return 1;
}

static int read_master(void) { /* bytes read; 0 at EOF or EIO (every writer gone); -1 would block */
    char buf[65536];
    size_t want = sizeof buf;
    if (out_fd >= 0 && ring_room() < want)
        want = ring_room();
    ssize_t n = read(master, buf, want);
    if (n > 0) {
        ring_put(buf, (size_t)n);
        return (int)n;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return -1;
    return 0;
}

static void write_keys(void) {
    while (keys_len > 0) {
        ssize_t n = write(master, keys, keys_len);
        if (n > 0) {
            memmove(keys, keys + n, keys_len - (size_t)n);
            keys_len -= (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else {
            if (n < 0 && errno != EAGAIN)
                keys_len = 0; /* the terminal is gone */
            return;
        }
    }
}

/* The program's output is over: the client gets the rest, however slow it is, unless it goes. */
static void finish_output(void) {
    while (out_fd >= 0 && pending_out() > 0) {
        struct pollfd p[3] = {{out_fd, POLLOUT, 0}, {in_fd, POLLIN, 0}, {conn_fd, POLLIN, 0}};
        if (poll(p, conn_fd >= 0 ? 3 : 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            detach();
            break;
        }
        if ((p[0].revents & (POLLOUT | POLLERR | POLLHUP)) && !flush_out()) {
            detach();
            break;
        }
        if (p[1].revents & (POLLIN | POLLHUP | POLLERR)) {
            unsigned char buf[4096]; /* keys for a program that is gone */
            ssize_t got = read(in_fd, buf, sizeof buf);
            if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) {
                detach();
                break;
            }
        }
        if (conn_fd >= 0 && (p[2].revents & (POLLIN | POLLHUP | POLLERR))) {
            detach();
            break;
        }
    }
}

static int run(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: agentdock-hold run BASE ROWS COLS PROGRAM [ARG...]\n");
        return 125;
    }
    paths(argv[2]);
    unsigned short rows = number(argv[3]), cols = number(argv[4]);
    umask(077);
    unlink(path_exit);
    unlink(path_tail);

    master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0)
        die("a terminal");
    char slave_name[128];
    if (ptsname_r(master, slave_name, sizeof slave_name) != 0)
        die("ptsname");
    struct winsize ws = {.ws_row = rows, .ws_col = cols};
    ioctl(master, TIOCSWINSZ, &ws);

    int listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un addr = address();
    unlink(path_sock);
    if (listener < 0 || bind(listener, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(listener, 4) < 0)
        die(path_sock);

    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    int exits = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    if (exits < 0)
        die("signalfd");

    /* The terminal stays open here until the program has it: until then a read would find no
       writer (EIO) and take the program for ended. `started` closes when the program starts. */
    int slave = open(slave_name, O_RDWR | O_NOCTTY | O_CLOEXEC);
    int started[2];
    if (slave < 0 || pipe2(started, O_CLOEXEC) < 0)
        die(slave_name);
    child = fork();
    if (child < 0)
        die("fork");
    if (child == 0) {
        sigprocmask(SIG_UNBLOCK, &mask, NULL);
        close(started[0]);
        setsid();
        ioctl(slave, TIOCSCTTY, 0);
        struct termios term;
        if (tcgetattr(slave, &term) == 0) {
            term.c_iflag |= IUTF8;
            tcsetattr(slave, TCSANOW, &term);
        }
        dup2(slave, 0);
        dup2(slave, 1);
        dup2(slave, 2);
        if (slave > 2)
            close(slave);
        execvp(argv[5], argv + 5);
        fprintf(stderr, "agentdock-hold: cannot run %s: %s\r\n", argv[5], strerror(errno));
        _exit(errno == ENOENT ? 127 : 126);
    }
    close(started[1]);
    char sync;
    while (read(started[0], &sync, 1) < 0 && errno == EINTR) {
    }
    close(started[0]);
    close(slave);
    char text[32];
    int len = snprintf(text, sizeof text, "%d\n", (int)child);
    write_file(path_pid, text, (size_t)len);

    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    signal(SIGQUIT, SIG_IGN);
    in_fd = dup(0);
    out_fd = dup(1);
    start_stream(0);
    null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null_fd >= 0) { /* the client's stream is only ever in in_fd and out_fd (and stderr) */
        dup2(null_fd, 0);
        dup2(null_fd, 1);
    }
    nonblocking(in_fd);
    nonblocking(out_fd);
    nonblocking(master);

    int status = 0, ended = 0, master_done = 0;
    long long ended_at = 0, last_output = 0;
    for (;;) {
        struct pollfd p[6];
        int n = 0, i_master = -1, i_in = -1, i_out = -1, i_conn = -1, i_listen, i_exits;
        int want_output = !master_done && (out_fd < 0 || ring_room() > 0);
        if (want_output || keys_len > 0) {
            i_master = n;
            p[n++] = (struct pollfd){master, (short)((want_output ? POLLIN : 0) | (keys_len ? POLLOUT : 0)), 0};
        }
        if (in_fd >= 0 && keys_len < INCAP) {
            i_in = n;
            p[n++] = (struct pollfd){in_fd, POLLIN, 0};
        }
        if (out_fd >= 0) {
            i_out = n;
            p[n++] = (struct pollfd){out_fd, pending_out() ? POLLOUT : 0, 0};
        }
        if (conn_fd >= 0) {
            i_conn = n;
            p[n++] = (struct pollfd){conn_fd, POLLIN, 0};
        }
        i_listen = n;
        p[n++] = (struct pollfd){listener, POLLIN, 0};
        i_exits = n;
        p[n++] = (struct pollfd){exits, POLLIN, 0};

        int timeout = -1;
        if (ended && !master_done) { /* background processes may hold the terminal: not for long */
            long long t = now_ms(), until = last_output + QUIET_MS;
            if (until > ended_at + DRAIN_MS)
                until = ended_at + DRAIN_MS;
            if (t >= until)
                master_done = 1;
            else
                timeout = (int)(until - t);
        }
        if (master_done && ended)
            break;
        if (poll(p, (nfds_t)n, timeout) < 0) {
            if (errno == EINTR)
                continue;
            die("poll");
        }
        if (p[i_exits].revents & POLLIN) {
            struct signalfd_siginfo info;
            while (read(exits, &info, sizeof info) > 0) {
            }
            if (!ended && waitpid(child, &status, WNOHANG) == child) {
                ended = 1;
                ended_at = last_output = now_ms();
            }
        }
        if (i_master >= 0 && (p[i_master].revents & (POLLIN | POLLHUP | POLLERR))) {
            int got, reads = 0; /* a bounded round: the socket and the client get their turn */
            while (!master_done && reads++ < 16 && (out_fd < 0 || ring_room() > 0) && (got = read_master()) != -1) {
                if (got == 0) {
                    master_done = 1; /* every writer of the terminal is gone */
                    break;
                }
                last_output = now_ms();
                if (out_fd >= 0)
                    break; /* hand it on first */
            }
        }
        if (i_master >= 0 && (p[i_master].revents & POLLOUT))
            write_keys();
        if (i_out >= 0 && out_fd >= 0 && (p[i_out].revents & (POLLOUT | POLLERR | POLLHUP)) && !flush_out())
            detach();
        else if (out_fd >= 0 && pending_out() > 0 && !flush_out())
            detach();
        if (i_in >= 0 && in_fd >= 0 && (p[i_in].revents & (POLLIN | POLLHUP | POLLERR))) {
            unsigned char buf[INCAP];
            ssize_t got = read(in_fd, buf, INCAP - keys_len);
            if (got > 0) {
                take_input(buf, (size_t)got);
                write_keys();
            } else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
                detach(); /* the stream ended: the service went away */
            }
        }
        if (i_conn >= 0 && conn_fd >= 0 && (p[i_conn].revents & (POLLIN | POLLHUP | POLLERR)))
            detach(); /* its `attach` process is gone, and with it the exec */
        if (p[i_listen].revents & POLLIN)
            accept_client(listener);
    }

    finish_output();
    if (out_fd < 0 && kept > 0) { /* nobody to tell: the next attach hands it on */
        char *all = malloc(8 + kept);
        if (all) {
            uint64_t from = total - kept;
            put64((unsigned char *)all, from);
            for (uint64_t o = from; o < total; o++)
                all[8 + (o - from)] = ring[o % KEEP];
            write_file(path_tail, all, 8 + kept);
            free(all);
        }
    }
    int code = WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
    len = snprintf(text, sizeof text, "%d\n", code);
    write_file(path_exit, text, (size_t)len);
    unlink(path_sock);
    detach();
    return code;
}

/* It ended while nobody was attached: what it printed last, from `from` on, as a stream. */
static void hand_on_tail(uint64_t from) {
    int fd = open(path_tail, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return;
    static char tail[8 + KEEP];
    size_t len = 0;
    ssize_t n;
    while (len < sizeof tail && (n = read(fd, tail + len, sizeof tail - len)) > 0)
        len += (size_t)n;
    close(fd);
    if (len < 8)
        return;
    uint64_t start = get64((const unsigned char *)tail);
    uint64_t end = start + (len - 8);
    if (from == UINT64_MAX || from < start)
        from = start;
    if (from > end)
        from = end;
    char head[8];
    put64((unsigned char *)head, from);
    write_all(1, head, 8);
    write_all(1, tail + 8 + (from - start), (size_t)(end - from));
}

static int attach(int argc, char **argv) {
    if (argc != 5 && argc != 6) {
        fprintf(stderr, "usage: agentdock-hold attach BASE ROWS COLS [OFFSET]\n");
        return 125;
    }
    paths(argv[2]);
    unsigned short rows = number(argv[3]), cols = number(argv[4]);
    uint64_t from = UINT64_MAX; /* what the holder has not handed on yet */
    if (argc == 6) {
        char *end;
        errno = 0;
        from = strtoull(argv[5], &end, 10);
        if (*argv[5] < '0' || *argv[5] > '9' || *end != '\0' || errno != 0) {
            fprintf(stderr, "agentdock-hold: not an offset: %s\n", argv[5]);
            return 125;
        }
    }
    int conn = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un addr = address();
    if (conn < 0 || connect(conn, (struct sockaddr *)&addr, sizeof addr) < 0) {
        hand_on_tail(from);
        return GONE;
    }
    unsigned char size[12] = {(unsigned char)(rows >> 8), (unsigned char)rows, (unsigned char)(cols >> 8), (unsigned char)cols};
    put64(size + 4, from);
    int fds[2] = {0, 1};
    struct iovec iov = {.iov_base = size, .iov_len = sizeof size};
    union {
        char buf[CMSG_SPACE(sizeof fds)];
        struct cmsghdr align;
    } control;
    memset(&control, 0, sizeof control);
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof control.buf};
    struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof fds);
    memcpy(CMSG_DATA(cmsg), fds, sizeof fds);
    if (sendmsg(conn, &msg, 0) != (ssize_t)sizeof size)
        die("sendmsg");
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) { /* the stream is the holder's now */
        dup2(null, 0);
        dup2(null, 1);
    }
    signal(SIGHUP, SIG_IGN);
    for (;;) { /* until the holder lets go */
        char byte;
        ssize_t n = read(conn, &byte, 1);
        if (n > 0 || (n < 0 && errno == EINTR))
            continue;
        return 0;
    }
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "run") == 0)
        return run(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "attach") == 0)
        return attach(argc, argv);
    fprintf(stderr, "usage: agentdock-hold run BASE ROWS COLS PROGRAM [ARG...]\n"
                    "       agentdock-hold attach BASE ROWS COLS [OFFSET]\n");
    return 125;
}
