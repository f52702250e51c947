import RestartixKit
import Crypto
import Foundation
import InMemoryLogging
import Logging
import RestartixPlatform
@testable import RestartixCrypto
import Testing

func hex(_ data: some DataProtocol) -> String { data.map { String(format: "%02x", $0) }.joined() }
func bytes(hex: String) -> Data {
    var data = Data()
    var index = hex.startIndex
    while index < hex.endIndex {
        let next = hex.index(index, offsetBy: 2)
        data.append(UInt8(hex[index..<next], radix: 16)!)
        index = next
    }
    return data
}

@Suite("Column cipher")
struct ColumnCipherTests {
    static let org = UUID(uuidString: "0190a4c2-7b3d-7e1f-8a2b-c3d4e5f60718")!
    static let row = UUID(uuidString: "0190a4c2-7b3d-7e1f-8a2b-c3d4e5f60719")!
    static let place = ColumnPlace(table: "patients", column: "email", organizationID: org, rowID: row)

    /// Key 7 is bytes 0...31 (the known-answer vector's key); other ids repeat their id byte.
    static func keyring(_ entries: [(UInt32, Keyring.Status)] = [(7, .primary)]) throws -> Keyring {
        var keys: [(id: UInt32, status: Keyring.Status, key: SymmetricKey)] = []
        for (id, status) in entries {
            let material = id == 7 ? Data(0..<32) : Data(repeating: UInt8(id), count: 32)
            keys.append((id: id, status: status, key: SymmetricKey(data: material)))
        }
        return try Keyring(keys: keys, blindIndexKey: SymmetricKey(data: Data(32..<64)))
    }

    @Test("format v1 matches an independent implementation (Scripts/dev/column-cipher-vector.py)")
    func knownAnswer() throws {
        let cipher = ColumnCipher(keyring: try Self.keyring())
        let sealed = try cipher.seal(Data("ana@example.com".utf8), at: Self.place, nonce: try AES.GCM.Nonce(data: Data(0..<12)))
        #expect(hex(sealed) == "010100000007000102030405060708090a0b45f710cbb16b881ae936710b64bb23e85fb8490c0b81f77c882f2a977448dc")
        #expect(try cipher.openString(sealed, at: Self.place) == "ana@example.com")
        #expect(ColumnCipher.keyID(of: sealed) == 7)
        let index = BlindIndex(keyring: try Self.keyring()).index("ana@example.com", table: "patients", column: "email", organizationID: Self.org)
        #expect(hex(index) == "4f5c69137891cfa143c94d7806eb4e5345c2fea9f70913010e8bfc6b49c2c64b")
    }

    @Test("round trips; random nonces; empty and large values")
    func roundTrips() throws {
        let cipher = ColumnCipher(keyring: Keyring.generate().keyring)
        for size in [0, 1, 255, 4096, 1 << 20] {
            let plaintext = Data((0..<size).map { _ in UInt8.random(in: 0...255) })
            let sealed = try cipher.seal(plaintext, at: Self.place)
            #expect(sealed.count == plaintext.count + ColumnCipher.overhead)
            #expect(try cipher.open(sealed, at: Self.place) == plaintext)
        }
        let a = try cipher.seal("same", at: Self.place), b = try cipher.seal("same", at: Self.place)
        #expect(a != b, "a fresh nonce per seal")
        #expect(cipher.sealCount(keyID: 1) == 7)
        let platform = ColumnPlace(table: "platform_service_providers", column: "credentials", organizationID: nil, rowID: Self.row)
        #expect(try cipher.openString(try cipher.seal("sk_live", at: platform), at: platform) == "sk_live")
    }

