import Foundation
import Logging
import RestartixPlatform
import RestartixKit
import RestartixProviders
import RestartixTenancy
import RestartixTestSupport
import Testing

@Suite("Usage metering, quotas and the monthly jobs", .timeLimit(.minutes(3)))
struct UsageTests {
    static func count(_ world: ProviderTests.World, _ sql: SQLQuery, clinic: UUID) async throws -> Int {
        try await world.admin.withOrganization(clinic, actor: .system("usage-tests")) { tx in
            try await tx.query(sql).first?.decode(at: 0, as: Int.self) ?? 0
        }
    }

    @Test("the app role counts usage through the meter, across an ended period, and cannot set quotas", arguments: ProviderTests.Backend.all)
    func meterAsAppRole(backend: ProviderTests.Backend) async throws {
        let capability = ProviderTests.capability()
        try await ProviderTests.withWorld(backend, removing: []) { world in
            let clinic = world.clinics[0]
            let thisMonth = UsagePeriods.month(containing: Date())
            let lastMonth = UsagePeriods.month(containing: thisMonth.start.addingTimeInterval(-86_400))
            try await world.admin.withOrganization(clinic, actor: .system("usage-tests")) { tx in
                try await UsageMeter.setQuota(100, capability: capability, organization: clinic, now: lastMonth.start, in: tx)
                try await tx.execute("UPDATE usage_quotas SET current_units = 70 WHERE capability = \(capability.name)")
            }
            let app: TenantDatabase = switch backend {
            case .sqlite: TenantDatabase(configuration: DatabaseConfiguration(sqlitePath: try #require(world.sqlitePath)), tables: PlatformSchema.tenantTables, logger: Logger(label: "usage-tests"))
            case .postgresDirect, .pgbouncer: try TenantDatabase(url: try backend.require(.app), tables: PlatformSchema.tenantTables, logger: Logger(label: "usage-tests"))
            }
            let staff = TenantContext(organizationID: clinic, userID: UUIDv7.generate(), role: .assistant)
            // Last month ended: the first record of this month moves the period and starts over.
            let first = try await app.withTenant(staff) { tx in
                try await UsageMeter.record(3, capability: capability, organization: clinic, in: tx)
            }
            #expect(first.used == 3 && first.limit == 100)
            let second = try await app.withTenant(staff) { tx in
                try await UsageMeter.record(2, capability: capability, organization: clinic, in: tx)
            }
            #expect(second.used == 5)
            let period = try await world.admin.withOrganization(clinic, actor: .system("usage-tests")) { tx in
                try await tx.first("SELECT period_start_at, period_end_at FROM usage_quotas WHERE capability = \(capability.name)")
            }
            #expect(try period?.decode("period_start_at", as: Date.self) == thisMonth.start)
            #expect(try period?.decode("period_end_at", as: Date.self) == thisMonth.end)
            // Quotas are the platform's.
            let refused = await #expect(throws: DatabaseError.self) {
                try await app.withTenant(staff) { tx in
                    try await UsageMeter.setQuota(1_000_000, capability: capability, organization: clinic, in: tx)
                }
            }
            #expect(refused?.code == .insufficientPrivilege)
            // What GET /v1/usage shows: this month's units against the quota, for owners and admins.
            let owner = TenantContext(organizationID: clinic, userID: UUIDv7.generate(), role: .owner)
            let usage = try await UsageMeter.currentPeriod(owner, on: app)
            let mine = try #require(usage.first { $0.capability == capability.name })
            #expect(mine.used == 5 && mine.limit == 100 && mine.remaining == 95 && mine.periodStart == thisMonth.start && mine.periodEnd == thisMonth.end)
            let elsewhere = try await UsageMeter.currentPeriod(TenantContext(organizationID: world.clinics[1], userID: UUIDv7.generate(), role: .admin), on: app)
            #expect(!elsewhere.contains { $0.capability == capability.name && $0.used > 0 }, "another clinic's usage is its own")
            let notOwner = await #expect(throws: TenancyError.self) { try await UsageMeter.currentPeriod(staff, on: app) }
            #expect(notOwner?.code == .roleNotAllowed)
            await app.shutdown()
        }
    }

    @Test("50 concurrent callers against a quota of 20: exactly 20 recorded, no overshoot; over the quota nothing is written", arguments: ProviderTests.Backend.all)
    func quotaUnderConcurrency(backend: ProviderTests.Backend) async throws {
        let capability = ProviderTests.capability()
        try await ProviderTests.withWorld(backend, removing: []) { world in
            let clinic = world.clinics[0]
            try await world.admin.withOrganization(clinic, actor: .system("usage-tests")) { tx in
                try await UsageMeter.setQuota(20, capability: capability, organization: clinic, in: tx)
            }
            let outcomes = await withTaskGroup(of: Bool.self) { group in
                for _ in 0..<50 {
                    group.addTask {
                        do {
                            try await world.admin.withOrganization(clinic, actor: .system("usage-tests")) { tx in
                                try await UsageMeter.record(1, capability: capability, organization: clinic, metadata: ["call": "test"], in: tx)
                            }
                            return true
                        } catch let error as UsageError {
                            #expect(error.code == .quotaExceeded)
                            return false
                        } catch {
                            Issue.record("unexpected \(error)")
                            return false
                        }
                    }
                }
                return await group.reduce(into: [Bool]()) { $0.append($1) }
            }
            #expect(outcomes.filter { $0 }.count == 20)
            #expect(try await Self.count(world, "SELECT current_units FROM usage_quotas WHERE capability = \(capability.name)", clinic: clinic) == 20)
            #expect(try await Self.count(world, "SELECT COUNT(*) FROM usage_records WHERE capability = \(capability.name)", clinic: clinic) == 20)
            // A full quota allows nothing more; units already spent elsewhere (a message a
            // provider sent) are still counted past it, never refused.
            let (allowsMore, overage, allowsUnmetered) = try await world.admin.withOrganization(clinic, actor: .system("usage-tests")) { tx in
                let allows = try await UsageMeter.allows(1, capability: capability, organization: clinic, in: tx)
                let overage = try await UsageMeter.record(2, capability: capability, organization: clinic, enforcingQuota: false, in: tx)
                let unmetered = try await UsageMeter.allows(1_000, capability: ProviderTests.capability(), organization: clinic, in: tx)
                return (allows, overage, unmetered)
            }
            #expect(!allowsMore && allowsUnmetered)
            #expect(overage.used == 22 && overage.limit == 20 && overage.remaining == 0)
            #expect(try await Self.count(world, "SELECT COUNT(*) FROM usage_records WHERE capability = \(capability.name)", clinic: clinic) == 21)
            // A record inside a transaction that rolls back is not counted either.
            struct Abort: Error {}
            try? await world.admin.withOrganization(world.clinics[1], actor: .system("usage-tests")) { tx in
                try await UsageMeter.record(5, capability: capability, organization: world.clinics[1], in: tx)
                throw Abort()
            }
            #expect(try await Self.count(world, "SELECT COUNT(*) FROM usage_records WHERE capability = \(capability.name)", clinic: world.clinics[1]) == 0)
            // Without a quota, usage is recorded and unlimited.
            let free = try await world.admin.withOrganization(world.clinics[1], actor: .system("usage-tests")) { tx in
                try await UsageMeter.record(1000, capability: capability, organization: world.clinics[1], in: tx)
            }
            #expect(free.limit == nil && free.remaining == nil)
            await #expect(throws: UsageError.self) {
                try await world.admin.withOrganization(clinic, actor: .system("usage-tests")) { tx in
                    try await UsageMeter.record(0, capability: capability, organization: clinic, in: tx)
                }
            }
            // A quota whose month ended (the reset job has not run yet): the record starts the
            // current month itself, so usage is counted in the month it happens.
            let other = ProviderTests.capability()
            let lastMonth = UsagePeriods.previousMonth(before: Date())
            let decision = try await world.admin.withOrganization(clinic, actor: .system("usage-tests")) { tx in
                try await UsageMeter.setQuota(10, capability: other, organization: clinic, now: lastMonth.start.addingTimeInterval(3600), in: tx)
                try await tx.execute("UPDATE usage_quotas SET current_units = 9 WHERE capability = \(other.name)")
                return try await UsageMeter.record(5, capability: other, organization: clinic, in: tx)
            }
            #expect(decision.used == 5 && decision.remaining == 5)
            let period = try await world.admin.withOrganization(clinic, actor: .system("usage-tests")) { tx in
                try await tx.query("SELECT period_start_at FROM usage_quotas WHERE capability = \(other.name)").first?.decode("period_start_at", as: Date.self)
            }
            #expect(period == UsagePeriods.month(containing: Date()).start)
        }
    }

