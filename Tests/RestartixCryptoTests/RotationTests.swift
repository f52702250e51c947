import Crypto
import Foundation
import RestartixPlatform
import RestartixCrypto
import RestartixKit
import RestartixTenancy
import Synchronization
import Testing

/// Rotation end to end: rows under three key ids, a run stopped half-way and resumed, two runs
/// at once, keyring-usage showing only the primary, disabling refused while a key is in use.
@Suite("Key rotation", .timeLimit(.minutes(3)))
struct RotationTests {
    static let k1 = SymmetricKey(size: .bits256), k2 = SymmetricKey(size: .bits256), k3 = SymmetricKey(size: .bits256)
    static let blind = SymmetricKey(size: .bits256)

    static func keyring(_ statuses: [UInt32: Keyring.Status]) throws -> Keyring {
        let material = [1: k1, 2: k2, 3: k3]
        return try Keyring(keys: statuses.sorted { $0.key < $1.key }.map { ($0.key, $0.value, material[Int($0.key)]!) }, blindIndexKey: blind)
    }

    @Test("three key ids -> reencrypt stopped, resumed and run twice at once -> only the primary; nothing lost", arguments: PatientStoreTests.Backend.all)
    func rotation(backend: PatientStoreTests.Backend) async throws {
        let world = try await PatientStoreTests.world(backend)
        let v1 = try Self.keyring([1: .primary])
        let v2 = try Self.keyring([1: .decryptOnly, 2: .primary])
        let v3 = try Self.keyring([1: .decryptOnly, 2: .decryptOnly, 3: .primary])
        var expected: [UUID: PatientPII] = [:]
        for (generation, keyring) in [v1, v2, v3].enumerated() {
            let store = PatientStore(cipher: ColumnCipher(keyring: keyring))
            for n in 0..<7 {
                let clinic = n % 3 == 0 ? 1 : 0
                let pii = PatientPII(
                    name: "Patient \(generation)-\(n)", dateOfBirth: n.isMultiple(of: 2) ? "1990-01-0\(n % 9 + 1)" : nil,
                    email: "p\(generation)\(n)@example.com", phone: n.isMultiple(of: 3) ? "+40 700 000 \(100 + n)" : nil
                )
                let id = try await world.app.withTenant(world.context(clinic)) { tx in try await store.insert(pii, in: tx) }
                expected[id] = pii
            }
        }
        let before = try await KeyringUsage.measure(world.admin, organizations: world.clinics).totals
        #expect(Set(before.keys) == [1, 2, 3])

        // Disabling a key still in use is refused, before anything is written.
        let premature = try Self.keyring([1: .disabled, 2: .decryptOnly, 3: .primary])
        let refused = await #expect(throws: EncryptionError.self) {
            try await Reencryptor(admin: world.admin, cipher: ColumnCipher(keyring: premature), organizations: world.clinics).run()
        }
        #expect(refused?.code == .keyDisabled)

        // Stopped after two batches (a kill between transactions), then two runs at once finish it.
        let cipher = ColumnCipher(keyring: v3)
        let partial = try await Reencryptor(admin: world.admin, cipher: cipher, organizations: world.clinics, batchSize: 3).run(maximumBatches: 2)
        #expect(partial.stoppedEarly)
        #expect(partial.rewritten.values.reduce(0, +) == 6)
        let progress = Mutex<[String]>([])
        async let first = Reencryptor(admin: world.admin, cipher: cipher, organizations: world.clinics, batchSize: 4)
            .run { step in progress.withLock { $0.append("\(step.column) \(step.rewritten)") } }
        async let second = Reencryptor(admin: world.admin, cipher: cipher, organizations: world.clinics, batchSize: 5).run()
        let (one, two) = try await (first, second)
        #expect(!progress.withLock { $0.isEmpty })
        let total = before.values.reduce(0, +) - before[3, default: 0]
        let done = partial.rewritten.values.reduce(0, +) + one.rewritten.values.reduce(0, +) + two.rewritten.values.reduce(0, +)
        #expect(done == total, "every value outside the primary rewritten exactly once")

        #expect(one.failed.isEmpty && two.failed.isEmpty)
        let after = try await KeyringUsage.measure(world.admin, organizations: world.clinics).totals
        #expect(after == [3: before.values.reduce(0, +)])
        // Nothing lost or double-encrypted: every row opens to what was written, under v3 alone...
        let retired = PatientStore(cipher: ColumnCipher(keyring: try Self.keyring([1: .disabled, 2: .disabled, 3: .primary])))
        for clinic in 0..<2 {
            let records = try await world.app.withTenant(world.context(clinic)) { tx in
                var all: [PatientRecord] = []
                for id in expected.keys { if let record = try await retired.fetch(id, in: tx) { all.append(record) } }
                return all
            }
            for record in records { #expect(expected[record.id] == record.pii) }
            #expect(records.count == expected.count { $0.value.name.hasSuffix("-0") || $0.value.name.hasSuffix("-3") || $0.value.name.hasSuffix("-6") ? clinic == 1 : clinic == 0 })
        }
        // ...and now disabling keys 1 and 2 passes the check.
        try await KeyringUsage.measure(world.admin, organizations: world.clinics).verify(against: try Self.keyring([1: .disabled, 2: .disabled, 3: .primary]))
        await world.close()
    }

    @Test("a value that does not open is reported and skipped; a value that is not format v1 stops the run", arguments: PatientStoreTests.Backend.all)
    func badValues(backend: PatientStoreTests.Backend) async throws {
        let world = try await PatientStoreTests.world(backend)
        let store = PatientStore(cipher: ColumnCipher(keyring: try Self.keyring([1: .primary])))
        let ids = try await world.app.withTenant(world.context(0)) { tx in
            [try await store.insert(PatientPII(name: "A"), in: tx), try await store.insert(PatientPII(name: "B"), in: tx), try await store.insert(PatientPII(name: "C"), in: tx)]
        }
        // Flip the last byte (the tag) of B's name.
        let name = try await world.app.query(world.context(0), "SELECT name FROM patients WHERE id = \(ids[1])")[0].decode("name", as: Data.self)
        var tampered = name
        tampered[tampered.endIndex - 1] ^= 1
        try await world.app.execute(world.context(0), "UPDATE patients SET name = \(tampered) WHERE id = \(ids[1])")
        let v2 = try Self.keyring([1: .decryptOnly, 2: .primary])
        let report = try await Reencryptor(admin: world.admin, cipher: ColumnCipher(keyring: v2), organizations: world.clinics).run()
        #expect(report.failed.values.flatMap { $0 } == [ids[1]])
        #expect(report.rewritten.values.reduce(0, +) == 2)
        #expect(report.remaining == 1)

        // A plaintext value where a sealed one belongs: counted as key 0, and the run refuses.
        try await world.app.execute(world.context(0), "UPDATE patients SET phone = \(Data("0721 000 111".utf8)) WHERE id = \(ids[2])")
        let usage = try await KeyringUsage.measure(world.admin, organizations: world.clinics)
        #expect(usage.totals[0] == 1)
        let refused = await #expect(throws: EncryptionError.self) {
            try await Reencryptor(admin: world.admin, cipher: ColumnCipher(keyring: v2), organizations: world.clinics).run()
        }
        #expect(refused?.code == .unsupportedFormat)
        await world.close()
    }
}
