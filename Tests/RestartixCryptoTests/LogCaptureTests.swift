import Crypto
import Foundation
import InMemoryLogging
import Logging
import RestartixPlatform
import RestartixCrypto
import RestartixKit
import RestartixTenancy
import Testing

/// Everything the crypto path touches — the keyring sources, the databases, the cipher, the
/// patient store, rotation, tokens and webhooks — with one trace-level logger capturing every
/// line, driven through its good and its failing paths. No line, and no error's description,
/// may carry a patient's data, a key or a secret.
@Suite("No PHI or secret in logs", .timeLimit(.minutes(3)))
struct LogCaptureTests {
    @Test("keyring, databases, cipher, patients, rotation, tokens and webhooks at trace: nothing secret in any line or error")
    func everythingAtTrace() async throws {
        let logs = InMemoryLogHandler()
        let logger = {
            var logger = Logger(label: "restartix.tests.log-capture") { _ in logs }
            logger.logLevel = .trace
            return logger
        }()
        var errors: [String] = []
        func record(_ error: any Error) { errors += [String(describing: error), String(reflecting: error)] }

        let (k1, k2, blind, backup) = (SymmetricKey(size: .bits256), SymmetricKey(size: .bits256), SymmetricKey(size: .bits256), SymmetricKey(size: .bits256))
        func base64(_ key: SymmetricKey) -> String { key.withUnsafeBytes { Data($0).base64EncodedString() } }
        func document(_ first: String, _ second: String?) -> String {
            let two = second.map { #",{"id":2,"status":"\#($0)","key":"\#(base64(k2))"}"# } ?? ""
            return #"{"keys":[{"id":1,"status":"\#(first)","key":"\#(base64(k1))"}\#(two)],"blind_index_key":"\#(base64(blind))"}"#
        }
        let tokenSecret = "token-secret-" + String(repeating: "s", count: 40)
        let webhookSecret = "whsec_" + Data((0..<32).map { UInt8($0 * 7 % 251) }).base64EncodedString()
        let pii = PatientPII(name: "Ana Secretescu", dateOfBirth: "1987-03-14", email: "ana.secretescu@example.com", phone: "+40 721 555 019")

        // Keyring sources: good, and every kind of bad.
        let keyring = try await KeyringSource.document(document("primary", nil)).load(backupKey: base64(backup))
        logger.debug("keyring loaded", metadata: ["keyring": "\(keyring)"])
        for bad in [
            document("primary", "primary"), document("active", nil), #"{"keys":[{"id":1,"status":"primary","key":"\#(base64(k1).dropLast(4))"}],"blind_index_key":"\#(base64(blind))"}"#,
        ] {
            do { _ = try await KeyringSource.document(bad).load() } catch { record(error) }
        }
        do { _ = try await KeyringSource.document(document("primary", nil)).load(backupKey: base64(k1)) } catch { record(error) }

        // The databases, the cipher (its warning fires at once) and the patient store.
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("restartix-logs-\(UUID().uuidString).sqlite").path
        defer { for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: file + suffix) } }
        let owner = Database(configuration: DatabaseConfiguration(sqlitePath: file), logger: logger)
        _ = try await Migrator(platformSchemaOn: owner, logger: logger).migrate()
        await owner.shutdown()
        let app = TenantDatabase(configuration: DatabaseConfiguration(sqlitePath: file), tables: PlatformSchema.tenantTables, logger: logger)
        let admin = AdminDatabase(configuration: DatabaseConfiguration(sqlitePath: file), logger: logger)
        let clinic = UUIDv7.generate(), user = UUIDv7.generate()
        try await admin.unscoped(reason: "log capture: a clinic", actor: .system("log-tests")) { tx in
            try await tx.execute("INSERT INTO organizations (id, slug, name) VALUES (\(clinic), 'log-capture-clinic', 'Clinic')")
            try await tx.execute("INSERT INTO users (id) VALUES (\(user))")
            try await tx.execute("INSERT INTO memberships (id, organization_id, user_id, role) VALUES (\(UUIDv7.generate()), \(clinic), \(user), 'specialist')")
        }
        let context = TenantContext(organizationID: clinic, userID: user, role: .specialist)
        let store = PatientStore(cipher: ColumnCipher(keyring: keyring, warningThreshold: 1, logger: logger))
        let id = try await app.withTenant(context) { tx in try await store.insert(pii, in: tx) }
        let found = try await app.withTenant(context) { tx in try await store.find(email: pii.email!, in: tx) }
        #expect(found.map(\.id) == [id])
        do { _ = try await app.withTenant(context) { tx in try await store.insert(PatientPII(name: pii.name, email: "not-an-address"), in: tx) } } catch { record(error) }
        // A value copied into another row fails to open, and says so without the value.
        let other = try await app.withTenant(context) { tx in try await store.insert(PatientPII(name: "Ion"), in: tx) }
        try await admin.unscoped(reason: "log capture: move a value", actor: .system("log-tests")) { tx in
            try await tx.execute("UPDATE patients SET name = (SELECT name FROM patients WHERE id = \(id)) WHERE id = \(other)")
        }
        do { _ = try await app.withTenant(context) { tx in try await store.fetch(other, in: tx) } } catch { record(error) }

