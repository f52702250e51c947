import Foundation
import Logging
@testable import RestartixKit
import Synchronization
import RestartixTestSupport
import Testing

/// The pool's slot accounting when a connect is slower than the caller who asked for it: the
/// caller gives up on time, and the connection, once open, serves the next caller instead of
/// being thrown away. A fake driver stands in for the server, so a connect can be made as slow
/// (or as broken) as the case needs, which a real server cannot on demand.
@Suite("Connection pool: connects that outlive their caller")
struct ConnectionPoolTests {
    final class FakeConnection: ConnectionDriver {
        var dialect: SQLDialect { .sqlite }
        let closed = Atomic<Bool>(false)
        func execute(_ sql: String, _ binds: [SQLValue]) async throws -> QueryResult { throw Unused() }
        func pipeline(_ statements: [(sql: String, binds: [SQLValue])]) async throws -> [QueryResult] { throw Unused() }
        func executeScript(_ sql: String) async throws { throw Unused() }
        func transactionState() -> TransactionState { .idle }
        func isHealthy() async -> Bool { !closed.load(ordering: .relaxed) }
        var isBroken: Bool { closed.load(ordering: .relaxed) }
        func close() async { closed.store(true, ordering: .relaxed) }
        struct Unused: Error {}
    }

    /// A factory whose connects wait for `gate` (so a test decides when a connect finishes,
    /// independent of how busy the machine is) and whose first `failures` connects fail.
    final class Factory: Sendable {
        let gate = Gate()
        let failures: Atomic<Int>
        let opened = Atomic<Int>(0)
        let made = Mutex<[FakeConnection]>([])
        let deadlines = Mutex<[ContinuousClock.Instant]>([])

        init(failures: Int = 0, open: Bool = false) async {
            self.failures = Atomic(failures)
            if open { await gate.open() }
        }

        /// Opens the gate after `delay` whatever happens: if the pool waited for the connect,
        /// the caller returns only then, and the test sees a connect that had finished.
        func openEventually(after delay: Duration = .seconds(10)) {
            Task { [gate] in
                try? await Task.sleep(for: delay)
                await gate.open()
            }
        }

        func open(_ deadline: ContinuousClock.Instant) async throws -> any ConnectionDriver {
            deadlines.withLock { $0.append(deadline) }
            await gate.wait()
            if failures.subtract(1, ordering: .relaxed).newValue >= 0 {
                throw DatabaseError(code: .connectionFailed, detail: "refused by the test")
            }
            opened.add(1, ordering: .relaxed)
            let connection = FakeConnection()
            made.withLock { $0.append(connection) }
            return connection
        }

        var openedCount: Int { opened.load(ordering: .relaxed) }
    }

    func pool(_ factory: Factory, acquireTimeout: Duration = .seconds(20)) -> ConnectionPool {
        ConnectionPool(name: "test", maximumConnections: 1, acquireTimeout: acquireTimeout, logger: Logger(label: "test")) {
            try await factory.open($0)
        }
    }

    /// The next acquire gets a connection, and it is the one connect the factory made; then
    /// the pool shuts down.
    func expectOneConnectionServes(_ pool: ConnectionPool, _ factory: Factory) async throws {
        let connection = try await pool.acquire()
        let opened = factory.openedCount
        #expect(opened == 1, "the late connection was closed and another opened")
        #expect(await connection.isHealthy())
        await pool.release(connection)
        await pool.shutdown()
    }

    @Test("a caller whose deadline passes during the connect gets its timeout then; the connection serves the next caller")
    func lateConnectionIsKept() async throws {
        let factory = await Factory()
        let pool = pool(factory)
        factory.openEventually()
        let started = ContinuousClock.now
        let error = await #expect(throws: DatabaseError.self) {
            try await CallDeadline.$scoped.withValue(.now + .milliseconds(100)) { try await pool.acquire() }
        }
        #expect(error?.code == .timedOut)
        let openedWhenTheCallerReturned = factory.openedCount
        #expect(openedWhenTheCallerReturned == 0, "the caller waited for the connect instead of its deadline")
        // The connect runs under the pool's timeout (20 s), not the caller's 100 ms.
        let deadline = try #require(factory.deadlines.withLock { $0.first })
        #expect(deadline - started >= .seconds(19))

        await factory.gate.open()
        try await expectOneConnectionServes(pool, factory)
    }

    @Test("a connect that fails after its caller gave up frees its slot")
    func lateFailureFreesTheSlot() async throws {
        let factory = await Factory(failures: 1)
        let pool = pool(factory)
        await #expect(throws: DatabaseError.self) {
            try await CallDeadline.$scoped.withValue(.now + .milliseconds(50)) { try await pool.acquire() }
        }
        await factory.gate.open()
        // With the one slot leaked, this would wait out the pool's 20 s and fail.
        try await expectOneConnectionServes(pool, factory)
    }

    @Test("a connect refused while the caller waits reaches the caller as the refusal, not as a timeout")
    func refusalReachesTheCaller() async throws {
        let factory = await Factory(failures: 1, open: true)
        let pool = pool(factory)
        let error = await #expect(throws: DatabaseError.self) { try await pool.acquire() }
        #expect(error?.code == .connectionFailed)
        await pool.shutdown()
    }

    @Test("a caller cancelled during the connect returns then; the connection stays in the pool")
    func cancelledCaller() async throws {
        let factory = await Factory()
        let pool = pool(factory)
        factory.openEventually()
        // Within a deadline scope, as a request is: the connect outlives only such a caller
        // (one without a scope waits as long as the connect may take anyway).
        let task = Task { try await CallDeadline.$scoped.withValue(.now + .seconds(15)) { try await pool.acquire() } }
        while factory.deadlines.withLock({ $0.isEmpty }) { try await Task.sleep(for: .milliseconds(5)) }
        task.cancel()
        await #expect(throws: CancellationError.self) { _ = try await task.value }
        let openedWhenTheCallerReturned = factory.openedCount
        #expect(openedWhenTheCallerReturned == 0)
        await factory.gate.open()
        try await expectOneConnectionServes(pool, factory)
    }

    @Test("a connection that opens after shutdown is closed, not kept")
    func openAfterShutdown() async throws {
        let factory = await Factory()
        let pool = pool(factory)
        await #expect(throws: DatabaseError.self) {
            try await CallDeadline.$scoped.withValue(.now + .milliseconds(50)) { try await pool.acquire() }
        }
        await pool.shutdown()
        await factory.gate.open()
        var made: FakeConnection?
        for _ in 0..<1000 where made?.isBroken != true {
            made = factory.made.withLock { $0.first }
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(made?.isBroken == true)
        await #expect(throws: DatabaseError.self) { try await pool.acquire() }
    }
}
