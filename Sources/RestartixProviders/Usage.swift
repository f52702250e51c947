public import Foundation
public import RestartixKit
public import RestartixTenancy

/// What ``UsageMeter/record(_:capability:organization:metadata:in:)`` decided.
public struct UsageDecision: Sendable, Hashable {
    /// The units counted in the quota's period after this record; nil without a quota.
    public var used: Int?
    /// The quota's limit; nil without a quota (unlimited).
    public var limit: Int?
    /// Units left in the period; nil without a quota.
    public var remaining: Int? {
        guard let used, let limit else { return nil }
        return max(0, limit - used)
    }
}

/// Why usage was refused.
public typealias UsageError = DomainError<UsageErrorDomain>

/// The `usage` error domain.
public enum UsageErrorDomain: ErrorDomain {
    public static let name = "usage"

    /// 429 for a quota reached (until the next period), 422 for a bad argument.
    public static func httpStatus(for code: ErrorCode<UsageErrorDomain>) -> Int { code == .quotaExceeded ? 429 : 422 }
}

extension DomainError where Domain == UsageErrorDomain {
    /// The old spelling of `UsageError(_:_:)`.
    @available(*, deprecated, renamed: "init(_:_:)")
    public init(code: Code, detail: String) { self.init(code, detail) }
}

extension ErrorCode where Domain == UsageErrorDomain {
    /// Recording these units would pass the quota; nothing was recorded.
    public static var quotaExceeded: Self { Self("quotaExceeded") }
    /// Units must be positive (and at most 2^31), capability names valid.
    public static var invalidArgument: Self { Self("invalidArgument") }
}

/// Usage metering: units per (organization, capability) in `usage_records`, checked against
/// `usage_quotas` atomically, in the caller's transaction.
///
/// The check and the count are one statement, `UPDATE usage_quotas SET current_units =
/// current_units + n WHERE ... AND current_units + n <= limit_units`, so concurrent callers can
/// never overshoot: on Postgres the row lock serializes them and the condition is re-checked
/// on the latest row; SQLite has one writer. A record over the quota throws
/// `usage.quotaExceeded` and writes nothing; without a quota row usage is unlimited
/// (recorded, not limited). A record in a quota whose period has ended moves it to the current
/// month first (in the same statement), so usage is always counted in the month it happens;
/// `usage-quota-reset` advances the quotas that saw no usage since.
public enum UsageMeter {
    /// Records `units` of `capability` for `organization` inside `transaction` (a tenant
    /// transaction with a staff role, or an admin transaction for the clinic), and counts them
    /// against the quota. Rolled back with the transaction.
    ///
    /// `enforcingQuota: false` counts units that were already spent (a message a provider has
    /// sent): they are recorded and added to the quota's count even past its limit, never
    /// refused. Check ``allows(_:capability:organization:in:)`` before spending them.
    @discardableResult
    public static func record(
        _ units: Int,
        capability: ProviderCapability,
        organization: UUID,
        metadata: [String: String] = [:],
        enforcingQuota: Bool = true,
        in transaction: borrowing some SQLExecutor & ~Copyable
    ) async throws -> UsageDecision {
        guard units > 0, units <= Int(Int32.max) else {
            throw UsageError(.invalidArgument, "usage units must be between 1 and \(Int32.max)")
        }
        // A period that has ended starts the current month here, with these units, so usage
        // after the end of a month never counts against it (and is never zeroed by the reset).
        let now = Date()
        let (start, end) = UsagePeriods.month(containing: now)
        let withinLimit: SQLQuery = enforcingQuota
            ? " AND \(unitsCounted(at: now)) + \(units) <= limit_units"
            : ""
        let counted = try await transaction.query("""
            UPDATE usage_quotas SET \
            current_units = CASE WHEN period_end_at <= \(now) THEN \(units) ELSE current_units + \(units) END, \
            period_start_at = CASE WHEN period_end_at <= \(now) THEN \(start) ELSE period_start_at END, \
            period_end_at = CASE WHEN period_end_at <= \(now) THEN \(end) ELSE period_end_at END, \
            updated_at = \(now) \
            WHERE organization_id = \(organization) AND capability = \(capability.name)\(withinLimit) \
            RETURNING current_units, limit_units
            """)
        var decision = UsageDecision()
        if let row = counted.first {
            decision.used = try row.decode("current_units", as: Int.self)
            decision.limit = try row.decode("limit_units", as: Int.self)
        } else {
            let quota = try await transaction.query(
                "SELECT current_units, limit_units FROM usage_quotas WHERE organization_id = \(organization) AND capability = \(capability.name)"
            )
            if let row = quota.first {
                let used = try row.decode("current_units", as: Int.self), limit = try row.decode("limit_units", as: Int.self)
                throw UsageError(.quotaExceeded, "the \(capability) quota allows \(limit) units a period; \(used) are used, \(units) more were asked for")
            }
        }
        try await transaction.execute("""
            INSERT INTO usage_records (id, organization_id, capability, units, metadata, recorded_at) \
            VALUES (\(UUIDv7.generate()), \(organization), \(capability.name), \(units), \(json: metadata), \(Date()))
            """)
        return decision
    }