    @Test("usage-quota-reset and usage-summary-rollup, each run twice at once: one reset, one closed summary, the same result", arguments: ProviderTests.Backend.all)
    func jobsTwiceAtOnce(backend: ProviderTests.Backend) async throws {
        let capability = ProviderTests.capability()
        try await ProviderTests.withWorld(backend, removing: []) { world in
            let clinic = world.clinics[0]
            // The jobs run "next month": this month's quota has ended, this month's usage is the
            // month to close (Postgres partitions exist for the months ahead, not behind).
            let thisMonth = UsagePeriods.month(containing: Date())
            let nextMonth = thisMonth.end.addingTimeInterval(3600 * 24 * 10)
            try await world.admin.withOrganization(clinic, actor: .system("usage-tests")) { tx in
                try await UsageMeter.setQuota(100, capability: capability, organization: clinic, in: tx)
                for units in [7, 3, 4] { try await UsageMeter.record(units, capability: capability, organization: clinic, in: tx) }
            }
            async let first = UsageJobs.resetQuotas(world.admin, now: nextMonth, organizations: world.clinics)
            async let second = UsageJobs.resetQuotas(world.admin, now: nextMonth, organizations: world.clinics)
            let (a, b) = try await (first, second)
            let mine = try await world.admin.withOrganization(clinic, actor: .system("usage-tests")) { tx in
                try await tx.query("SELECT current_units, period_start_at FROM usage_quotas WHERE capability = \(capability.name)")
            }
            #expect(try mine.first?.decode("current_units", as: Int.self) == 0)
            #expect(try mine.first?.decode("period_start_at", as: Date.self) == thisMonth.end, "advanced one month, not two")
            #expect(a.reset + b.reset >= 1, "\(a) \(b)")
            // Counted again in the new period, then a third run: nothing ended, nothing reset.
            try await world.admin.withOrganization(clinic, actor: .system("usage-tests")) { tx in
                try await UsageMeter.record(2, capability: capability, organization: clinic, in: tx)
            }
            _ = try await UsageJobs.resetQuotas(world.admin, now: nextMonth, organizations: world.clinics)
            #expect(try await Self.count(world, "SELECT current_units FROM usage_quotas WHERE capability = \(capability.name)", clinic: clinic) == 2)

            async let r1 = UsageJobs.rollUp(world.admin, now: nextMonth, organizations: world.clinics)
            async let r2 = UsageJobs.rollUp(world.admin, now: nextMonth, organizations: world.clinics)
            _ = try await (r1, r2)
            let summaries = try await world.admin.withOrganization(clinic, actor: .system("usage-tests")) { tx in
                try await tx.query("SELECT total_units, closed_at, period_start_at FROM usage_summaries WHERE capability = \(capability.name)")
            }
            #expect(summaries.count == 1)
            #expect(try summaries.first?.decode("total_units", as: Int.self) == 7 + 3 + 4 + 2)
            #expect(try summaries.first?.decode("period_start_at", as: Date.self) == thisMonth.start)
            let closedAt = try summaries.first?.decode("closed_at", as: Date?.self)
            #expect(closedAt != nil)
            _ = try await UsageJobs.rollUp(world.admin, now: nextMonth, organizations: world.clinics)
            let early = await #expect(throws: UsageError.self, "a month that has not ended is never closed") {
                try await UsageJobs.rollUp(world.admin, month: Date(), organizations: world.clinics)
            }
            #expect(early?.code == .invalidArgument)
            let after = try await world.admin.withOrganization(clinic, actor: .system("usage-tests")) { tx in
                try await tx.query("SELECT total_units, closed_at FROM usage_summaries WHERE capability = \(capability.name)")
            }
            #expect(after.count == 1)
            #expect(try after.first?.decode("closed_at", as: Date?.self) == closedAt, "a closed summary is never rewritten")
            _ = try? await world.admin.unscoped(reason: "usage tests: cleanup", actor: .system("usage-tests")) { tx in
                for table in ["usage_records", "usage_quotas", "usage_summaries"] {
                    try await tx.execute("DELETE FROM \(unsafeRaw: table) WHERE capability = \(capability.name)")
                }
            }
        }
    }
}
