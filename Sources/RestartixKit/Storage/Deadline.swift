package import Dispatch

/// The deadline of the database calls a task makes: the scope's (``Database/withDeadline(_:_:)``)
/// and each call's own budget (``DatabaseConfiguration/callTimeout``), whichever ends first.
enum CallDeadline {
    /// The deadline of the innermost ``Database/withDeadline(_:_:)`` scope, if any.
    @TaskLocal static var scoped: ContinuousClock.Instant?

    /// The deadline of a call that starts now with `budget` (`nil`: no budget of its own), and
    /// the time it had, for the error message; `nil` when neither the call nor a scope is bounded.
    static func forCall(budget: Duration?) -> (at: ContinuousClock.Instant, budget: Duration)? {
        let now = ContinuousClock.now
        let own = budget.map { now + $0 }
        guard let deadline = [own, scoped].compactMap({ $0 }).min() else { return nil }
        return (deadline, deadline - now)
    }

    /// Runs cleanup after a failure (a `ROLLBACK`) under a short deadline of its own, so that it
    /// is still tried when the scope's deadline is what failed the call, and still bounded.
    static func forCleanup<T>(_ body: () async throws -> T) async rethrows -> T {
        try await $scoped.withValue(.now + .seconds(2)) { try await body() }
    }

    /// The error for a call whose deadline passed before it sent anything: nothing ran, and the
    /// connection (if any) is as good as before.
    static func expiredBeforeSending(_ what: String) -> DatabaseError {
        DatabaseError(code: .timedOut, detail: "the call's deadline had passed before \(what); nothing was sent")
    }
}

extension Database {
    /// Runs `body` with every database call inside it bounded by `timeout` from now, on any
    /// ``Database``, `TenantDatabase` or `AdminDatabase`: waiting for a pooled connection,
    /// connecting, and waiting for each answer. A call that runs out throws
    /// ``DatabaseError/Code/timedOut``; a statement already sent is canceled on the server and
    /// its connection closed, never reused.
    ///
    /// On Postgres a transaction that begins inside the scope also sends a little less than the
    /// time left (10%, at least 50 ms) as its `statement_timeout`, transaction-locally and in the
    /// round trip of `BEGIN`, when that is shorter than the role's
    /// (``DatabaseConfiguration/statementTimeout``): the server stops the work too, and its clean
    /// cancel normally comes before the client's deadline. Scopes nest; the earlier deadline wins.
    ///
    /// ```swift
    /// // A readiness probe that answers within a second whatever the database does.
    /// let ready = (try? await Database.withDeadline(.seconds(1)) { try await db.query("SELECT 1") }) != nil
    /// ```
    ///
    /// On SQLite the scope bounds the wait for a connection and each statement's work (a
    /// statement still running at the deadline is interrupted and throws `.timedOut`; SQLite
    /// then rolls back a write's explicit transaction itself); a statement's wait for a lock is
    /// bounded by ``SQLiteConfiguration/busyTimeout``.
    public static func withDeadline<T>(_ timeout: Duration, _ body: () async throws -> T) async rethrows -> T {
        let deadline = ContinuousClock.now + timeout
        let effective = CallDeadline.scoped.map { Swift.min($0, deadline) } ?? deadline
        return try await CallDeadline.$scoped.withValue(effective) { try await body() }
    }
}

extension DispatchTime {
    /// The dispatch time at which `instant` of the continuous clock comes (now, if it is past).
    package static func at(_ instant: ContinuousClock.Instant) -> DispatchTime {
        .now() + .nanoseconds(Int(Swift.max(.zero, instant - .now).clampedNanoseconds))
    }
}

extension Duration {
    /// The duration in whole nanoseconds, clamped to a year: no deadline or timer of the kit or
    /// its services is longer, and the nanoseconds stay in range of an `Int64`.
    package var clampedNanoseconds: Int64 {
        let (seconds, attoseconds) = components
        return Swift.min(seconds, 365 * 86_400) * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
