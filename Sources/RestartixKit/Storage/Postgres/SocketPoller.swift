import Foundation
import Synchronization

#if canImport(Glibc)
import CSystemShims
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One thread that waits for the sockets of every Postgres connection to become readable, and
/// resumes the task waiting on each; it is also a `TaskExecutor`.
///
/// libpq runs in non-blocking mode: a task sends its statement itself (a non-blocking write),
/// then suspends here until the answer arrives and parses it itself. No libpq call blocks, so
/// none of them holds a cooperative-pool thread, and there is no hand-off to a per-connection
/// thread and back for every statement. The thread does only `epoll_wait` on sockets registered
/// once, edge-triggered, as pgbench's own client loop waits — and runs the jobs of tasks that
/// prefer it as their executor (``Database/taskExecutor``), so such a task's statements, waits
/// and parsing all stay on
/// this one thread with no wake-up of another thread in between.
final class SocketPoller: TaskExecutor, Sendable {
    static let shared = SocketPoller()

    /// Waits for a server's answer, process-wide: round trips, for benchmarks.
    package static let waits = Atomic<Int>(0)

    private struct JobQueue {
        var jobs: [UnownedJob] = []
        /// The loop is (about to be) blocked in `epoll_wait`; an enqueue must wake it.
        var sleeping = false
    }

    /// Per socket: the task waiting for it to become readable, or a note that data arrived
    /// while nobody waited (an edge-triggered event is reported once, so none may be dropped).
    private enum Readiness {
        /// A task waits; it is resumed with `false` if `deadline` passes first.
        case waiting(UnsafeContinuation<Bool, Never>, deadline: ContinuousClock.Instant?)
        case arrived
    }

    private struct Sockets {
        var readiness: [Int32: Readiness] = [:]
        /// Waiters with a deadline: while there are any, the loop wakes every ``sweepInterval``.
        var timedWaiters = 0
        /// When the last waiter with a deadline began waiting. The loop keeps sweeping for
        /// ``lingerInterval`` after it, so that under steady load (where the timed waiters
        /// often drop to none between two statements) a new one finds the loop awake and costs
        /// no wake-up write and no extra switch to this thread; an idle process parks.
        var lastTimedWait = ContinuousClock.now
        /// The loop is (about to be) blocked in `epoll_wait` with no timeout; a new timed waiter
        /// must wake it.
        var parked = false

        mutating func take(_ fd: Int32) -> Readiness? {
            let entry = readiness.removeValue(forKey: fd)
            if case .waiting(_, .some) = entry { timedWaiters -= 1 }
            return entry
        }
    }

    /// How often waits with a deadline are checked: the most a wait can outlive its deadline.
    static let sweepInterval: Duration = .milliseconds(20)
    /// How long the loop keeps sweeping after the last wait with a deadline began, before it
    /// parks with no timeout (at most 1 / ``sweepInterval`` idle wake-ups a second meanwhile).
    static let lingerInterval: Duration = .seconds(1)

    private let sockets = Mutex(Sockets())
    private let queue = Mutex(JobQueue())

    #if os(Linux)
    private let epollFD: Int32
    private let wakeFD: Int32

    private init() {
        epollFD = epoll_create1(Int32(EPOLL_CLOEXEC))
        precondition(epollFD >= 0, "epoll_create1 failed (errno \(errno))")
        wakeFD = eventfd(0, Int32(EFD_CLOEXEC | EFD_NONBLOCK))
        precondition(wakeFD >= 0, "eventfd failed (errno \(errno))")
        var event = epoll_event()
        event.events = EPOLLIN.rawValue
        event.data.fd = wakeFD
        precondition(epoll_ctl(epollFD, EPOLL_CTL_ADD, wakeFD, &event) == 0, "epoll_ctl failed (errno \(errno))")
        let thread = Thread { [self] in loop() }
        thread.name = "restartix.postgres.io"
        thread.start()
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let wake = queue.withLock { queue -> Bool in
            queue.jobs.append(job)
            guard queue.sleeping else { return false }
            queue.sleeping = false
            return true
        }
        if wake {
            var one: UInt64 = 1
            _ = write(wakeFD, &one, 8)
        }
    }

    private func loop() {
        var events = [epoll_event](repeating: epoll_event(), count: 128)
        var wake: [(UnsafeContinuation<Bool, Never>, Bool)] = []
        var nextSweep = ContinuousClock.now
        while true {
            let jobs = queue.withLock { queue -> [UnownedJob] in
                let jobs = queue.jobs
                queue.jobs.removeAll(keepingCapacity: true)
                if jobs.isEmpty { queue.sleeping = true }
                return jobs
            }
            for job in jobs { job.runSynchronously(on: asUnownedTaskExecutor()) }
            // Block until an event when nobody waits with a deadline; otherwise wake in time to
            // fail the waits whose deadline passed.
            let timeout: Int32 = jobs.isEmpty
                ? sockets.withLock { sockets in
                    if sockets.timedWaiters > 0 || ContinuousClock.now - sockets.lastTimedWait < Self.lingerInterval {
                        return Int32(Self.sweepInterval.milliseconds)
                    }
                    sockets.parked = true
                    return -1
                }
                : 0
            let count = epoll_wait(epollFD, &events, Int32(events.count), timeout)
            if jobs.isEmpty { queue.withLock { $0.sleeping = false } }
            if timeout < 0 { sockets.withLock { $0.parked = false } }
            wake.removeAll(keepingCapacity: true)
            var drain = false
            let now = ContinuousClock.now
            let sweep = now >= nextSweep
            if sweep { nextSweep = now + Self.sweepInterval }
            sockets.withLock { sockets in
                for index in 0..<Int(max(count, 0)) {
                    let fd = events[index].data.fd
                    if fd == wakeFD {
                        drain = true
                    } else if case .waiting(let continuation, _) = sockets.take(fd) {
                        wake.append((continuation, true))
                    } else {
                        sockets.readiness[fd] = .arrived
                    }
                }
                guard sweep, sockets.timedWaiters > 0 else { return }
                for (fd, entry) in sockets.readiness {
                    if case .waiting(let continuation, let deadline?) = entry, deadline <= now {
                        _ = sockets.take(fd)
                        wake.append((continuation, false))
                    }
                }
            }
            if drain {
                var drained: UInt64 = 0
                _ = read(wakeFD, &drained, 8)
            }
            // A task that prefers this executor continues right here, on the next turn.
            for (continuation, readable) in wake { continuation.resume(returning: readable) }
        }
    }

