// The preparation half of Benchmarks/patient-read: seeds one clinic with sealed patients under
// ids a load generator can name, and writes what the two sides of the comparison send: a wrk
// script for `GET /v1/patients/{id}` with a specialist's development token, and a pgbench
// script of the same tenant transaction the Core API runs for it (the kit's own opening
// statements, rendered by `TenantDatabase.openingStatements(_:)`, and `PatientStore`'s select),
// pipelined. The script around it starts the server and runs both.
//
//   RESTARTIX_BENCHMARKS=1 swift run -c release patient-read-benchmark DIR
import BenchmarkSupport
import Foundation
import Logging
import RestartixCrypto
import RestartixKit
import RestartixPlatform
import RestartixTenancy

@main
enum PatientReadBenchmark {
    static let organization = UUID(uuidString: "0193b000-0000-7000-8000-00000000b001")!
    static let specialist = UUID(uuidString: "0193b000-0000-7000-8000-00000000b002")!
    static let patients = 1000

    /// The id of patient `n`: the pattern wrk's script and pgbench's compute too.
    static func patientID(_ n: Int) -> UUID {
        UUID(uuidString: "00000000-0000-7000-8000-" + String(format: "%012x", n))!
    }

    static func main() async throws {
        Bench.name = "patient-read-benchmark"
        guard CommandLine.arguments.count == 2 else { Bench.fail("usage: patient-read-benchmark DIR") }
        let directory = URL(fileURLWithPath: CommandLine.arguments[1])
        var logger = Logger(label: "benchmark")
        logger.logLevel = .error

        let owner = try Database(url: Bench.environment("DATABASE_DIRECT_URL"), logger: logger)
        _ = try await Migrator(platformSchemaOn: owner, logger: logger).migrate()
        await owner.shutdown()
        let admin = AdminDatabase(configuration: try DatabaseConfiguration(url: Bench.environment("DATABASE_ADMIN_DIRECT_URL")), logger: logger)
        try await admin.unscoped(reason: "patient-read benchmark: its clinic", actor: .system("benchmark")) { tx in
            try await tx.execute("INSERT INTO organizations (id, slug, name) VALUES (\(organization), 'bench-patients', 'Benchmark patients') ON CONFLICT DO NOTHING")
            try await tx.execute("INSERT INTO users (id, display_name) VALUES (\(specialist), 'Benchmark Specialist') ON CONFLICT DO NOTHING")
            if try await tx.first("SELECT 1 AS x FROM memberships WHERE organization_id = \(organization) AND user_id = \(specialist)") == nil {
                try await tx.execute("INSERT INTO memberships (id, organization_id, user_id, role) VALUES (\(UUIDv7.generate()), \(organization), \(specialist), 'specialist')")
            }
        }
        await admin.shutdown()

        let keyring = try Keyring(json: Data(Bench.environment("ENCRYPTION_KEYS").utf8))
        let store = PatientStore(cipher: ColumnCipher(keyring: keyring))
        let tenants = TenantDatabase(configuration: try DatabaseConfiguration(url: Bench.environment("DATABASE_APP_URL")), tables: PlatformSchema.tenantTables, logger: logger)
        let context = TenantContext(organizationID: organization, userID: specialist, role: .specialist)
        let present = try await tenants.query(context, "SELECT count(*) AS n FROM patients")[0].decode("n", as: Int.self)
        if present < patients {
            Bench.say("seeding \(patients) sealed patients")
            for n in 1...patients {
                try await tenants.withTenant(context) { tx in
                    guard try await tx.first("SELECT 1 AS x FROM patients WHERE id = \(patientID(n))") == nil else { return }
                    _ = try await store.insert(
                        PatientPII(name: "Patient \(n) Benchmark", dateOfBirth: "1980-01-01", email: "patient\(n)@example.com", phone: "+40 700 000 \(n % 1000)"),
                        id: patientID(n), in: tx
                    )
                }
            }
        }

        // pgbench: the Core API's transaction for the read, pipelined (one round trip).
        let opening = tenants.openingStatements(context)
        let (contextSQL, binds) = Bench.pgbenchVariables(opening.context.sql, opening.context.binds.map { $0.textValue ?? "" })
        await tenants.shutdown()
        let pgbench = """
            \\set n random(1, \(patients))
            \\startpipeline
            \(opening.begin);
            \(contextSQL);
            \(PatientStore.select) WHERE id = ('00000000-0000-7000-8000-' || lpad(to_hex(:n::integer), 12, '0'))::uuid AND deleted_at IS NULL;
            END;
            \\endpipeline

            """
        try pgbench.write(to: directory.appendingPathComponent("pipelined.sql"), atomically: true, encoding: .utf8)
        try binds.joined(separator: "\n").write(to: directory.appendingPathComponent("pgbench-binds"), atomically: true, encoding: .utf8)

        // wrk: the same reads through the API, as the specialist.
        let issuer = try await LocalDevIssuer(environment: .test, secret: Bench.environment("RESTARTIX_DEV_TOKEN_SECRET"))
        let token = try await issuer.issue(user: specialist, organization: organization, lifetime: .seconds(3600))
        let lua = """
            local token = "\(token)"
            request = function()
              local n = math.random(1, \(patients))
              return wrk.format("GET", string.format("/v1/patients/00000000-0000-7000-8000-%012x", n), {["Authorization"] = "Bearer " .. token})
            end

            """
        try lua.write(to: directory.appendingPathComponent("read.lua"), atomically: true, encoding: .utf8)
        try token.write(to: directory.appendingPathComponent("token"), atomically: true, encoding: .utf8)
        Bench.say("prepared: \(patients) patients in one clinic; wrk and pgbench scripts in \(directory.path)")
    }
}