    /// A quota row's units counted at `now`: zero once its period has ended (the next record
    /// starts the current month), so a look and a record agree on what is left.
    static func unitsCounted(at now: Date) -> SQLQuery {
        "(CASE WHEN period_end_at <= \(now) THEN 0 ELSE current_units END)"
    }

    /// Whether `units` more of `capability` fit `organization`'s quota now (true without a
    /// quota; a quota whose period has ended counts from zero). A look, not a reservation:
    /// callers that spend units elsewhere before recording them (``record(_:capability:organization:metadata:enforcingQuota:in:)``
    /// with `enforcingQuota: false`) may pass the limit by what they spend at the same time.
    public static func allows(
        _ units: Int,
        capability: ProviderCapability,
        organization: UUID,
        now: Date = Date(),
        in transaction: borrowing some SQLExecutor & ~Copyable
    ) async throws -> Bool {
        let quota = try await transaction.query("""
            SELECT \(unitsCounted(at: now)) + \(units) <= limit_units AS fits \
            FROM usage_quotas WHERE organization_id = \(organization) AND capability = \(capability.name)
            """)
        guard let row = quota.first else { return true }
        return try row.decode("fits", as: Bool.self)
    }

    /// One capability's usage in the current period.
    public struct PeriodUsage: Sendable, Hashable {
        /// The capability's name (`email`, `video`, ...).
        public let capability: String
        /// Units recorded this calendar month (UTC).
        public let used: Int
        /// The quota's limit a period; nil without a quota (unlimited).
        public let limit: Int?
        /// Units left before the quota refuses; nil without a quota.
        public var remaining: Int? { limit.map { max(0, $0 - used) } }
        /// The period: the calendar month (UTC) containing now.
        public let periodStart: Date
        public let periodEnd: Date
    }

    /// The current period's usage of `context`'s clinic, per capability that has a quota or
    /// records this month, sorted by name; read through the app role under `context`, for the
    /// clinic's owners and admins (``TenancyError/Code/roleNotAllowed`` otherwise).
    public static func currentPeriod(_ context: TenantContext, on tenants: TenantDatabase, now: Date = Date()) async throws -> [PeriodUsage] {
        guard context.role == .owner || context.role == .admin else {
            throw TenancyError(.roleNotAllowed, "only the clinic's owners and admins may read its usage")
        }
        let (start, end) = UsagePeriods.month(containing: now)
        return try await tenants.withTenant(context) { tx in
            var used: [String: Int] = [:]
            for row in try await tx.query("""
                SELECT capability, sum(units) AS used FROM usage_records \
                WHERE organization_id = \(context.organizationID) AND recorded_at >= \(start) AND recorded_at < \(end) GROUP BY capability
                """) {
                used[try row.decode("capability", as: String.self)] = try row.decode("used", as: Int.self)
            }
            var limits: [String: Int] = [:]
            for row in try await tx.query("SELECT capability, limit_units FROM usage_quotas WHERE organization_id = \(context.organizationID)") {
                limits[try row.decode("capability", as: String.self)] = try row.decode("limit_units", as: Int.self)
            }
            return Set(used.keys).union(limits.keys).sorted().map { capability in
                PeriodUsage(capability: capability, used: used[capability] ?? 0, limit: limits[capability], periodStart: start, periodEnd: end)
            }
        }
    }