    @Test("every tampered region, truncation, unknown or disabled key, and every move is an error, never plaintext")
    func negatives() throws {
        let keyring = try Self.keyring([(7, .primary), (8, .decryptOnly), (9, .disabled)])
        let cipher = ColumnCipher(keyring: keyring)
        let sealed = try cipher.seal("ana@example.com", at: Self.place)
        func code(_ value: Data, _ place: ColumnPlace = Self.place) -> EncryptionError.Code? {
            do {
                _ = try cipher.open(value, at: place)
                return nil
            } catch { return error.code }
        }
        func flipped(_ offset: Int) -> Data {
            var copy = sealed
            copy[copy.startIndex + offset] ^= 0x01
            return copy
        }
        #expect(code(flipped(0)) == .unsupportedFormat)
        #expect(code(flipped(1)) == .unsupportedAlgorithm)
        #expect(code(flipped(5)) == .unknownKey, "key id 7 -> 6")
        for offset in [6, 17, 18, 18 + 14, sealed.count - 16, sealed.count - 1] {
            #expect(code(flipped(offset)) == .authenticationFailed, "byte \(offset)")
        }
        #expect(code(sealed.prefix(33)) == .truncated)
        #expect(code(Data()) == .truncated)
        #expect(code(sealed.dropLast()) == .authenticationFailed)
        // Another key id that exists: the header is authenticated, so it cannot be relabelled.
        var relabelled = sealed
        relabelled[relabelled.startIndex + 5] = 8
        #expect(code(relabelled) == .authenticationFailed)
        relabelled[relabelled.startIndex + 5] = 9
        #expect(code(relabelled) == .keyDisabled)
        // Moved: another row, column, table or clinic, or a clinic value read as a platform one.
        let moves = [
            ColumnPlace(table: "patients", column: "email", organizationID: Self.org, rowID: UUID()),
            ColumnPlace(table: "patients", column: "phone", organizationID: Self.org, rowID: Self.row),
            ColumnPlace(table: "patients_archive", column: "email", organizationID: Self.org, rowID: Self.row),
            ColumnPlace(table: "patients", column: "email", organizationID: UUID(), rowID: Self.row),
            ColumnPlace(table: "patients", column: "email", organizationID: nil, rowID: Self.row),
        ]
        for place in moves { #expect(code(sealed, place) == .authenticationFailed, "\(place)") }
        #expect(throws: EncryptionError.self) { try cipher.seal("x", at: ColumnPlace(table: "Patients; --", column: "email", organizationID: nil, rowID: Self.row)) }
    }

    @Test("a rotated keyring opens old values and seals under the new primary")
    func rotation() throws {
        let old = ColumnCipher(keyring: try Self.keyring([(7, .primary)]))
        let sealed = try old.seal("before rotation", at: Self.place)
        let rotated = ColumnCipher(keyring: try Self.keyring([(7, .decryptOnly), (8, .primary)]))
        #expect(try rotated.openString(sealed, at: Self.place) == "before rotation")
        let resealed = try rotated.seal("before rotation", at: Self.place)
        #expect(ColumnCipher.keyID(of: resealed) == 8)
        let retired = ColumnCipher(keyring: try Self.keyring([(7, .disabled), (8, .primary)]))
        let error = #expect(throws: EncryptionError.self) { try retired.open(sealed, at: Self.place) }
        #expect(error?.code == .keyDisabled)
    }

    @Test("blind indexes: equal within a clinic and column, unrelated across them, normalized emails")
    func blindIndexes() throws {
        let index = BlindIndex(keyring: Keyring.generate().keyring)
        let a = index.index(BlindIndex.normalizedEmail("  Ana@Example.COM "), table: "patients", column: "email", organizationID: Self.org)
        #expect(a == index.index("ana@example.com", table: "patients", column: "email", organizationID: Self.org))
        #expect(a != index.index("ana@example.com", table: "patients", column: "email", organizationID: UUID()))
        #expect(a != index.index("ana@example.com", table: "patients", column: "phone", organizationID: Self.org))
        #expect(a != index.index("ana@example.com", table: "users", column: "email", organizationID: Self.org))
        #expect(a != BlindIndex(keyring: Keyring.generate().keyring).index("ana@example.com", table: "patients", column: "email", organizationID: Self.org))
        // NFC: "é" precomposed and decomposed index the same.
        #expect(BlindIndex.normalizedEmail("jos\u{00E9}@example.com") == BlindIndex.normalizedEmail("jose\u{0301}@example.com"))
    }

    @Test("one cipher sealing and opening from many threads at once: every value opens, no nonce repeats")
    func concurrentUse() async throws {
        let cipher = ColumnCipher(keyring: Keyring.generate().keyring)
        let nonces = try await withThrowingTaskGroup(of: [Data].self) { group in
            for worker in 0..<8 {
                group.addTask {
                    var mine: [Data] = []
                    for i in 0..<2_000 {
                        let place = ColumnPlace(table: "patients", column: i % 2 == 0 ? "name" : "email", organizationID: Self.org, rowID: UUID())
                        let text = "worker \(worker) value \(i)"
                        let sealed = try cipher.seal(text, at: place)
                        guard try cipher.openString(sealed, at: place) == text else { throw EncryptionError(.invalidInput, "a value opened to other text") }
                        mine.append(sealed[6..<18])
                    }
                    return mine
                }
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }
        #expect(nonces.count == 16_000)
        #expect(Set(nonces).count == 16_000)
    }

    @Test("nonces come from batches without repeats, and a batch copied by fork() is not reused by the child")
    func nonceBatches() throws {
        let batch = NonceBatch()
        var seen = Set<Data>()
        var nonce = [UInt8](repeating: 0, count: 12)
        for _ in 0..<(NonceBatch.size * 20 + 3) {
            #expect(batch.draw(into: &nonce))
            seen.insert(Data(nonce))
        }
        #expect(seen.count == NonceBatch.size * 20 + 3, "every nonce is handed out once")

        // The parent has used 3 nonces of its current batch. A child that reused the copied batch
        // would hand out the parent's 4th; the fork handler makes it draw a batch of its own.
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        let child = fork()
        if child == 0 {
            // The child does only what it must: draw, write, exit.
            var buffer: (UInt64, UInt32) = (0, 0)
            let ok = withUnsafeMutableBytes(of: &buffer) { raw in
                batch.draw(into: raw.baseAddress!.assumingMemoryBound(to: UInt8.self)) && write(fds[1], raw.baseAddress, 12) == 12
            }
            _exit(ok ? 0 : 1)
        }
        #expect(child > 0)
        close(fds[1])
        defer { close(fds[0]) }
        var poller = pollfd(fd: fds[0], events: Int16(POLLIN), revents: 0)
        guard poll(&poller, 1, 20_000) == 1 else {
            kill(child, SIGKILL)
            _ = waitpid(child, nil, 0)
            Issue.record("the forked child did not answer within 20 s")
            return
        }
        var fromChild = [UInt8](repeating: 0, count: 12)
        #expect(read(fds[0], &fromChild, 12) == 12)
        var status: Int32 = 0
        #expect(waitpid(child, &status, 0) == child)
        #expect(status == 0, "the child drew its nonce")
        var fromParent = [UInt8](repeating: 0, count: 12)
        #expect(batch.draw(into: &fromParent))
        #expect(fromChild != fromParent, "parent and child never hand out the same nonce")
        #expect(!seen.contains(Data(fromChild)))
    }
}

@Suite("Keyring")
struct KeyringTests {
    static func key(_ byte: UInt8) -> String { Data(repeating: byte, count: 32).base64EncodedString() }
    static let blind = key(0xBB)

    func document(_ keys: String, blind: String = KeyringTests.blind, backup: String? = nil) -> Data {
        let member = backup.map { #","backup_encryption_key":"\#($0)""# } ?? ""
        return Data(#"{"keys":[\#(keys)],"blind_index_key":"\#(blind)"\#(member)}"#.utf8)
    }

    @Test("a valid document loads; description shows ids and statuses only")
    func valid() throws {
        let keyring = try Keyring(json: document(#"{"id":1,"status":"decrypt-only","key":"\#(Self.key(1))"},{"id":2,"status":"primary","key":"\#(Self.key(2))"},{"id":3,"status":"disabled","key":"\#(Self.key(3))"}"#))
        #expect(keyring.primaryID == 2)
        #expect(keyring.description == "Keyring(primary: 2, keys: [1:decrypt-only, 2:primary, 3:disabled])")
    }

    @Test("bad documents are refused with the problem named and no key bytes")
    func invalid() throws {
        let short = Data(repeating: 5, count: 16).base64EncodedString()
        let cases: [(String, Data, String)] = [
            ("not JSON", Data("{keys".utf8), "not a JSON document"),
            ("no keys field", Data(#"{"blind_index_key":"\#(Self.blind)"}"#.utf8), "\"keys\""),
            ("no blind index key", Data(#"{"keys":[{"id":1,"status":"primary","key":"\#(Self.key(1))"}]}"#.utf8), "blind_index_key"),
            ("short key", document(#"{"id":4,"status":"primary","key":"\#(short)"}"#), "key 4 is 16 bytes"),
            ("not base64", document(#"{"id":4,"status":"primary","key":"***"}"#), "key 4 is not base64"),
            ("duplicate id", document(#"{"id":1,"status":"primary","key":"\#(Self.key(1))"},{"id":1,"status":"decrypt-only","key":"\#(Self.key(2))"}"#), "key id 1 appears twice"),
            ("no primary", document(#"{"id":1,"status":"decrypt-only","key":"\#(Self.key(1))"}"#), "no platform key is primary"),
            ("two primaries", document(#"{"id":1,"status":"primary","key":"\#(Self.key(1))"},{"id":2,"status":"primary","key":"\#(Self.key(2))"}"#), "keys 1, 2 are all primary"),
            ("unknown status", document(#"{"id":1,"status":"active","key":"\#(Self.key(1))"}"#), "unknown status"),
            ("status and key swapped", document(#"{"id":1,"status":"\#(Self.key(1))","key":"primary"}"#), "unknown status"),
            ("id zero", document(#"{"id":0,"status":"primary","key":"\#(Self.key(1))"}"#), "key id 0 is reserved"),
            ("negative id", document(#"{"id":-1,"status":"primary","key":"\#(Self.key(1))"}"#), "out of range"),
            ("string id", document(#"{"id":"1","status":"primary","key":"\#(Self.key(1))"}"#), "wrong type"),
            ("reused material", document(#"{"id":1,"status":"primary","key":"\#(Self.key(1))"},{"id":2,"status":"decrypt-only","key":"\#(Self.key(1))"}"#), "same material"),
            ("blind key is a column key", document(#"{"id":1,"status":"primary","key":"\#(Self.blind)"}"#), "same material"),
            ("short backup key", document(#"{"id":1,"status":"primary","key":"\#(Self.key(1))"}"#, backup: short), "backup key (backup_encryption_key) is 16 bytes"),
            ("backup key not base64", document(#"{"id":1,"status":"primary","key":"\#(Self.key(1))"}"#, backup: "***"), "backup key (backup_encryption_key) is not base64"),
            ("backup key is a column key", document(#"{"id":1,"status":"primary","key":"\#(Self.key(1))"}"#, backup: Self.key(1)), "backup key (BACKUP_ENCRYPTION_KEY) is the same as another key"),
            ("backup key is the blind key", document(#"{"id":1,"status":"primary","key":"\#(Self.key(1))"}"#, backup: Self.blind), "the same as another key"),
        ]
        for (name, json, expected) in cases {
            let error = #expect(throws: EncryptionError.self, "\(name)") { try Keyring(json: json) }
            #expect(error?.code == .invalidKeyring, "\(name)")
            #expect(error?.detail.contains(expected) == true, "\(name): \(error?.detail ?? "")")
            for byte: UInt8 in [1, 2, 5, 0xBB] {
                #expect(error?.description.contains(Self.key(byte)) == false, "\(name) leaks a key")
            }
        }
    }

    @Test("the backup key (BACKUP_ENCRYPTION_KEY): from the document or the variable, checked, never printed; set twice differently is refused")
    func backupKey() async throws {
        let keys = #"{"id":1,"status":"primary","key":"\#(Self.key(1))"}"#
        let plain = String(decoding: document(keys), as: UTF8.self)
        let withMember = String(decoding: document(keys, backup: Self.key(0xC1)), as: UTF8.self)
        let fromDocument = try await KeyringSource.document(withMember).load()
        #expect(fromDocument.backupKey == SymmetricKey(data: Data(repeating: 0xC1, count: 32)))
        #expect(fromDocument.description == "Keyring(primary: 1, keys: [1:primary], backup key: loaded)")
        let fromVariable = try await KeyringSource.document(plain).load(backupKey: Self.key(0xC2) + "\n")
        #expect(fromVariable.backupKey == SymmetricKey(data: Data(repeating: 0xC2, count: 32)))
        #expect(try await KeyringSource.document(plain).load().backupKey == nil, "optional")
        let same = try await KeyringSource.document(withMember).load(backupKey: Self.key(0xC1))
        #expect(same.backupKey == fromDocument.backupKey, "the same key in two places is fine")

        let refusals: [([String: String], String)] = [
            (["ENCRYPTION_KEYS": withMember, "BACKUP_ENCRYPTION_KEY": Self.key(0xC2)], "set twice with different values"),
            (["ENCRYPTION_KEYS": plain, "BACKUP_ENCRYPTION_KEY": Data(repeating: 0xC3, count: 31).base64EncodedString()], "(BACKUP_ENCRYPTION_KEY) is 31 bytes"),
            (["ENCRYPTION_KEYS": plain, "BACKUP_ENCRYPTION_KEY": "not-base64!"], "(BACKUP_ENCRYPTION_KEY) is not base64"),
            (["ENCRYPTION_KEYS": plain, "BACKUP_ENCRYPTION_KEY": Self.key(1)], "the same as another key"),
        ]
        for (environment, expected) in refusals {
            let error = await #expect(throws: EncryptionError.self) { try await KeyringSource.document(environment["ENCRYPTION_KEYS"]!).load(backupKey: environment["BACKUP_ENCRYPTION_KEY"]) }
            #expect(error?.code == .invalidKeyring)
            #expect(error?.detail.contains(expected) == true, "\(error?.detail ?? "")")
            for byte: UInt8 in [1, 0xC1, 0xC2, 0xC3] {
                #expect(error?.description.contains(Self.key(byte)) == false, "the error leaks a key")
            }
        }
    }

    @Test("sources: document and file; a group-readable file and an empty document are refused")
    func sources() async throws {
        let (keyring, text) = Keyring.generate()
        #expect(try await KeyringSource.document(text).load().primaryID == keyring.primaryID)
        let missing = await #expect(throws: EncryptionError.self) { try await KeyringSource.document("").load() }
        #expect(missing?.code == .keyringUnavailable)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("keyring-\(UUID().uuidString).json").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        _ = FileManager.default.createFile(atPath: path, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600])
        #expect(try await KeyringSource.file(path: path).load().primaryID == 1)
        // A symlink to a private file (a Kubernetes secret mount) is followed and accepted.
        let link = path + ".link"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: path)
        defer { try? FileManager.default.removeItem(atPath: link) }
        #expect(try await KeyringSource.file(path: link).load().primaryID == 1)
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: path)
        let open = await #expect(throws: EncryptionError.self) { try await KeyringSource.file(path: path).load() }
        #expect(open?.detail.contains("chmod 600") == true)
        await #expect(throws: EncryptionError.self) { try await KeyringSource.file(path: path + ".missing").load() }
    }

    @Test("nothing secret reaches a log line: seals, opens, failures and warnings with logging at trace")
    func logCapture() throws {
        let logs = InMemoryLogHandler()
        var logger = Logger(label: "restartix.crypto.test") { _ in logs }
        logger.logLevel = .trace
        let (keyring, document) = Keyring.generate()
        let cipher = ColumnCipher(keyring: keyring, warningThreshold: 2, logger: logger)
        let place = ColumnPlace(table: "patients", column: "name", organizationID: UUID(), rowID: UUID())
        let secretName = "Ana Secret-Patient"
        for _ in 0..<3 { _ = try cipher.openString(try cipher.seal(secretName, at: place), at: place) }
        _ = try? cipher.open(Data(repeating: 1, count: 40), at: place)
        let lines = logs.entries.map { "\($0.message) \($0.metadata)" }
        #expect(lines.contains { $0.contains("Many seals") }, "the warning threshold logs once")
        let material = keyring.primary.material.withUnsafeBytes { Data($0) }
        for line in lines {
            #expect(!line.contains(secretName))
            #expect(!line.contains(material.base64EncodedString()))
            #expect(!line.contains(hex(material)))
            #expect(!line.contains(document))
        }
    }
}
