import Foundation
import Hummingbird
import RestartixProviders
import RestartixTenancy
import ServiceSupport

/// One capability's usage in `GET /v1/usage`.
struct CapabilityUsageBody: ResponseCodable, Equatable {
    let capability: String
    let used: Int
    /// The quota a period; absent when the capability is unlimited.
    let limit: Int?
    let remaining: Int?
}

/// `GET /v1/usage`'s answer: the current period (the calendar month, UTC) per capability.
struct UsageBody: ResponseCodable, Equatable {
    let period_start: String
    let period_end: String
    let capabilities: [CapabilityUsageBody]
}

/// `GET /v1/usage`: the clinic's usage this period per capability, with its quota
/// (``UsageMeter/currentPeriod(_:on:now:)``), for owners and admins.
func addUsageRoutes(to group: RouterGroup<CoreRequestContext>, tenants: TenantDatabase) {
    group.get("usage") { _, context -> UsageBody in
        let tenant = try context.requireTenant()
        let now = Date()
        let usage = try await UsageMeter.currentPeriod(tenant, on: tenants, now: now)
        let (start, end) = UsagePeriods.month(containing: now)
        return UsageBody(
            period_start: APITime.string(start), period_end: APITime.string(end),
            capabilities: usage.map { CapabilityUsageBody(capability: $0.capability, used: $0.used, limit: $0.limit, remaining: $0.remaining) }
        )
    }
}