        // Rotation: refused with a disabled key in use, then run.
        let rotated = try Keyring(json: Data(document("decrypt-only", "primary").utf8))
        do {
            _ = try await Reencryptor(admin: admin, cipher: ColumnCipher(keyring: try Keyring(json: Data(document("disabled", "primary").utf8)), logger: logger)).run()
        } catch { record(error) }
        let report = try await Reencryptor(admin: admin, cipher: ColumnCipher(keyring: rotated, logger: logger)).run { logger.info("progress", metadata: ["progress": "\($0)"]) }
        logger.info("report", metadata: ["report": "\(report)"])
        #expect(report.failed.values.joined().contains(other), "the moved value is reported by id")
        await app.shutdown()
        await admin.shutdown()

        // Tokens and webhooks: failures describe the check, not the token or the secret.
        let tokens = try SessionTokens(secrets: [tokenSecret])
        let token = try tokens.issue(session: UUID(), organization: clinic, patient: id)
        do { _ = try SessionTokens(secrets: [String(repeating: "x", count: 40)]).verify(token) } catch { record(error) }
        do { _ = try SessionTokens(secrets: ["short"]) } catch { record(error) }
        let verifier = try WebhookVerifier(secrets: [webhookSecret])
        let body = Data(#"{"data":{"email_addresses":[{"email_address":"ana.secretescu@example.com"}]}}"#.utf8)
        do {
            _ = try verifier.verify(body: body) { ["svix-id": "msg_1", "svix-timestamp": "\(Int(Date().timeIntervalSince1970))", "svix-signature": "v1,AAAA"][$0] }
        } catch { record(error) }

        let lines = logs.entries.map { "\($0.level) \($0.message) \($0.metadata)" }
        #expect(lines.contains { $0.contains("Many seals") }, "the cipher's warning was captured")
        #expect(lines.count > 5, "the databases and jobs logged at trace")
        var forbidden = [pii.name, pii.dateOfBirth!, pii.email!, pii.phone!, "Secretescu", tokenSecret, token, webhookSecret, String(webhookSecret.dropFirst(6))]
        for key in [k1, k2, blind, backup] {
            let bytes = key.withUnsafeBytes { Data($0) }
            forbidden += [bytes.base64EncodedString(), bytes.map { String(format: "%02x", $0) }.joined()]
        }
        for (line, text) in (lines + errors).enumerated() {
            for (index, secret) in forbidden.enumerated() {
                #expect(!text.contains(secret), "line \(line) of \(lines.count) logs + \(errors.count) errors carries forbidden string #\(index)")
            }
        }
    }
}
