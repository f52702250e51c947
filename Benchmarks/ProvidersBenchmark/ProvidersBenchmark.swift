import BenchmarkSupport
import Foundation
import Logging
import RestartixPlatform
import RestartixCrypto
import RestartixKit
import RestartixProviders

/// The provider resolver's cached path, per call, beside a plain dictionary lookup of the same
/// record timed the same way in the same run (the limit: what any cache costs at least); and
/// the cold stampede: 1,000 concurrent callers on a key that is not cached, counting database
/// reads. Targets: cached median < 1 µs; 1 read per stampede.
///
/// Runs on an embedded SQLite file, or on a migrated Postgres when BENCH_DATABASE_URL names one
/// (the admin role, e.g. $DATABASE_ADMIN_DIRECT_URL from Scripts/services env).
@main
struct ProvidersBenchmark {
    static func main() async throws {
        Bench.name = "providers-benchmark"
        var logger = Logger(label: "providers-benchmark")
        logger.logLevel = .warning
        let calls = Int(ProcessInfo.processInfo.environment["BENCH_CALLS"] ?? "1000000") ?? 1_000_000
        let database: Database
        if let url = ProcessInfo.processInfo.environment["BENCH_DATABASE_URL"], !url.isEmpty {
            database = try Database(url: url, logger: logger)  // already migrated (Scripts/services up)
        } else {
            let path = FileManager.default.temporaryDirectory.appendingPathComponent("providers-benchmark-\(getpid()).sqlite").path
            database = Database(configuration: DatabaseConfiguration(sqlitePath: path), logger: logger)
            _ = try await Migrator(platformSchemaOn: database, logger: logger).migrate()
        }
        let registry = ProviderRegistry(database: database, cipher: ColumnCipher(keyring: Keyring.generate().keyring))
        let capability = try ProviderCapability("bench_" + UUID().uuidString.prefix(8).lowercased())
        try await registry.insertIfAbsent(capability, kind: .anthropic, config: ["api_url": "https://api.anthropic.com"], secrets: ProviderSecrets(["api_key": "sk-bench"]))
        let resolver = ProviderResolver(registry: registry, logger: logger)
        let record = try await resolver.provider(for: capability)

        // Cached resolves, each call timed (the clock read is in both columns).
        var kit = [UInt64](repeating: 0, count: calls)
        for i in 0..<calls {
            let start = DispatchTime.now().uptimeNanoseconds
            let found = try await resolver.provider(for: capability)
            kit[i] = DispatchTime.now().uptimeNanoseconds - start
            if found.version != record.version { Bench.fail("the cached record changed") }
        }
        struct Key: Hashable { let capability: String; let organization: UUID? }
        let dictionary: [Key: ProviderRecord] = [Key(capability: capability.name, organization: nil): record]
        var plain = [UInt64](repeating: 0, count: calls)
        for i in 0..<calls {
            let start = DispatchTime.now().uptimeNanoseconds
            let found = dictionary[Key(capability: capability.name, organization: nil)]
            plain[i] = DispatchTime.now().uptimeNanoseconds - start
            if found?.version != record.version { Bench.fail("the dictionary lost the record") }
        }
        func percentile(_ values: [UInt64], _ p: Double) -> Double { Double(values.sorted()[min(values.count - 1, Int(Double(values.count) * p))]) }
        let kitMedian = percentile(kit, 0.5), kitP99 = percentile(kit, 0.99)
        let plainMedian = percentile(plain, 0.5), plainP99 = percentile(plain, 0.99)
        Bench.say("providers-benchmark: \(calls) cached resolves, each timed; limit = a dictionary lookup of the same record, timed the same way, same run")
        Bench.say(String(format: "  cached resolve: median %.0f ns, p99 %.0f ns | dictionary: median %.0f ns, p99 %.0f ns | median ratio %.2f | target median < 1000 ns: %@",
                         kitMedian, kitP99, plainMedian, plainP99, kitMedian / max(plainMedian, 1), kitMedian < 1000 ? "met" : "MISSED"))

        // Cold stampedes: 1,000 callers on an invalidated key, ten times.
        var reads: [Int] = []
        for _ in 0..<10 {
            resolver.invalidate(capability)
            let before = resolver.statistics.loads
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<1000 { group.addTask { _ = try await resolver.provider(for: capability) } }
                try await group.waitForAll()
            }
            reads.append(resolver.statistics.loads - before)
        }
        Bench.say("  cold stampede, 1,000 concurrent callers x 10: database reads per stampede \(reads) | target 1: \(reads.allSatisfy { $0 == 1 } ? "met" : "MISSED")")
        _ = try await database.execute("DELETE FROM platform_service_providers WHERE capability = \(capability.name)")
        await database.shutdown()
    }
}
