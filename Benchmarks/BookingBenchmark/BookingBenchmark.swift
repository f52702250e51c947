// The preparation half of Benchmarks/booking: seeds one clinic with an owner, a specialist and
// one sealed patient per load connection, and writes what the two sides of the comparison
// send: a wrk script in which each connection books its own slot over and over (hold, book with
// the hold, cancel: a cycle), as the clinic's owner; and a pgbench script of the database
// transactions one cycle runs through the app role (the kit's own opening statements, rendered
// by `TenantDatabase.openingStatements(_:)`, and the statements `Appointments` sends), each
// pipelined. The script around it starts the server and runs both.
//
//   RESTARTIX_BENCHMARKS=1 swift run -c release booking-benchmark DIR CONNECTIONS
import BenchmarkSupport
import Foundation
import Logging
import RestartixCrypto
import RestartixKit
import RestartixPlatform
import RestartixTenancy

@main
enum BookingBenchmark {
    static let organization = UUID(uuidString: "0193b000-0000-7000-8000-00000000c001")!
    static let owner = UUID(uuidString: "0193b000-0000-7000-8000-00000000c002")!
    static let specialist = UUID(uuidString: "0193b000-0000-7000-8000-00000000c003")!

    /// The patient of connection `n` (1-based).
    static func patientID(_ n: Int) -> UUID {
        UUID(uuidString: "00000000-0000-7000-8000-0000000c" + String(format: "%04x", n))!
    }

