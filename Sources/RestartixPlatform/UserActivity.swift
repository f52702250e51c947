public import Foundation
public import Logging
public import RestartixKit
public import RestartixRedis

/// Each user's last authenticated request (`user_activity`), written at most once per
/// ``interval`` per user: the debounce (``ActivityDebounce``: a Redis key per user shared by every
/// instance, or this process's memory) answers whether this request is the first of its
/// interval, and only that one writes. A failed write never fails the request: it is logged at
/// debug level and counted by the caller's retry on the next interval.
public struct UserActivity: Sendable {
    /// The most one user's activity is written.
    public let interval: Duration
    private let database: Database
    private let debounce: any ActivityDebounce
    private let logger: Logger

    /// Activity in `database` (the platform's admin-role database), debounced by `debounce`.
    public init(database: Database, debounce: any ActivityDebounce, interval: Duration = .seconds(60), logger: Logger) {
        self.database = database
        self.debounce = debounce
        self.interval = interval
        self.logger = logger
    }

    /// Records that `user` made a request now, unless it did within the interval. Returns
    /// whether this call wrote.
    @discardableResult
    public func touch(_ user: UUID, now: Date = Date()) async -> Bool {
        guard await debounce.shouldWrite(principal: user.lowercasedString, every: interval) else { return false }
        do {
            try await database.execute("""
                INSERT INTO user_activity (user_id, last_activity_at) VALUES (\(user), \(now)) \
                ON CONFLICT (user_id) DO UPDATE SET last_activity_at = excluded.last_activity_at
                """)
            return true
        } catch {
            logger.debug("Could not record a user's activity", metadata: ["error": "\((error as? DatabaseError)?.code.description ?? "\(type(of: error))")"])
            return false
        }
    }

    /// When `user` was last active, or `nil`.
    public func lastActivity(of user: UUID) async throws -> Date? {
        try await database.query("SELECT last_activity_at FROM user_activity WHERE user_id = \(user)").first?.decode("last_activity_at", as: Date.self)
    }
}