    /// Adds a socket to the epoll set for good, edge-triggered: the kernel reports each arrival
    /// of data once, and a wait costs no `epoll_ctl` call.
    func register(fd: Int32) -> Bool {
        var event = epoll_event()
        event.events = EPOLLIN.rawValue | EPOLLRDHUP.rawValue | EPOLLET.rawValue
        event.data.fd = fd
        // A note left by an earlier socket with the same number would wake a waiter falsely.
        sockets.withLock { _ = $0.take(fd) }
        return epoll_ctl(epollFD, EPOLL_CTL_ADD, fd, &event) == 0
    }

    /// Stops watching a socket that is about to be closed, waking any waiter.
    func forget(fd: Int32) {
        var unused = epoll_event()
        _ = epoll_ctl(epollFD, EPOLL_CTL_DEL, fd, &unused)
        if case .waiting(let continuation, _) = sockets.withLock({ $0.take(fd) }) {
            continuation.resume(returning: true)
        }
    }
    #else
    private init() {}

    /// Portable fallback: jobs run on the global concurrent executor.
    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        Task.detached { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }

    func register(fd: Int32) -> Bool { true }

    func forget(fd: Int32) {}
    #endif

    /// Suspends until data arrives on `fd` (or an error or hang-up, which the caller's next
    /// libpq call reports) and returns `true`; returns at once if data arrived since the
    /// previous wait. Returns `false` once `deadline` has passed with nothing arrived (checked
    /// every ``sweepInterval``).
    ///
    /// Edge-triggered: bytes that arrived before the previous wake-up and are still unread
    /// raise no new event. `PQconsumeInput` does not promise to read the socket empty (a TLS
    /// read takes one record), so a caller that has consumed input since sending and still
    /// needs more checks ``hasUnreadData(fd:)`` before waiting here.
    func waitReadable(fd: Int32, until deadline: ContinuousClock.Instant?) async -> Bool {
        Self.waits.add(1, ordering: .relaxed)
        #if os(Linux)
        if sockets.withLock({ sockets in
            guard case .arrived = sockets.readiness[fd] else { return false }
            sockets.readiness[fd] = nil
            return true
        }) {
            return true
        }
        return await withUnsafeContinuation { (continuation: UnsafeContinuation<Bool, Never>) in
            enum Registration { case arrived, waiting, wakeLoop }
            let registration = sockets.withLock { sockets -> Registration in
                if case .arrived = sockets.readiness[fd] {
                    sockets.readiness[fd] = nil
                    return .arrived
                }
                sockets.readiness[fd] = .waiting(continuation, deadline: deadline)
                guard deadline != nil else { return .waiting }
                sockets.timedWaiters += 1
                sockets.lastTimedWait = .now
                guard sockets.parked else { return .waiting }
                sockets.parked = false
                return .wakeLoop
            }
            switch registration {
            case .arrived: continuation.resume(returning: true)
            case .waiting: break
            case .wakeLoop:
                // The loop sleeps with no timeout; wake it so that it starts sweeping.
                var one: UInt64 = 1
                _ = write(wakeFD, &one, 8)
            }
        }
        #else
        let milliseconds = deadline.map { Int32(clamping: max(0, ($0 - .now).milliseconds)) } ?? -1
        return await withUnsafeContinuation { (continuation: UnsafeContinuation<Bool, Never>) in
            Thread.detachNewThread {
                var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                continuation.resume(returning: poll(&pfd, 1, milliseconds) != 0)
            }
        }
        #endif
    }

    /// Whether the socket holds unread data (or an error or hang-up) right now; never blocks.
    func hasUnreadData(fd: Int32) -> Bool {
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&pfd, 1, 0) != 0
    }

    /// Waits for room in a full send buffer. Rare (binds larger than the kernel's socket
    /// buffer), so a short sleep between `PQflush` attempts serves instead of a second
    /// registration per socket.
    func waitWritable(fd: Int32) async {
        var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        if poll(&pfd, 1, 0) > 0 { return }
        // Not Task.sleep: it returns at once in a cancelled task, which would spin here.
        await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
            DispatchQueue.global().asyncAfter(deadline: .now() + .microseconds(200)) { continuation.resume() }
        }
    }
}