    /// Sets (or replaces) a clinic's monthly quota for `capability`, its period the calendar
    /// month (UTC) containing `now`. Changing the limit keeps the units already counted.
    public static func setQuota(
        _ limit: Int,
        capability: ProviderCapability,
        organization: UUID,
        now: Date = Date(),
        in transaction: borrowing some SQLExecutor & ~Copyable
    ) async throws {
        guard limit >= 0 else { throw UsageError(.invalidArgument, "a quota limit is zero or more units") }
        let (start, end) = UsagePeriods.month(containing: now)
        let insert: SQLQuery = """
            INSERT INTO usage_quotas (id, organization_id, capability, limit_units, current_units, period_start_at, period_end_at, updated_at) \
            VALUES (\(UUIDv7.generate()), \(organization), \(capability.name), \(limit), 0, \(start), \(end), \(now))
            """
        let update: SQLQuery = """
            UPDATE usage_quotas SET limit_units = \(limit), updated_at = \(now) \
            WHERE organization_id = \(organization) AND capability = \(capability.name)
            """
        try await upsert(
            insert: insert, conflict: "(organization_id, capability)",
            existing: "SELECT 1 FROM usage_quotas WHERE organization_id = \(organization) AND capability = \(capability.name)",
            update: update, in: transaction
        )
    }

    /// Inserts, or when the row exists runs `update` (a full `UPDATE` of that row, with any
    /// condition it needs). Postgres: `INSERT ... ON CONFLICT DO NOTHING`, which waits for a
    /// concurrent insert of the same key to commit and never fails the transaction, then the
    /// update. SQLite, whose row-level security views cannot take an upsert: `existing` (a
    /// `SELECT` of the row) decides between the two; SQLite runs one writing transaction at a
    /// time, so nothing comes between the look and the write. Returns the rows written.
    @discardableResult
    static func upsert(
        insert: SQLQuery, conflict: String, existing: SQLQuery, update: SQLQuery, in transaction: borrowing some SQLExecutor & ~Copyable
    ) async throws -> Int {
        if transaction.dialect == .postgres {
            if try await transaction.execute("\(insert) ON CONFLICT \(unsafeRaw: conflict) DO NOTHING") == 1 { return 1 }
        } else if try await transaction.query(existing).isEmpty {
            return try await transaction.execute(insert)
        }
        return try await transaction.execute(update)
    }
}

/// Calendar months in UTC, the quota and summary periods.
public enum UsagePeriods {
    static let calendar: Calendar = {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        return calendar
    }()

    /// [first instant of the month, first instant of the next month) containing `date`.
    public static func month(containing date: Date) -> (start: Date, end: Date) {
        let start = calendar.date(from: calendar.dateComponents([.year, .month], from: date))!
        return (start, calendar.date(byAdding: .month, value: 1, to: start)!)
    }

    /// The month `month` (1-12) of `year`, nil for one that does not exist.
    public static func month(year: Int, month: Int) -> (start: Date, end: Date)? {
        guard (1...12).contains(month), let day = calendar.date(from: DateComponents(year: year, month: month, day: 1)) else { return nil }
        return self.month(containing: day)
    }

    /// The month before the one containing `date`.
    public static func previousMonth(before date: Date) -> (start: Date, end: Date) {
        let current = month(containing: date)
        return month(containing: calendar.date(byAdding: .month, value: -1, to: current.start)!)
    }
}

/// The two monthly usage jobs, idempotent and safe to run twice at once.
public enum UsageJobs {
    /// What `usage-quota-reset` did.
    public struct ResetReport: Sendable, Hashable {
        /// Quotas whose period this run advanced (and zeroed).
        public var reset = 0
        /// Quotas another run advanced first (compare-and-swap lost).
        public var alreadyReset = 0
    }

