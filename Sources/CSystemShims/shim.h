// OS interfaces that Swift's Glibc module does not export.
#ifdef __linux__
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#endif
