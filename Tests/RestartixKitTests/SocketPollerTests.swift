#if os(Linux)
import Foundation
import Glibc
@testable import RestartixKit
import Testing

/// The Postgres connections' readiness thread on a socket pair, no server needed: a wait with a
/// deadline ends in time whether the thread is sweeping or has parked, and data wakes a waiter.
@Suite("Socket poller", .timeLimit(.minutes(1)))
struct SocketPollerTests {
    /// A connected Unix socket pair, both ends non-blocking; the first registered with the poller.
    private func pair() throws -> (watched: Int32, peer: Int32) {
        var fds: [Int32] = [0, 0]
        try #require(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0)
        for fd in fds { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
        try #require(SocketPoller.shared.register(fd: fds[0]))
        return (fds[0], fds[1])
    }

    private func close(_ sockets: (watched: Int32, peer: Int32)) {
        SocketPoller.shared.forget(fd: sockets.watched)
        _ = Glibc.close(sockets.watched)
        _ = Glibc.close(sockets.peer)
    }

    @Test("a wait with a deadline times out in time, also after the thread has parked; data wakes a waiter")
    func deadlines() async throws {
        let sockets = try pair()
        defer { close(sockets) }
        // Generous: the full suite can starve this task's resumption for a second; the fault
        // this guards against (a parked thread nobody wakes) makes the wait last for ever.
        let bound: Duration = .seconds(5)

        // While the thread sweeps (or lingers after other tests' waits).
        var start = ContinuousClock.now
        #expect(await SocketPoller.shared.waitReadable(fd: sockets.watched, until: start + .milliseconds(100)) == false)
        #expect(ContinuousClock.now - start < bound)
        #expect(ContinuousClock.now - start >= .milliseconds(100), "not before its deadline")

        // After the linger: the thread sleeps with no timeout, so the new timed wait must wake it.
        try await Task.sleep(for: SocketPoller.lingerInterval + .milliseconds(300))
        start = ContinuousClock.now
        #expect(await SocketPoller.shared.waitReadable(fd: sockets.watched, until: start + .milliseconds(100)) == false)
        #expect(ContinuousClock.now - start < bound, "a parked thread was woken for the deadline")
        #expect(ContinuousClock.now - start >= .milliseconds(100), "not before its deadline")

        // Data arriving while a task waits resumes it with `true`, long before its deadline.
        start = ContinuousClock.now
        async let readable = SocketPoller.shared.waitReadable(fd: sockets.watched, until: start + .seconds(10))
        try await Task.sleep(for: .milliseconds(50))
        var byte: UInt8 = 1
        #expect(write(sockets.peer, &byte, 1) == 1)
        #expect(await readable == true)
        #expect(ContinuousClock.now - start < .seconds(5))
    }
}
#endif
