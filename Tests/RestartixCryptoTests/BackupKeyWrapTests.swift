import Crypto
import Foundation
import RestartixCrypto
import RestartixKit
import Testing

@Suite("Backup data keys wrapped under BACKUP_ENCRYPTION_KEY")
struct BackupKeyWrapTests {
    static let envelope = SymmetricKey(data: Array(0..<32) as [UInt8])

    @Test("the key id is HMAC-SHA256 of a fixed label, 16 hex digits (checked with Python's hmac)")
    func keyID() {
        #expect(WrappedBackupKey.keyID(of: Self.envelope) == "eb21d62a49a7efd7")
        #expect(WrappedBackupKey.keyID(of: SymmetricKey(size: .bits256)) != "eb21d62a49a7efd7")
    }

    @Test("a wrapped key opens for its backup under its envelope key, and survives the manifest's JSON")
    func roundTrip() throws {
        let (dataKey, wrapped) = try WrappedBackupKey.generate(for: "backup-2026-12-06", under: Self.envelope)
        let json = try JSONEncoder().encode(wrapped)
        #expect(String(decoding: json, as: UTF8.self).contains("\"key_id\":\"eb21d62a49a7efd7\""))
        let decoded = try JSONDecoder().decode(WrappedBackupKey.self, from: json)
        let opened = try decoded.unwrap(for: "backup-2026-12-06", with: Self.envelope)
        #expect(opened == dataKey)
        let raw = dataKey.withUnsafeBytes { Data($0) }
        #expect(Data(base64Encoded: wrapped.sealed)?.range(of: raw) == nil, "the data key is not in the wrap in clear")
        let (_, again) = try WrappedBackupKey.generate(for: "backup-2026-12-06", under: Self.envelope)
        #expect(again.sealed != wrapped.sealed, "every backup has its own data key and nonce")
    }

    @Test("another envelope key, another backup, a changed or cut wrap: each refused with its own code, no key")
    func refusals() throws {
        let (_, wrapped) = try WrappedBackupKey.generate(for: "b1", under: Self.envelope)
        let other = SymmetricKey(size: .bits256)
        func code(_ body: () throws(EncryptionError) -> SymmetricKey) -> String? {
            do { _ = try body(); return nil } catch { return error.codeName }
        }
        #expect(code { () throws(EncryptionError) in try wrapped.unwrap(for: "b1", with: other) } == "wrongKey")
        do {
            _ = try wrapped.unwrap(for: "b1", with: other)
            Issue.record("opened under another envelope key")
        } catch {
            #expect(error.safeDetail.contains("eb21d62a49a7efd7") && error.safeDetail.contains(WrappedBackupKey.keyID(of: other)), "both key ids named")
        }
        #expect(code { () throws(EncryptionError) in try wrapped.unwrap(for: "b2", with: Self.envelope) } == "authenticationFailed")

        func edited(_ change: (inout [UInt8]) -> Void) throws -> WrappedBackupKey {
            var json = try JSONSerialization.jsonObject(with: JSONEncoder().encode(wrapped)) as! [String: String]
            var bytes = Array(Data(base64Encoded: json["sealed"]!)!)
            change(&bytes)
            json["sealed"] = Data(bytes).base64EncodedString()
            return try JSONDecoder().decode(WrappedBackupKey.self, from: JSONSerialization.data(withJSONObject: json))
        }
        let flipped = try edited { $0[20] ^= 1 }
        #expect(code { () throws(EncryptionError) in try flipped.unwrap(for: "b1", with: Self.envelope) } == "authenticationFailed")
        let cut = try edited { $0.removeLast() }
        #expect(code { () throws(EncryptionError) in try cut.unwrap(for: "b1", with: Self.envelope) } == "truncated")
        #expect(throws: EncryptionError.self) { try WrappedBackupKey.wrap(SymmetricKey(size: .bits128), for: "b1", under: Self.envelope) }
    }
}
