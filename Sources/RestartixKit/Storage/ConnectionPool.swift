import Foundation
import Logging
import Metrics
import Synchronization

/// A bounded pool of connections: at most `maximumConnections` open, an acquire that waits at
/// most `acquireTimeout` (then throws `.poolTimeout`, never hangs) or until the deadline of a
/// ``Database/withDeadline(_:_:)`` scope (then `.timedOut`), a health check on every checkout,
/// and broken connections closed and replaced. A connection being opened is not abandoned with
/// the caller who asked for it: it finishes under the pool's own timeout and serves the next.
final class ConnectionPool: Sendable {
    /// Opens a connection, giving up at the deadline.
    typealias Factory = @Sendable (_ deadline: ContinuousClock.Instant) async throws -> any ConnectionDriver

    fileprivate struct Waiter {
        let id: UInt64
        /// When this acquire gives up; a connection opened for it must be ready by then.
        let deadline: ContinuousClock.Instant
        /// What it gets at the deadline.
        let timeout: DatabaseError
        let continuation: CheckedContinuation<any ConnectionDriver, any Error>
    }

    fileprivate struct State {
        var idle: [any ConnectionDriver] = []
        var open = 0  // idle + leased + being opened
        var waiters: [Waiter] = []
        var nextWaiterID: UInt64 = 0
        var closed = false
    }

    private enum AcquireStep {
        case use(any ConnectionDriver)
        case open
        case wait
        case closed
    }

    let name: String
    let maximumConnections: Int
    let acquireTimeout: Duration
    private let factory: Factory
    private let state = Mutex(State())
    private let logger: Logger
    private let gauges: Gauges?

    /// The pool's gauges (swift-metrics): connections in use and idle, and acquires waiting,
    /// labelled with the role the configuration names (``DatabaseConfiguration/metricsRole``)
    /// and the pool. Recorded under the pool's lock after every change, so a scrape sees
    /// numbers that held together at one moment.
    struct Gauges: Sendable {
        let inUse: Gauge
        let idle: Gauge
        let waiting: Gauge

        init(role: String, pool: String) {
            let labels = [("role", role), ("pool", pool)]
            inUse = Gauge(label: "restartix_db_pool_connections", dimensions: labels + [("state", "in_use")])
            idle = Gauge(label: "restartix_db_pool_connections", dimensions: labels + [("state", "idle")])
            waiting = Gauge(label: "restartix_db_pool_waiting", dimensions: labels)
        }
    }

    init(name: String, maximumConnections: Int, acquireTimeout: Duration, metricsRole: String? = nil, logger: Logger, factory: @escaping Factory) {
        precondition(maximumConnections > 0, "a pool needs at least one connection")
        self.name = name
        self.maximumConnections = maximumConnections
        self.acquireTimeout = acquireTimeout
        self.factory = factory
        self.logger = logger
        self.gauges = metricsRole.map { Gauges(role: $0, pool: name) }
        gauges?.record(State())
    }

    /// `state.withLock`, then the gauges from the state it left.
    private func withState<T, E: Error>(_ body: (inout State) throws(E) -> T) throws(E) -> T {
        try state.withLock { (state: inout State) throws(E) -> T in
            let result = try body(&state)
            gauges?.record(state)
            return result
        }
    }

    /// Leases a healthy connection, runs `body`, and returns the connection (or discards it if
    /// it broke).
    func withConnection<T>(_ body: (any ConnectionDriver) async throws -> T) async throws -> T {
        let connection = try await acquire()
        do {
            let result = try await body(connection)
            await release(connection)
            return result
        } catch {
            await release(connection)
            throw error
        }
    }

