// Redis services quickstart: rate limiting, an appointment hold and cache-aside, on Redis when
// a URL is given and in process memory otherwise (the embedded default, one instance only).
//
//     swift run RedisQuickstart                              # in-process services
//     swift run RedisQuickstart redis://127.0.0.1:56379/0    # Redis (Scripts/services up)
//
// With Redis, stop it half-way to see each service degrade as the platform requires: the rate
// limiter fails open, holds fall back to the database reservation, reads go to the database.
import Foundation
import Logging
import RestartixKit
import RestartixPlatform
import RestartixRedis

var logger = Logger(label: "quickstart")
logger.logLevel = .warning

let database = try Database(url: "sqlite::memory:", logger: logger)
try await Migrator(platformSchemaOn: database, logger: logger).migrate()

let limiter: any RateLimiter
let holds: any SlotHolds
let aside: Aside
var redis: RedisClient?
if let url = CommandLine.arguments.dropFirst().first {
    do {
        let client = try RedisClient(url: url, logger: logger)  // errors never show the password
        limiter = RedisRateLimiter(redis: client, logger: logger)
        holds = RedisSlotHolds(redis: client, database: database, logger: logger)
        aside = Aside(redis: client, logger: logger)
        redis = client
    } catch {
        FileHandle.standardError.write(Data("quickstart: \(error)\n".utf8))
        exit(1)
    }
} else {
    limiter = InProcessRateLimiter()
    holds = InProcessSlotHolds()
    aside = Aside(logger: logger)
}

// Five requests a second, bursts of three: the fourth request at once is refused.
let rate = RateLimit(5, per: .seconds(1), burst: 3)
for request in 1...4 {
    let decision = await limiter.check(principal: "user_123", endpoint: "POST /v1/appointments", rate: rate)
    let headers = decision.headers.map { "\($0.name): \($0.value)" }.joined(separator: ", ")
    print("request \(request): \(decision.allowed ? "allowed" : "refused") [\(headers)]\(decision.failedOpen ? " (failed open)" : "")")
}

// One patient holds a slot; a second cannot; the first confirms and books with the fence.
let slot = "practitioner-7/2026-12-01T10:00"
if let hold = try await holds.hold(slot: slot, holder: "patient-a", ttl: .seconds(120)) {
    print("patient-a holds \(slot) (fence \(hold.fence), in \(hold.store.rawValue))")
    print("patient-b can hold it too: \(try await holds.hold(slot: slot, holder: "patient-b", ttl: .seconds(120)) != nil)")
    print("patient-a confirms: \(try await holds.confirm(hold) != nil)")
}

// Cache-aside: the second read is a hit and does not run the load.
struct Clinic: Codable, Sendable {
    let slug: String
    let name: String
}
for _ in 1...2 {
    let clinic = try await aside.get("clinic:demo", as: Clinic.self, ttl: .seconds(60)) {
        print("loading clinic:demo from the database")
        return Clinic(slug: "demo", name: "Demo Clinic")
    }
    print("clinic: \(clinic.name)")
}
await aside.invalidate("clinic:demo")
redis?.shutdown()
await database.shutdown()
