import ArgumentParser
import Foundation
@testable import Jobs
import Logging
import RestartixCrypto
import RestartixKit
import RestartixPlatform
import RestartixProviders
import RestartixTenancy
import RestartixTestSupport
import Testing

extension JobsTests {
    @Test("appointment-followups on the embedded default: a due room is made once through the clinic's Daily, a confirmation with no address skipped; the next run finds nothing; bad --limit refused")
    func appointmentFollowups() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        // The embedded default's directory holds keys: private, or the job refuses it.
        try FileManager.default.setAttributes([.posixPermissions: 0o700], ofItemAtPath: dir.path)
        let path = dir.appendingPathComponent("restartix.sqlite").path
        _ = try await job(Migrate.self, ["--database-url", "sqlite://" + path])
        // The embedded default's own keyring, beside the file, as the Core API makes it.
        let logger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }
        let keyring = try await PlatformBoot.localKeyring(in: dir, logger: logger)
        let daily = try await DailyAPIStub.start()
        defer { daily.stop() }

        let clinic = UUIDv7.generate(), owner = UUIDv7.generate(), specialist = UUIDv7.generate()
        let admin = AdminDatabase(configuration: DatabaseConfiguration(sqlitePath: path), logger: logger)
        let tenants = TenantDatabase(configuration: DatabaseConfiguration(sqlitePath: path), tables: PlatformSchema.tenantTables, logger: logger)
        let platform = Database(configuration: DatabaseConfiguration(sqlitePath: path), logger: logger)
        let appointment = UUIDv7.generate(), broken = UUIDv7.generate()
        do {
            try await admin.unscoped(reason: "test: a clinic of its own", actor: .system("tests")) { tx in
                try await tx.execute("INSERT INTO organizations (id, slug, name) VALUES (\(clinic), 'jobs-clinic', 'Jobs Clinic')")
                for (user, role) in [(owner, "owner"), (specialist, "specialist")] {
                    try await tx.execute("INSERT INTO users (id) VALUES (\(user))")
                    try await tx.execute("INSERT INTO memberships (id, organization_id, user_id, role) VALUES (\(UUIDv7.generate()), \(clinic), \(user), \(role))")
                }
            }
            let context = TenantContext(organizationID: clinic, userID: owner, role: .owner)
            let patients = Patients(tenants: tenants, cipher: ColumnCipher(keyring: keyring))
            let patient = try await patients.create(PatientPII(name: "No Mail"), as: context)
            // A patient whose sealed address no longer opens (a damaged value): its confirmation
            // fails alone, recorded on its row, and the pass goes on.
            let damaged = try await patients.create(PatientPII(name: "Damaged", email: "damaged@example.com"), as: context)
            try await admin.withOrganization(clinic, actor: .system("tests")) { tx in
                try await tx.execute("UPDATE patients SET email = \(Data([0x01])) WHERE id = \(damaged.id)")
            }
            let start = Date().addingTimeInterval(86_400).timeIntervalSince1970.rounded(.down)
            let starts = Date(timeIntervalSince1970: start - start.truncatingRemainder(dividingBy: 1800))
            try await tenants.withTenant(context) { tx in
                for (id, who, kind, offset) in [(appointment, patient.id, "video", 0.0), (broken, damaged.id, "in_person", 3600.0)] {
                    let slot = "appt:jobs:" + id.lowercasedString
                    try await tx.execute("""
                        INSERT INTO appointments (id, organization_id, patient_id, specialist_user_id, starts_at, ends_at, kind, status, slot, booked_slot, fence) \
                        VALUES (\(id), \(clinic), \(who), \(specialist), \(starts.addingTimeInterval(offset)), \(starts.addingTimeInterval(offset + 1800)), \
                        \(kind), 'booked', \(slot), \(slot), 1)
                        """)
                }
            }
            try await ProviderRegistry(database: platform, cipher: ColumnCipher(keyring: keyring)).insertIfAbsent(
                .video, organization: clinic, kind: .daily, config: ["api_url": daily.baseURL], secrets: ProviderSecrets(["api_key": daily.apiKey])
            )
        } catch {
            await admin.shutdown(); await tenants.shutdown(); await platform.shutdown()
            throw error
        }
        await admin.shutdown(); await tenants.shutdown(); await platform.shutdown()

        // No DATABASE_URL and no --database-url: the embedded default, its local keyring.
        let environment = ["RESTARTIX_SQLITE_PATH": path]
        let output = Output()
        let first = try await job(AppointmentFollowupsJob.self, [], environment: environment, output: output)
        #expect(first.due == 3 && first.busy == 0)
        let outcomes = Dictionary(uniqueKeysWithValues: first.outcomes.map { ("\($0.kind) \($0.appointmentID == appointment ? "ok" : "damaged")", $0) })
        #expect(outcomes["video_room ok"]?.state == "done")
        #expect(outcomes["confirmation_email ok"]?.state == "skipped" && outcomes["confirmation_email ok"]?.reason == "the patient has no e-mail address")
        let damagedOutcome = outcomes["confirmation_email damaged"]
        #expect(damagedOutcome?.state == "pending" && damagedOutcome?.reason?.hasPrefix("encryption.") == true, "\(String(describing: damagedOutcome))")
        #expect(daily.rooms["rx-" + appointment.lowercasedString]?.privacy == "private")
        let again = try await job(AppointmentFollowupsJob.self, ["--limit", "10"], environment: environment, output: output)
        #expect(again.due == 0 && again.outcomes.isEmpty)
        #expect(AppointmentFollowupsJob().lines(again).last == "appointment-followups: 0 due, 0 done, 0 skipped, 0 to retry, 0 given up, 0 left to another worker")
        #expect(!output.all.contains(daily.apiKey), "no report, line or log carries the key")
        #expect(daily.violations.isEmpty, "\(daily.violations)")
        for bad in [["--limit", "0"], ["--limit", "10001"]] {
            #expect(throws: (any Error).self, "\(bad)") { try AppointmentFollowupsJob.parse(bad) }
        }
    }
}