    func acquire() async throws -> any ConnectionDriver {
        let poolDeadline = ContinuousClock.now + acquireTimeout
        // The scope's deadline, when it ends before the pool's own.
        let scopeDeadline = CallDeadline.scoped.flatMap { $0 < poolDeadline ? $0 : nil }
        let scoped = scopeDeadline != nil
        let deadline = scopeDeadline ?? poolDeadline
        func timedOut() -> DatabaseError {
            scoped ? CallDeadline.expiredBeforeSending("a pooled connection was free") : timeoutError()
        }
        if scoped, deadline <= .now { throw timedOut() }
        while true {
            let step: AcquireStep = withState { state in
                if state.closed { return .closed }
                if let connection = state.idle.popLast() { return .use(connection) }
                if state.open < maximumConnections {
                    state.open += 1
                    return .open
                }
                return .wait
            }
            switch step {
            case .closed:
                throw DatabaseError(code: .poolClosed, detail: "the \(name) pool is shut down")
            case .use(let connection):
                if await connection.isHealthy() { return connection }
                logger.debug("Discarding a broken pooled connection", metadata: ["db.pool": "\(name)"])
                await discard(connection)
            case .open where !scoped:
                // The caller waits as long as the connect may take: it runs inline, with no
                // hop through another task (which costs a trip through the cooperative pool's
                // queue, seconds when a loaded machine has it full).
                do {
                    return try await factory(deadline)
                } catch {
                    withState { $0.open -= 1 }
                    wakeOneWaiterToOpen()
                    throw error
                }
            case .open:
                let handoff = Handoff()
                return try await withTaskCancellationHandler {
                    try await withCheckedThrowingContinuation { continuation in
                        handoff.wait(continuation)
                        open(for: handoff, until: deadline, timeout: timedOut())
                    }
                } onCancel: {
                    handoff.deliver(.failure(CancellationError()))
                }
            case .wait:
                let connection: any ConnectionDriver
                do {
                    connection = try await waitForRelease(until: deadline, timeout: timedOut())
                } catch is SlotFreed {
                    // A slot freed (a connection discarded) while this caller was on its way to
                    // wait, when nobody was there to be woken: take it.
                    continue
                }
                if await connection.isHealthy() { return connection }
                await discard(connection)
            }
            if ContinuousClock.now >= deadline { throw timedOut() }
        }
    }

    private func timeoutError() -> DatabaseError {
        DatabaseError(
            code: .poolTimeout,
            detail: "no connection of the \(name) pool (size \(maximumConnections)) became free within \(acquireTimeout)"
        )
    }

    private func waitForRelease(until deadline: ContinuousClock.Instant, timeout: DatabaseError) async throws -> any ConnectionDriver {
        let id = withState { state -> UInt64 in
            state.nextWaiterID += 1
            return state.nextWaiterID
        }
        // The timer starts only once the waiter is registered: a timer started earlier could
        // fire before registration, find nobody, and leave the waiter without a deadline.
        // A dispatch timer, not a sleeping task: it fires on time even when the cooperative
        // pool is saturated.
        var timer: DispatchWorkItem?
        defer { timer?.cancel() }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<any ConnectionDriver, any Error>) in
                enum Registration { case resumed, rejected(DatabaseError), cancelled, slotFreed, waiting }
                let registration: Registration = withState { state in
                    if state.closed { return .rejected(DatabaseError(code: .poolClosed, detail: "the \(name) pool is shut down")) }
                    // Cancelled before registering: the cancellation handler found nobody to fail.
                    if Task.isCancelled { return .cancelled }
                    // A connection may have come back between our check and now.
                    if let connection = state.idle.popLast() {
                        continuation.resume(returning: connection)
                        return .resumed
                    }
                    // Or a slot may have been freed, with no waiter yet to take it.
                    if state.open < maximumConnections { return .slotFreed }
                    state.waiters.append(Waiter(id: id, deadline: deadline, timeout: timeout, continuation: continuation))
                    return .waiting
                }
                switch registration {
                case .resumed: break
                case .rejected(let error): continuation.resume(throwing: error)
                case .cancelled: continuation.resume(throwing: CancellationError())
                case .slotFreed: continuation.resume(throwing: SlotFreed())
                case .waiting:
                    let fire = DispatchWorkItem { [weak self] in self?.failWaiter(id: id, with: timeout) }
                    timer = fire
                    DispatchQueue.global().asyncAfter(deadline: .at(deadline), execute: fire)
                }
            }
        } onCancel: {
            failWaiter(id: id, with: CancellationError())
        }
    }

    private func failWaiter(id: UInt64, with error: any Error) {
        let waiter: Waiter? = withState { state in
            guard let i = state.waiters.firstIndex(where: { $0.id == id }) else { return nil }
            return state.waiters.remove(at: i)
        }
        waiter?.continuation.resume(throwing: error)
    }

    /// Returns a connection: to the first waiter, to the idle stack, or closed if broken or if
    /// it was left inside a transaction.
    func release(_ connection: any ConnectionDriver) async {
        if connection.isBroken {
            await discard(connection)
            return
        }
        if connection.transactionState() != .idle {
            // A handle ended with a transaction still open; never hand that to someone else.
            logger.warning("Closing a pooled connection returned inside a transaction", metadata: ["db.pool": "\(name)"])
            await discard(connection)
            return
        }
        let (waiter, closeIt): (Waiter?, Bool) = withState { state in
            if state.closed {
                state.open -= 1
                return (nil, true)
            }
            if !state.waiters.isEmpty { return (state.waiters.removeFirst(), false) }
            state.idle.append(connection)
            return (nil, false)
        }
        if closeIt { await connection.close() }
        waiter?.continuation.resume(returning: connection)
    }

    private func discard(_ connection: any ConnectionDriver) async {
        withState { $0.open -= 1 }
        await connection.close()
        wakeOneWaiterToOpen()
    }

    /// A slot freed up: open a new connection in it for the first waiter.
    private func wakeOneWaiterToOpen() {
        let waiter: Waiter? = withState { state in
            guard !state.waiters.isEmpty, state.open < maximumConnections else { return nil }
            state.open += 1
            return state.waiters.removeFirst()
        }
        guard let waiter else { return }
        let handoff = Handoff()
        handoff.wait(waiter.continuation)
        open(for: handoff, until: waiter.deadline, timeout: waiter.timeout)
    }

    /// Opens a connection in a slot already counted in `open`, for the caller waiting on
    /// `handoff` until `callerDeadline` (then it gets `timeout`).
    ///
    /// The connect runs under the pool's own deadline (``acquireTimeout`` from now), never
    /// shorter than the caller's: a caller that gives up first (a ``Database/withDeadline(_:_:)``
    /// scope shorter than the pool's timeout) gets its timeout, and the
    /// connection, once open, goes to the next waiter or the idle stack instead of being
    /// closed. Bound to callers' deadlines, a server that takes longer to accept a connection
    /// than those deadlines allow (a Postgres restart on a loaded machine, behind PgBouncer)
    /// would never be reconnected: every attempt abandoned and closed, the pool empty while the
    /// server is up. The fault drill found that on a two-core CI runner.
    private func open(for handoff: Handoff, until callerDeadline: ContinuousClock.Instant, timeout: DatabaseError) {
        let openDeadline = max(callerDeadline, .now + acquireTimeout)
        // Detached: the connect must not inherit the caller's task-local deadline scope.
        Task.detached { [self] in
            do {
                let connection = try await factory(openDeadline)
                if !handoff.deliver(.success(connection)) { await release(connection) }
            } catch {
                withState { $0.open -= 1 }
                _ = handoff.deliver(.failure(error))
                // The slot is free again: the next waiter may try.
                wakeOneWaiterToOpen()
            }
        }
        if callerDeadline < openDeadline {
            // A dispatch timer, as for waiters: on time even when the cooperative pool is busy.
            DispatchQueue.global().asyncAfter(deadline: .at(callerDeadline)) { _ = handoff.deliver(.failure(timeout)) }
        }
    }

    /// Closes idle connections, fails waiters, and makes later acquires fail.
    func shutdown() async {
        let (idle, waiters) = withState { state in
            state.closed = true
            let idle = state.idle
            let waiters = state.waiters
            state.open -= idle.count
            state.idle.removeAll()
            state.waiters.removeAll()
            return (idle, waiters)
        }
        for waiter in waiters {
            waiter.continuation.resume(throwing: DatabaseError(code: .poolClosed, detail: "the \(name) pool is shut down"))
        }
        for connection in idle { await connection.close() }
    }
}

