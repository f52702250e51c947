/// Provisions monthly partitions of the kit's partitioned tables (Postgres only).
///
/// Calls `restartix_ensure_monthly_partitions` (installed by the first migration) for every
/// partitioned table: creates the partitions covering the current month and the next
/// `monthsAhead` months that are missing. Idempotent, and serialized in the database by a
/// transaction-scoped advisory lock, so two concurrent runs create each partition once.
/// Run it with the owner role (partitions are DDL).
///
/// The roll waits at most `lockTimeout` for a lock (the advisory lock that serializes rolls, or
/// a table lock held by a long transaction): an app-role client holding
/// `pg_advisory_lock` on the same key must not stall the job forever. It then fails with
/// `lock_not_available` (55P03), and the next run tries again.
public import RestartixKit

public struct PartitionRoller: Sendable {
    let database: Database
    let lockTimeout: Duration

    public init(database: Database, lockTimeout: Duration = .seconds(30)) {
        self.database = database
        self.lockTimeout = lockTimeout
    }

    /// Returns the number of partitions created per table, or `nil` on SQLite (no partitions).
    public func roll(monthsAhead: Int = 3) async throws -> [String: Int]? {
        guard database.dialect == .postgres else { return nil }
        guard (0...36).contains(monthsAhead) else {
            throw DatabaseError(code: .configuration, detail: "monthsAhead must be between 0 and 36")
        }
        return try await database.transaction { tx in
            try await tx.execute("SELECT set_config('lock_timeout', \("\(max(1, lockTimeout.milliseconds))ms"), true)")
            let rows = try await tx.query(
                """
                SELECT table_name, restartix_ensure_monthly_partitions(table_name::regclass, \(monthsAhead)::integer) AS created
                FROM restartix_partitioned_tables ORDER BY table_name
                """
            )
            var created: [String: Int] = [:]
            for row in rows {
                created[try row.decode("table_name")] = try row.decode("created", as: Int.self)
            }
            return created
        }
    }
}
