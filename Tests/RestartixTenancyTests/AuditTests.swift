import Foundation
import RestartixKit
import RestartixTenancy
import Testing

/// Audit rows: written in the writer's transaction, attributed to the writer only, never changed.
@Suite("Audit log", .timeLimit(.minutes(3)))
struct AuditTests {
    @Test("tx.audit writes a row for the context; a forged actor is refused; rows cannot change", arguments: TenancyBackend.all)
    func auditRows(backend: TenancyBackend) async throws {
        let databases = try await backend.open()
        let fixture = try await TenancyFixture.make(admin: databases.admin)
        let staff = fixture.context(staffOf: fixture.a)
        let record = UUIDv7.generate()
        try await databases.app.withTenant(staff) { tx in
            try await tx.audit(AuditEvent(action: "patient.view", resourceType: "patient", resourceID: record, metadata: ["fields": "name"]))
        }
        let patient = fixture.context(patient: fixture.a1, in: fixture.a)
        try await databases.app.withTenant(patient) { tx in
            try await tx.audit(AuditEvent(action: "telemetry.upload"))
        }
        let rows = try await databases.app.query(staff, "SELECT actor_user_id, action, action_context FROM audit_log WHERE resource_id = \(record)")
        #expect(rows.count == 1)
        #expect(try rows.first?.decode("actor_user_id", as: UUID.self) == fixture.a.staffUser)
        #expect(try rows.first?.decode("action_context", as: String.self) == "normal")

        // Someone else's name on an audit row, or a platform context: refused.
        for (actor, kind, actionContext) in [
            (fixture.a2.user, "user", "normal"), (fixture.a.staffUser, "system", "normal"), (fixture.a.staffUser, "user", "platform_admin"),
        ] {
            let error = await #expect(throws: DatabaseError.self) {
                try await databases.app.execute(staff, """
                    INSERT INTO audit_log (id, organization_id, actor_user_id, actor_kind, action, action_context) \
                    VALUES (\(UUIDv7.generate()), \(fixture.a.id), \(actor), \(kind), 'forged', \(actionContext))
                    """)
            }
            #expect(error?.code == .rowLevelSecurityViolation, "\(backend) \(kind) \(actionContext)")
        }
        let change = await #expect(throws: DatabaseError.self) {
            try await databases.app.execute(staff, "UPDATE audit_log SET action = 'changed' WHERE resource_id = \(record)")
        }
        #expect(change?.code == .insufficientPrivilege)

        // Unscoped admin access leaves its own row: actor and reason.
        // A reason of this run's own: the backends share the Postgres schema and run at once.
        let reason = "count clinics for the audit test \(UUID().uuidString.prefix(8))"
        let before = try await Self.unscopedRows(databases.admin, reason: reason)
        try await databases.admin.unscoped(reason: reason, actor: .system("audit-tests")) { tx in
            try await tx.query("SELECT count(*) FROM organizations")
        }
        #expect(try await Self.unscopedRows(databases.admin, reason: reason) == before + 1)
        await #expect(throws: TenancyError.self) {
            try await databases.admin.unscoped(reason: "short", actor: .system("audit-tests")) { _ in }
        }
        try await fixture.remove(admin: databases.admin)
        await databases.close()
    }

    static func unscopedRows(_ admin: AdminDatabase, reason: String) async throws -> Int {
        try await admin.unscoped(reason: "count unscoped-access audit rows", actor: .system("audit-tests")) { tx in
            try await tx.first("""
                SELECT count(*) AS n FROM audit_log WHERE action = 'platform.unscoped_access' \
                AND CAST(metadata AS TEXT) LIKE \("%" + reason + "%")
                """)?.decode("n", as: Int.self) ?? 0
        }
    }
}