extension ConnectionPool.Gauges {
    fileprivate func record(_ state: ConnectionPool.State) {
        idle.record(state.idle.count)
        inUse.record(max(0, state.open - state.idle.count))
        waiting.record(state.waiters.count)
    }
}

/// A waiter's registration found a free slot: the caller goes back and opens a connection.
private struct SlotFreed: Error {}

/// Where a connection being opened goes: to the caller still waiting for it, once. The first
/// of the connection, the caller's timeout or its cancellation wins; a connection that comes
/// too late is not delivered (`deliver` returns false) and the pool keeps it.
private final class Handoff: Sendable {
    private enum State {
        case empty
        case waiting(CheckedContinuation<any ConnectionDriver, any Error>)
        /// Delivered before the caller started waiting (its cancellation did).
        case early(Result<any ConnectionDriver, any Error>)
        case done
    }

    private let state = Mutex(State.empty)

    func wait(_ continuation: CheckedContinuation<any ConnectionDriver, any Error>) {
        let early: Result<any ConnectionDriver, any Error>? = state.withLock { state in
            if case .early(let result) = state {
                state = .done
                return result
            }
            state = .waiting(continuation)
            return nil
        }
        if let early { continuation.resume(with: early) }
    }

    /// Resumes the caller with `result` if it still waits; false when it no longer does.
    @discardableResult
    func deliver(_ result: Result<any ConnectionDriver, any Error>) -> Bool {
        let continuation: CheckedContinuation<any ConnectionDriver, any Error>? = state.withLock { state in
            switch state {
            case .waiting(let continuation):
                state = .done
                return continuation
            case .empty:
                // Only a cancellation arrives before the caller waits; a connection never
                // does (the open starts after `wait`).
                if case .failure = result { state = .early(result) }
                return nil
            case .early, .done:
                return nil
            }
        }
        continuation?.resume(with: result)
        return continuation != nil
    }
}