    static func main() async throws {
        Bench.name = "booking-benchmark"
        guard CommandLine.arguments.count == 3, let connections = Int(CommandLine.arguments[2]), (1...64).contains(connections) else {
            Bench.fail("usage: booking-benchmark DIR CONNECTIONS (1-64)")
        }
        let directory = URL(fileURLWithPath: CommandLine.arguments[1])
        var logger = Logger(label: "benchmark")
        logger.logLevel = .error

        let migrator = try Database(url: Bench.environment("DATABASE_DIRECT_URL"), logger: logger)
        _ = try await Migrator(platformSchemaOn: migrator, logger: logger).migrate()
        await migrator.shutdown()
        let admin = AdminDatabase(configuration: try DatabaseConfiguration(url: Bench.environment("DATABASE_ADMIN_DIRECT_URL")), logger: logger)
        try await admin.unscoped(reason: "booking benchmark: its clinic", actor: .system("benchmark")) { tx in
            try await tx.execute("INSERT INTO organizations (id, slug, name) VALUES (\(organization), 'bench-bookings', 'Benchmark bookings') ON CONFLICT DO NOTHING")
            for (user, role) in [(owner, "owner"), (specialist, "specialist")] {
                try await tx.execute("INSERT INTO users (id, display_name) VALUES (\(user), \("Benchmark " + role)) ON CONFLICT DO NOTHING")
                if try await tx.first("SELECT 1 AS x FROM memberships WHERE organization_id = \(organization) AND user_id = \(user)") == nil {
                    try await tx.execute("INSERT INTO memberships (id, organization_id, user_id, role) VALUES (\(UUIDv7.generate()), \(organization), \(user), \(role))")
                }
            }
        }
        await admin.shutdown()

        let keyring = try Keyring(json: Data(Bench.environment("ENCRYPTION_KEYS").utf8))
        let store = PatientStore(cipher: ColumnCipher(keyring: keyring))
        let tenants = TenantDatabase(configuration: try DatabaseConfiguration(url: Bench.environment("DATABASE_APP_URL")), tables: PlatformSchema.tenantTables, logger: logger)
        let context = TenantContext(organizationID: organization, userID: owner, role: .owner)
        for n in 1...connections {
            try await tenants.withTenant(context) { tx in
                guard try await tx.first("SELECT 1 AS x FROM patients WHERE id = \(patientID(n))") == nil else { return }
                _ = try await store.insert(PatientPII(name: "Booking Patient \(n)"), id: patientID(n), in: tx)
            }
        }

        // pgbench: one cycle's app-role transactions, each pipelined (one round trip): the
        // patient check of the hold and of the booking, the booking (patient, insert, audit,
        // read back), the cancellation (read, update, audit, read back). A slot of its own for
        // every cycle; the appointment's id is the cycle's.
        let opening = tenants.openingStatements(context)
        let (contextSQL, binds) = Bench.pgbenchVariables(opening.context.sql, opening.context.binds.map { $0.textValue ?? "" })
        await tenants.shutdown()
        func transaction(_ statements: [String]) -> String {
            (["\\startpipeline", "\(opening.begin);", "\(contextSQL);"] + statements.map { $0 + ";" } + ["END;", "\\endpipeline"]).joined(separator: "\n")
        }
        let patient = "('00000000-0000-7000-8000-0000000c' || lpad(to_hex(:n::integer), 4, '0'))::uuid"
        let check = "SELECT 1 AS found FROM patients WHERE id = \(patient) AND deleted_at IS NULL"
        let audit = { (action: String) in
            """
            INSERT INTO audit_log (id, organization_id, actor_user_id, actor_kind, action, action_context, resource_type, resource_id) \
            VALUES (gen_random_uuid(), '\(organization.lowercasedString)', '\(owner.lowercasedString)', 'user', '\(action)', 'normal', 'appointment', ('00000000-0000-7000-8000-' || lpad(to_hex(:cycle::bigint), 12, '0'))::uuid)
            """
        }
        let select = "SELECT id, organization_id, patient_id, specialist_user_id, starts_at, ends_at, kind, status, fence, created_at, updated_at, canceled_at FROM appointments WHERE id = ('00000000-0000-7000-8000-' || lpad(to_hex(:cycle::bigint), 12, '0'))::uuid"
        let pgbench = [
            "\\set n random(1, \(connections))",
            "\\set cycle random(1, 281474976710655)",
            transaction([check]),
            transaction([check]),
            // The cycle's own slot and appointment id, from `:cycle` (48 random bits).
            transaction([
                "SELECT user_id FROM patients WHERE id = \(patient) AND deleted_at IS NULL",
                """
                INSERT INTO appointments (id, organization_id, patient_id, patient_user_id, specialist_user_id, starts_at, ends_at, kind, status, slot, booked_slot, fence) \
                VALUES (('00000000-0000-7000-8000-' || lpad(to_hex(:cycle::bigint), 12, '0'))::uuid, '\(organization.lowercasedString)', \(patient), NULL, '\(specialist.lowercasedString)', now() + interval '1 day', \
                now() + interval '1 day 30 minutes', 'in_person', 'booked', 'bench:' || :cycle, 'bench:' || :cycle, 1)
                """,
                audit("appointment.book"),
                select,
            ]),
            transaction([
                select,
                "UPDATE appointments SET status = 'canceled', booked_slot = NULL, canceled_at = now(), updated_at = now() WHERE id = ('00000000-0000-7000-8000-' || lpad(to_hex(:cycle::bigint), 12, '0'))::uuid AND status = 'booked'",
                audit("appointment.cancel"),
                select,
            ]),
            "",
        ].joined(separator: "\n")
        try pgbench.write(to: directory.appendingPathComponent("cycle.sql"), atomically: true, encoding: .utf8)
        try binds.joined(separator: "\n").write(to: directory.appendingPathComponent("pgbench-binds"), atomically: true, encoding: .utf8)

        // wrk: one connection a thread, each its own patient and slot, hold -> book -> cancel.
        let issuer = try await LocalDevIssuer(environment: .test, secret: Bench.environment("RESTARTIX_DEV_TOKEN_SECRET"))
        let token = try await issuer.issue(user: owner, organization: organization, lifetime: .seconds(3600))
        // Slots on the 30-minute grid from tomorrow plus a random number of days (another run of
        // the benchmark left holds and bookings behind): six rounds of fifty slots a connection
        // after it, inside the year ahead that bookings may reach.
        let span = 6 * 50 * connections * 1800
        let days = max(1, (300 * 86_400 - span) / 86_400)
        let firstSlot = (Int(Date().timeIntervalSince1970) / 1800 + 48) * 1800 + Int.random(in: 0..<days) * 86_400
        let patients = (1...connections).map { "\"\(patientID($0).lowercasedString)\"" }.joined(separator: ", ")
        let lua = """
            local token = "\(token)"
            local specialist = "\(specialist.lowercasedString)"
            local patients = { \(patients) }
            local first_slot = \(firstSlot)
            local threads = {}
            local count = 0

            function setup(thread)
              count = count + 1
              thread:set("id", count)
              table.insert(threads, thread)
            end

            -- Each run (BOOKING_ROUND) and each connection its own slots: a hold or booking an
            -- earlier run left behind takes nothing from this one.
            local round = tonumber(os.getenv("BOOKING_ROUND") or "0")
            local slot = 0

            local function next_slot()
              start = os.date("!%Y-%m-%dT%H:%M:%SZ", first_slot + ((round * 50 + slot) * #patients + (id - 1)) * 1800)
              slot = slot + 1
            end

            function init(args)
              patient = patients[id]
              next_slot()
              state = "hold"
              cycles = 0
              failures = 0
              codes = ""
            end

            local function post(path, body)
              return wrk.format("POST", path, { ["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json" }, body)
            end

            function request()
              if state == "hold" then
                return post("/v1/appointments/holds", string.format('{"patient_id":"%s","specialist_id":"%s","starts_at":"%s"}', patient, specialist, start))
              elseif state == "book" then
                return post("/v1/appointments", string.format(
                  '{"hold":{"token":"%s","fence":%s,"store":"%s"},"patient_id":"%s","specialist_id":"%s","starts_at":"%s","kind":"in_person"}',
                  hold_token, fence, store, patient, specialist, start))
              else
                return post("/v1/appointments/" .. appointment .. "/cancel", "")
              end
            end

            function response(status, headers, body)
              if state == "hold" and status == 201 then
                hold_token = body:match('"token":"([^"]+)"')
                fence = body:match('"fence":(%d+)')
                store = body:match('"store":"(%a+)"')
                state = "book"
              elseif state == "book" and status == 201 then
                appointment = body:match('"id":"([^"]+)"')
                state = "cancel"
              elseif state == "cancel" and status == 200 then
                cycles = cycles + 1
                state = "hold"
              else
                -- Counted, with its problem code; the connection moves on to a slot of its own.
                failures = failures + 1
                codes = codes .. " " .. state .. ":" .. (body:match('"code":"([^"]+)"') or tostring(status))
                state = "hold"
                next_slot()
              end
            end

            function done(summary, latency, requests)
              local total, failed, codes = 0, 0, ""
              for _, thread in ipairs(threads) do
                total = total + thread:get("cycles")
                failed = failed + thread:get("failures")
                codes = codes .. thread:get("codes")
              end
              io.write(string.format("cycles %d failures %d seconds %.3f\\n", total, failed, summary.duration / 1e6))
              if failed > 0 then io.write("failed steps:" .. codes:sub(1, 2000) .. "\\n") end
            end

            """
        try lua.write(to: directory.appendingPathComponent("booking.lua"), atomically: true, encoding: .utf8)
        Bench.say("prepared: \(connections) patients and slots in one clinic; wrk and pgbench scripts in \(directory.path)")
    }
}
