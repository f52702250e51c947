/// How ``retryingTransientErrors(_:_:)`` retries: a bounded number of attempts with jittered,
/// doubling waits between them.
public struct RetryPolicy: Sendable, Hashable {
    /// Attempts in all, the first included (1 means no retry). Default: 3.
    public var attempts: Int
    /// The wait after the first failure; doubled after each further one. Default: 100 ms.
    public var initialBackoff: Duration
    /// The longest wait between two attempts. Default: 2 s.
    public var maximumBackoff: Duration

    /// A policy; attempts are clamped to 1-10 and the waits to at least a millisecond.
    public init(attempts: Int = 3, initialBackoff: Duration = .milliseconds(100), maximumBackoff: Duration = .seconds(2)) {
        self.attempts = Swift.min(Swift.max(attempts, 1), 10)
        self.initialBackoff = Swift.max(initialBackoff, .milliseconds(1))
        self.maximumBackoff = Swift.max(maximumBackoff, self.initialBackoff)
    }
}

/// Runs `body` and, while it fails with a transient ``DatabaseError`` (``DatabaseError/isTransient``:
/// a lost connection, a serialization failure or deadlock, a pool wait that ran out, a connect
/// refused while a server or pooler restarts...), runs it again, up to `policy.attempts` times
/// in all, waiting a jittered, doubling backoff in between. Any other error, or the last
/// transient one, is thrown as it is. Cancellation stops the waiting, and so does the deadline
/// of a ``Database/withDeadline(_:_:)`` scope: no attempt starts after it.
///
/// Only for work that is safe to repeat: a read, or a whole transaction (the transaction's
/// closure, not one statement inside it), since a lost connection can hide whether a commit
/// happened.
///
/// ```swift
/// let rows = try await retryingTransientErrors { try await db.query("SELECT id FROM organizations") }
/// ```
public func retryingTransientErrors<T>(
    _ policy: RetryPolicy = RetryPolicy(),
    _ body: () async throws -> T
) async throws -> T {
    var failures = 0
    while true {
        do {
            return try await body()
        } catch let error as DatabaseError where error.isTransient && failures + 1 < policy.attempts {
            failures += 1
            let wait = Duration.backoff(initial: policy.initialBackoff, maximum: policy.maximumBackoff, afterFailures: failures)
            // Inside a Database.withDeadline scope, a try that could not start before the
            // deadline is not worth waiting for: the last error is the answer.
            if let deadline = CallDeadline.scoped, ContinuousClock.now + wait >= deadline { throw error }
            try await Task.sleep(for: wait)
        }
    }
}
