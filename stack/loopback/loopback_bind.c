/*
 * loopback_bind.so: a bind() that never listens on all interfaces.
 *
 * Why: PyFlink's process mode runs Python UDFs in a worker process that talks to its TaskManager
 * over Apache Beam's gRPC endpoints (control, data, state, logging, provision). Beam opens those
 * servers with a port only, so they listen on every interface of the machine, unauthenticated,
 * and neither Flink nor Beam has a setting for their address. stack/up.sh starts the
 * TaskManager JVMs with this library in LD_PRELOAD: a bind() to the wildcard address (0.0.0.0,
 * or :: on a dual-stack socket) becomes a bind() to loopback (127.0.0.1, or ::ffff:127.0.0.1,
 * which is how Java itself binds "localhost" on its IPv6 sockets). Every other bind() is passed
 * through unchanged. The Python worker connects to "localhost", so nothing else changes.
 *
 * Build: gcc -shared -fPIC -O2 -o loopback_bind.so loopback_bind.c -ldl  (stack/up.sh does it)
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

typedef int (*bind_fn)(int, const struct sockaddr *, socklen_t);

int bind(int fd, const struct sockaddr *addr, socklen_t len) {
    static bind_fn real_bind;
    if (!real_bind) real_bind = (bind_fn)dlsym(RTLD_NEXT, "bind");
    if (addr && addr->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        struct sockaddr_in in4;
        memcpy(&in4, addr, sizeof in4);
        if (in4.sin_addr.s_addr == htonl(INADDR_ANY)) {
            in4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            return real_bind(fd, (const struct sockaddr *)&in4, sizeof in4);
        }
    } else if (addr && addr->sa_family == AF_INET6
               && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 in6;
        memcpy(&in6, addr, sizeof in6);
        if (IN6_IS_ADDR_UNSPECIFIED(&in6.sin6_addr)) {
            int v6only = 0;
            socklen_t optlen = sizeof v6only;
            getsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &optlen);
            if (v6only) {
                in6.sin6_addr = in6addr_loopback;                       /* ::1 */
            } else {
                memset(&in6.sin6_addr, 0, sizeof in6.sin6_addr);        /* ::ffff:127.0.0.1 */
                in6.sin6_addr.s6_addr[10] = 0xff;
                in6.sin6_addr.s6_addr[11] = 0xff;
                in6.sin6_addr.s6_addr[12] = 127;
                in6.sin6_addr.s6_addr[15] = 1;
            }
            return real_bind(fd, (const struct sockaddr *)&in6, sizeof in6);
        }
    }
    return real_bind(fd, addr, len);
}
