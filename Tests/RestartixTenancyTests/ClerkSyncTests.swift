import Foundation
import RestartixCrypto
import RestartixKit
import RestartixPlatform
import RestartixRedis
import RestartixTenancy
import RestartixTestSupport
import Testing

/// ``ClerkSync`` on every backend, Postgres through PgBouncer included: the admin role may make
/// what an event names, and one delivery applied by eight callers at once is applied once.
@Suite("Clerk sync on every backend", .timeLimit(.minutes(3)))
struct ClerkSyncTests {
    /// The admin role's plain database (the platform's own tables) beside `databases`.
    static func platformDatabase(_ backend: TenancyBackend, _ databases: TenancyBackend.Databases) throws -> Database {
        Database(
            configuration: try databases.sqlitePath.map { DatabaseConfiguration(sqlitePath: $0) } ?? DatabaseConfiguration(url: TenancyBackend.require(backend.adminURLName)),
            logger: TenancyBackend.logger
        )
    }

    @Test("one delivery, eight callers at once: applied once; the membership, user and organization made once", arguments: TenancyBackend.all)
    func concurrentDelivery(backend: TenancyBackend) async throws {
        let databases = try await backend.open()
        let suffix = UUIDv7.generate().lowercasedString.suffix(12)
        let org = "org_\(suffix)", user = "user_\(suffix)"
        let event = try JSONSerialization.data(withJSONObject: ["type": "organizationMembership.created", "data": [
            "id": "orgmem_\(suffix)", "role": "org:specialist",
            "organization": ["id": org, "name": "Sync Test Clinic", "slug": "sync-\(suffix)"],
            "public_user_data": ["user_id": user],
        ]] as [String: Any])
        let delivery = "msg_\(suffix)"
        let outcomes = try await withThrowingTaskGroup(of: ClerkSync.Outcome?.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    // A caller that lost a race on Postgres's unique keys gets an error; the
                    // provider's retry then finds the delivery applied.
                    try? await ClerkSync.apply(event, deliveryID: delivery, admin: databases.admin)
                }
            }
            return try await group.reduce(into: [ClerkSync.Outcome?]()) { $0.append($1) }
        }
        #expect(outcomes.filter { $0 == .applied(type: "organizationMembership.created") }.count == 1, "\(backend): \(outcomes)")
        #expect(try await ClerkSync.apply(event, deliveryID: delivery, admin: databases.admin) == .duplicate)
        let rows = try await databases.admin.unscoped(reason: "clerk sync tests: read", actor: .system("tenancy-tests")) { tx in
            try await tx.query("""
                SELECT m.role AS role, o.slug AS slug FROM memberships m JOIN users u ON u.id = m.user_id \
                JOIN organizations o ON o.id = m.organization_id WHERE u.clerk_user_id = \(user) AND o.clerk_organization_id = \(org)
                """).map { "\(try $0.decode("role", as: String.self)) \(try $0.decode("slug", as: String.self))" }
        }
        #expect(rows == ["specialist sync-\(suffix)"])
        try await databases.admin.unscoped(reason: "clerk sync tests: cleanup", actor: .system("tenancy-tests")) { tx in
            try await tx.execute("DELETE FROM organizations WHERE clerk_organization_id = \(org)")
            try await tx.execute("DELETE FROM users WHERE clerk_user_id = \(user)")
        }
        await databases.close()
    }

    @Test("the e-mail suppression list: indexes only, one SES message applied once, on the admin role of every backend", arguments: TenancyBackend.all)
    func suppressionList(backend: TenancyBackend) async throws {
        let databases = try await backend.open()
        let platform = try Self.platformDatabase(backend, databases)
        let list = EmailSuppressions(database: platform, keyring: Keyring.generate().keyring)
        let address = "bounce-\(UUIDv7.generate().lowercasedString.suffix(12))@example.com"
        let message = String(decoding: try JSONSerialization.data(withJSONObject: [
            "notificationType": "Bounce", "bounce": ["bounceType": "Permanent", "bouncedRecipients": [["emailAddress": address.uppercased()]]],
        ]), as: UTF8.self)
        let id = "sns-\(UUIDv7.generate().lowercasedString)"
        let outcomes = try await withThrowingTaskGroup(of: EmailSuppressions.Outcome?.self) { group in
            for _ in 0..<4 { group.addTask { try? await list.apply(sesNotification: message, messageID: id) } }
            return try await group.reduce(into: [EmailSuppressions.Outcome?]()) { $0.append($1) }
        }
        #expect(outcomes.filter { $0 == .suppressed(1) }.count == 1, "\(backend): \(outcomes)")
        #expect(try await list.reason(for: address) == .bounce)
        try await list.add(address, reason: .complaint, source: "tests")
        #expect(try await list.reason(for: address) == .complaint)
        let clear = try await platform.query("SELECT count(*) AS n FROM email_suppressions WHERE CAST(address_index AS TEXT) LIKE \("%" + address.prefix(10) + "%")")
        #expect(try clear.first?.decode("n", as: Int.self) == 0, "no address in clear")
        // The app role has no access to the list.
        let refused = await #expect(throws: DatabaseError.self) { try await databases.raw.query("SELECT count(*) FROM email_suppressions") }
        #expect(refused?.code == .insufficientPrivilege || refused?.code == .syntaxError, "\(backend): \(String(describing: refused))")
        await platform.shutdown()
        await databases.close()
    }

    @Test("last activity: one write per user per interval, on the admin role of every backend", arguments: TenancyBackend.all)
    func activity(backend: TenancyBackend) async throws {
        let databases = try await backend.open()
        let platform = try Self.platformDatabase(backend, databases)
        let user = UUIDv7.generate()
        try await databases.admin.unscoped(reason: "activity tests: a user", actor: .system("tenancy-tests")) { tx in
            try await tx.execute("INSERT INTO users (id) VALUES (\(user))")
        }
        let activity = UserActivity(database: platform, debounce: InProcessActivityDebounce(), interval: .seconds(60), logger: TenancyBackend.logger)
        let writes = await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<10 { group.addTask { await activity.touch(user) } }
            return await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(writes == 1, "\(backend)")
        #expect(try await activity.lastActivity(of: user) != nil)
        // Deleting the user takes its activity with it.
        try await databases.admin.unscoped(reason: "activity tests: cleanup", actor: .system("tenancy-tests")) { tx in
            try await tx.execute("DELETE FROM users WHERE id = \(user)")
        }
        #expect(try await activity.lastActivity(of: user) == nil)
        await platform.shutdown()
        await databases.close()
    }
}