    /// `usage-quota-reset`: every quota whose period has ended moves to the month containing
    /// `now` with its units at zero. Each row is a compare-and-swap on its old period end, so
    /// two runs at once reset each quota once.
    /// `organizations` limits a run to those clinics (nil: every clinic).
    public static func resetQuotas(
        _ admin: AdminDatabase, now: Date = Date(), organizations: [UUID]? = nil, actor: PlatformActor = .system("usage-quota-reset")
    ) async throws -> ResetReport {
        try await admin.unscoped(reason: "usage-quota-reset: advance ended quota periods", actor: actor) { tx in
            var report = ResetReport()
            // In id order, so two runs at once lock rows in the same order (no deadlock).
            let ended = try await tx.query(
                "SELECT id, period_end_at FROM usage_quotas WHERE period_end_at <= \(now)\(SQLQuery.organizationScope(organizations)) ORDER BY id"
            )
            let (start, end) = UsagePeriods.month(containing: now)
            for row in ended {
                let id = try row.decode("id", as: UUID.self), previousEnd = try row.decode("period_end_at", as: Date.self)
                let changed = try await tx.execute("""
                    UPDATE usage_quotas SET current_units = 0, period_start_at = \(start), period_end_at = \(end), updated_at = \(now) \
                    WHERE id = \(id) AND period_end_at = \(previousEnd)
                    """)
                if changed == 1 { report.reset += 1 } else { report.alreadyReset += 1 }
            }
            return report
        }
    }

    /// What `usage-summary-rollup` did.
    public struct RollupReport: Sendable, Hashable {
        /// The month closed.
        public var periodStart: Date
        public var periodEnd: Date
        /// Summaries written (or completed) by this run.
        public var closed = 0
        /// Summaries already closed before (left as they were).
        public var alreadyClosed = 0
    }

    /// `usage-summary-rollup`: one closed `usage_summaries` row per organization × capability
    /// for the month before the one containing `now` (or `month`, any date in it): the sum of
    /// its `usage_records`. A closed row is never rewritten, so running it again, or twice at
    /// once, gives the same rows.
    /// `organizations` limits a run to those clinics (nil: every clinic).
    public static func rollUp(
        _ admin: AdminDatabase, month: Date? = nil, now: Date = Date(), organizations: [UUID]? = nil,
        actor: PlatformActor = .system("usage-summary-rollup")
    ) async throws -> RollupReport {
        let (start, end) = month.map { UsagePeriods.month(containing: $0) } ?? UsagePeriods.previousMonth(before: now)
        guard end <= now else {
            throw UsageError(.invalidArgument, "only a month that has ended can be closed")
        }
        return try await admin.unscoped(reason: "usage-summary-rollup: close a month of usage", actor: actor) { tx in
            var report = RollupReport(periodStart: start, periodEnd: end)
            let totals = try await tx.query("""
                SELECT organization_id, capability, SUM(units) AS total FROM usage_records \
                WHERE recorded_at >= \(start) AND recorded_at < \(end)\(SQLQuery.organizationScope(organizations)) \
                GROUP BY organization_id, capability ORDER BY organization_id, capability
                """)
            for row in totals {
                let organization = try row.decode("organization_id", as: UUID.self), capability = try row.decode("capability", as: String.self)
                let total = try row.decode("total", as: Int.self)
                let written = try await UsageMeter.upsert(
                    insert: """
                        INSERT INTO usage_summaries (id, organization_id, capability, period_start_at, period_end_at, total_units, closed_at) \
                        VALUES (\(UUIDv7.generate()), \(organization), \(capability), \(start), \(end), \(total), \(now))
                        """,
                    conflict: "(organization_id, capability, period_start_at)",
                    existing: """
                        SELECT 1 FROM usage_summaries \
                        WHERE organization_id = \(organization) AND capability = \(capability) AND period_start_at = \(start)
                        """,
                    update: """
                        UPDATE usage_summaries SET total_units = \(total), closed_at = \(now) \
                        WHERE organization_id = \(organization) AND capability = \(capability) AND period_start_at = \(start) AND closed_at IS NULL
                        """,
                    in: tx
                )
                if written == 1 { report.closed += 1 } else { report.alreadyClosed += 1 }
            }
            return report
        }
    }
}
