import Crypto
import Foundation
import RestartixPlatform
import RestartixAWS
import RestartixCrypto
import RestartixKit
import RestartixTestSupport
import Testing

/// The AWS keyring sources against moto_server (Scripts/services): Secrets Manager holding the
/// document, and a KMS keyring document whose keys are KMS blobs.
@Suite("Keyring sources on AWS (moto)", .timeLimit(.minutes(3)))
struct AWSKeyringSourceTests {
    /// moto's AWS configuration, or `nil` when moto is not configured (a failure under CI=true).
    static func aws() throws -> AWSConfiguration? {
        guard RequiredServices.shouldRun("AWS_ENDPOINT_URL") else { return nil }
        let endpoint = try RequiredServices.require("AWS_ENDPOINT_URL")
        return AWSConfiguration(
            region: "us-east-1", credentials: .static(AWSCredentials(accessKeyID: "testing", secretAccessKey: "testing")), defaultEndpoint: URL(string: endpoint)
        )
    }

    @Test("Secrets Manager: the document itself, or ENCRYPTION_KEYS inside a secret of several values")
    func secretsManager() async throws {
        guard let aws = try Self.aws() else { return }
        let client = try await SecretsManagerClient(aws)
        let (keyring, document) = Keyring.generate()
        let plain = "restartix/test/encryption-\(UUID().uuidString)"
        try await client.createSecret(name: plain, value: document)
        #expect(try await KeyringSource.secretsManager(secretID: plain, aws: aws).load().primaryID == keyring.primaryID)
        let wrapped = "restartix/test/encryption-wrapped-\(UUID().uuidString)"
        let backup = SymmetricKey(size: .bits256)
        let object = try JSONSerialization.data(withJSONObject: ["ENCRYPTION_KEYS": document, "BACKUP_ENCRYPTION_KEY": backup.withUnsafeBytes { Data($0) }.base64EncodedString()])
        try await client.createSecret(name: wrapped, value: String(decoding: object, as: UTF8.self))
        let loaded = try await KeyringSource.secretsManager(secretID: wrapped, aws: aws).load()
        #expect(loaded.backupKey == backup, "BACKUP_ENCRYPTION_KEY beside ENCRYPTION_KEYS in the secret")
        let badBackup = "restartix/test/encryption-bad-backup-\(UUID().uuidString)"
        let badObject = try JSONSerialization.data(withJSONObject: ["ENCRYPTION_KEYS": document, "BACKUP_ENCRYPTION_KEY": "backup"])
        try await client.createSecret(name: badBackup, value: String(decoding: badObject, as: UTF8.self))
        let refused = await #expect(throws: EncryptionError.self) { try await KeyringSource.secretsManager(secretID: badBackup, aws: aws).load() }
        #expect(refused?.detail.contains("the secret's BACKUP_ENCRYPTION_KEY") == true)
        // The same keys: a value sealed under one opens under the other.
        let place = ColumnPlace(table: "patients", column: "name", organizationID: UUID(), rowID: UUID())
        #expect(try ColumnCipher(keyring: loaded).openString(try ColumnCipher(keyring: keyring).seal("Ana", at: place), at: place) == "Ana")
        let missing = await #expect(throws: EncryptionError.self) {
            try await KeyringSource.secretsManager(secretID: plain + "-missing", aws: aws).load()
        }
        #expect(missing?.code == .keyringUnavailable)
        #expect(missing?.description.contains("ResourceNotFoundException") == true)
        var nowhere = aws
        nowhere.defaultEndpoint = URL(string: "http://127.0.0.1:1")
        let unreachable = await #expect(throws: EncryptionError.self) {
            try await KeyringSource.secretsManager(secretID: plain, aws: nowhere).load()
        }
        #expect(unreachable?.code == .keyringUnavailable && unreachable?.detail.contains(plain) == true)
    }

    @Test("KMS: data-key blobs opened at boot; a blob moved to another key id does not open")
    func kms() async throws {
        guard let aws = try Self.aws() else { return }
        let kms = try await KMSClient(aws)
        let master = try await kms.createKey(description: "restartix keyring test")
        let old = SymmetricKey(size: .bits256), new = SymmetricKey(size: .bits256), blind = SymmetricKey(size: .bits256)
        func blob(_ key: SymmetricKey, _ context: [String: String]) async throws -> String {
            try await kms.encrypt(key.withUnsafeBytes { Data($0) }, keyID: master, encryptionContext: context).base64EncodedString()
        }
        let oldBlob = try await blob(old, KMSKeyring.context(keyID: 1))
        let document = """
            {"kms_key_id":"\(master)","keys":[
            {"id":1,"status":"decrypt-only","encrypted_key":"\(oldBlob)"},
            {"id":2,"status":"primary","encrypted_key":"\(try await blob(new, KMSKeyring.context(keyID: 2)))"}],
            "encrypted_blind_index_key":"\(try await blob(blind, KMSKeyring.blindIndexContext))"}
            """
        let keyring = try await KeyringSource.kms(.document(document, name: "ENCRYPTION_KEYS_KMS"), aws: aws).load()
        #expect(keyring.primaryID == 2)
        #expect(keyring.backupKey == nil)

        // The backup key as a blob of its own purpose; the blind-index blob cannot stand in for it.
        let backup = SymmetricKey(size: .bits256)
        func withBackup(_ blob: String) -> String {
            document.replacingOccurrences(of: #""encrypted_blind_index_key""#, with: #""encrypted_backup_encryption_key":"\#(blob)","encrypted_blind_index_key""#)
        }
        let backed = try await KeyringSource.kms(.document(withBackup(try await blob(backup, KMSKeyring.backupKeyContext)), name: "ENCRYPTION_KEYS_KMS"), aws: aws).load()
        #expect(backed.backupKey == backup)
        let wrongPurpose = await #expect(throws: EncryptionError.self) {
            try await KeyringSource.kms(.document(withBackup(try await blob(backup, KMSKeyring.blindIndexContext)), name: "ENCRYPTION_KEYS_KMS"), aws: aws).load()
        }
        #expect(wrongPurpose?.detail.contains("the backup key") == true)
        let place = ColumnPlace(table: "patients", column: "email", organizationID: UUID(), rowID: UUID())
        let reference = try Keyring(keys: [(1, .decryptOnly, old), (2, .primary, new)], blindIndexKey: blind)
        #expect(try ColumnCipher(keyring: keyring).openString(try ColumnCipher(keyring: reference).seal("x@y.z", at: place), at: place) == "x@y.z")

        // Key 1's blob relabelled as key 3: its encryption context no longer matches.
        let moved = document.replacingOccurrences(of: #"{"id":1,"status":"decrypt-only""#, with: #"{"id":3,"status":"decrypt-only""#)
        let error = await #expect(throws: EncryptionError.self) {
            try await KeyringSource.kms(.document(moved, name: "ENCRYPTION_KEYS_KMS"), aws: aws).load()
        }
        #expect(error?.code == .keyringUnavailable)
        #expect(error?.detail.contains("key 3") == true)
        #expect(error.map { !$0.description.contains(oldBlob) } == true)

        // A clinic's own key: its blob names the clinic, so it cannot be moved to another one.
        let clinic = UUID(), other = UUID()
        let clinicBlob = try await blob(SymmetricKey(size: .bits256), KMSKeyring.context(keyID: 7, organizationID: clinic))
        func withClinicKey(_ organization: UUID) async throws -> String {
            """
            {"kms_key_id":"\(master)","keys":[
            {"id":2,"status":"primary","encrypted_key":"\(try await blob(new, KMSKeyring.context(keyID: 2)))"},
            {"id":7,"status":"primary","organization_id":"\(organization.uuidString.lowercased())","encrypted_key":"\(clinicBlob)"}],
            "encrypted_blind_index_key":"\(try await blob(blind, KMSKeyring.blindIndexContext))"}
            """
        }
        let withClinic = try await withClinicKey(clinic)
        let byok = try await KeyringSource.kms(.document(withClinic, name: "ENCRYPTION_KEYS_KMS"), aws: aws).load()
        #expect(byok.primary(for: clinic).id == 7)
        let stolen = try await withClinicKey(other)
        await #expect(throws: EncryptionError.self) {
            try await KeyringSource.kms(.document(stolen, name: "ENCRYPTION_KEYS_KMS"), aws: aws).load()
        }
    }
}
