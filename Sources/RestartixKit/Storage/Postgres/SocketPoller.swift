import Foundation
import Synchronization

#if canImport(Glibc)
import CSystemShims
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One thread that waits for the sockets of every Postgres connection to become readable or
/// writable, and resumes the task waiting on each.
///
/// libpq runs in non-blocking mode: a task sends its statement itself (a non-blocking write),
/// then suspends here until the answer arrives and parses it itself. No libpq call blocks, so
/// none of them holds a cooperative-pool thread, and there is no hand-off to a per-connection
/// thread and back for every statement — that hand-off costs two context switches per query,
/// which on a small machine is most of the client's cost. This thread does only `epoll_wait`,
/// as pgbench's own client loop does.
final class SocketPoller: Sendable {
    static let shared = SocketPoller()

    private enum Slot {
        /// A task waits for the socket to become readable.
        case waiting(UnsafeContinuation<Void, Never>)
        /// The socket became readable while nobody waited: the next wait returns at once.
        case ready
    }

    private let slots = Mutex<[Int32: Slot]>([:])

    #if os(Linux)
    private let epollFD: Int32

    private init() {
        epollFD = epoll_create1(Int32(EPOLL_CLOEXEC))
        precondition(epollFD >= 0, "epoll_create1 failed (errno \(errno))")
        let thread = Thread { [self] in loop() }
        thread.name = "restartix.postgres.poller"
        thread.start()
    }

    private func loop() {
        var events = [epoll_event](repeating: epoll_event(), count: 128)
        while true {
            let count = epoll_wait(epollFD, &events, Int32(events.count), -1)
            if count < 0 { continue }  // EINTR
            var wake: [UnsafeContinuation<Void, Never>] = []
            slots.withLock { slots in
                for event in events[0..<Int(count)] {
                    let fd = event.data.fd
                    if case .waiting(let continuation) = slots[fd] {
                        wake.append(continuation)
                        slots[fd] = nil
                    } else {
                        slots[fd] = .ready
                    }
                }
            }
            for continuation in wake { continuation.resume() }
        }
    }

    /// Starts watching a socket (edge-triggered, so a wait costs no system call to re-arm).
    func register(fd: Int32) -> Bool {
        var event = epoll_event()
        event.events = EPOLLIN.rawValue | EPOLLET.rawValue | EPOLLRDHUP.rawValue | EPOLLERR.rawValue | EPOLLHUP.rawValue
        event.data.fd = fd
        return epoll_ctl(epollFD, EPOLL_CTL_ADD, fd, &event) == 0
    }

    /// Stops watching a socket that is about to be closed, waking any waiter.
    func forget(fd: Int32) {
        var unused = epoll_event()
        _ = epoll_ctl(epollFD, EPOLL_CTL_DEL, fd, &unused)
        if case .waiting(let continuation) = slots.withLock({ $0.removeValue(forKey: fd) }) {
            continuation.resume()
        }
    }
    #else
    private init() {}

    func register(fd: Int32) -> Bool { true }

    func forget(fd: Int32) {}
    #endif

    /// Suspends until `fd` has become readable since the last wait (or has an error or
    /// hang-up, which the caller's next libpq call reports). May return spuriously; callers
    /// re-check with `PQconsumeInput` / `PQisBusy`.
    func waitReadable(fd: Int32) async {
        #if os(Linux)
        await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
            let readyNow: Bool = slots.withLock { slots in
                if case .ready = slots[fd] {
                    slots[fd] = nil
                    return true
                }
                slots[fd] = .waiting(continuation)
                return false
            }
            if readyNow { continuation.resume() }
        }
        #else
        await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
            Thread.detachNewThread {
                var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                _ = poll(&pfd, 1, -1)
                continuation.resume()
            }
        }
        #endif
    }

    /// Waits for room in a full send buffer. Rare (binds larger than the kernel's socket
    /// buffer), so a short sleep between `PQflush` attempts serves instead of a second
    /// registration per socket.
    func waitWritable(fd: Int32) async {
        var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        if poll(&pfd, 1, 0) > 0 { return }
        try? await Task.sleep(for: .microseconds(200))
    }
}
