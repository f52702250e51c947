import Crypto
import Foundation
import RestartixPlatform
import RestartixCrypto
import RestartixKit
import RestartixTenancy
import Testing

/// Clinics that bring their own keys: their values are sealed under their own primary, nobody
/// else's value opens under them, rotation moves each clinic to its own primary.
@Suite("Per-clinic keys (BYOK)", .timeLimit(.minutes(3)))
struct BYOKTests {
    static let platform = SymmetricKey(size: .bits256), platformNext = SymmetricKey(size: .bits256)
    static let clinicKey = SymmetricKey(size: .bits256), blind = SymmetricKey(size: .bits256)

    @Test("keyring rules for clinic keys; seal and open routed by clinic")
    func routing() throws {
        let a = UUID(), b = UUID()
        let keyring = try Keyring(entries: [
            .init(id: 1, status: .primary, key: Self.platform),
            .init(id: 10, status: .primary, key: Self.clinicKey, organizationID: a),
        ], blindIndexKey: Self.blind)
        #expect(keyring.primary(for: a).id == 10)
        #expect(keyring.primary(for: b).id == 1)
        #expect(keyring.primary(for: nil).id == 1)
        #expect(keyring.description.contains("10:primary@\(a.lowercasedString)"))
        let cipher = ColumnCipher(keyring: keyring)
        let atA = ColumnPlace(table: "patients", column: "name", organizationID: a, rowID: UUID())
        let sealed = try cipher.seal("Ana", at: atA)
        #expect(ColumnCipher.keyID(of: sealed) == 10)
        #expect(try cipher.openString(sealed, at: atA) == "Ana")
        #expect(ColumnCipher.keyID(of: try cipher.seal("Ion", at: ColumnPlace(table: "patients", column: "name", organizationID: b, rowID: UUID()))) == 1)
        let elsewhere = ColumnPlace(table: "patients", column: "name", organizationID: b, rowID: atA.rowID)
        let error = #expect(throws: EncryptionError.self) { try cipher.open(sealed, at: elsewhere) }
        #expect(error?.code == .authenticationFailed)

        let twoPrimaries = #expect(throws: EncryptionError.self) {
            try Keyring(entries: [
                .init(id: 1, status: .primary, key: Self.platform),
                .init(id: 10, status: .primary, key: Self.clinicKey, organizationID: a),
                .init(id: 11, status: .primary, key: Self.platformNext, organizationID: a),
            ], blindIndexKey: Self.blind)
        }
        #expect(twoPrimaries?.detail.contains("keys 10, 11 all primary") == true)
        let none = #expect(throws: EncryptionError.self) {
            try Keyring(entries: [
                .init(id: 1, status: .primary, key: Self.platform),
                .init(id: 10, status: .decryptOnly, key: Self.clinicKey, organizationID: a),
            ], blindIndexKey: Self.blind)
        }
        #expect(none?.detail.contains("no primary key") == true)
        let document = #"{"keys":[{"id":1,"status":"primary","key":"\#(Data(repeating: 1, count: 32).base64EncodedString())"},{"id":2,"status":"primary","organization_id":"not-a-uuid","key":"\#(Data(repeating: 2, count: 32).base64EncodedString())"}],"blind_index_key":"\#(Data(repeating: 3, count: 32).base64EncodedString())"}"#
        let bad = #expect(throws: EncryptionError.self) { try Keyring(json: Data(document.utf8)) }
        #expect(bad?.detail.contains("organization_id that is not a UUID") == true)
    }

    @Test("rotation moves each clinic to its own primary", arguments: PatientStoreTests.Backend.all)
    func rotation(backend: PatientStoreTests.Backend) async throws {
        let world = try await PatientStoreTests.world(backend)
        let before = try Keyring(keys: [(1, .primary, Self.platform)], blindIndexKey: Self.blind)
        let store = PatientStore(cipher: ColumnCipher(keyring: before))
        var ids: [Int: [UUID]] = [:]
        for clinic in 0..<2 {
            ids[clinic] = try await world.app.withTenant(world.context(clinic)) { tx in
                [try await store.insert(PatientPII(name: "A\(clinic)", email: "a\(clinic)@example.com"), in: tx),
                 try await store.insert(PatientPII(name: "B\(clinic)"), in: tx)]
            }
        }
        let after = try Keyring(entries: [
            .init(id: 1, status: .decryptOnly, key: Self.platform),
            .init(id: 2, status: .primary, key: Self.platformNext),
            .init(id: 10, status: .primary, key: Self.clinicKey, organizationID: world.clinics[0]),
        ], blindIndexKey: Self.blind)
        let report = try await Reencryptor(admin: world.admin, cipher: ColumnCipher(keyring: after), organizations: world.clinics).run()
        #expect(report.remaining == 0)
        #expect(report.failed.isEmpty)
        let usage = try await KeyringUsage.measure(world.admin, organizations: world.clinics)
        #expect(usage.byOrganization[world.clinics[0]] == [10: 3])
        #expect(usage.byOrganization[world.clinics[1]] == [2: 3])
        // A second run has nothing to do: the clinic's values are already under its own key.
        let again = try await Reencryptor(admin: world.admin, cipher: ColumnCipher(keyring: after), organizations: world.clinics).run()
        #expect(again.rewritten.values.reduce(0, +) == 0)
        let reader = PatientStore(cipher: ColumnCipher(keyring: after))
        for clinic in 0..<2 {
            let names = try await world.app.withTenant(world.context(clinic)) { tx in
                var names: [String] = []
                for id in ids[clinic]! { names.append(try await reader.fetch(id, in: tx)?.pii.name ?? "-") }
                return names
            }
            #expect(names == ["A\(clinic)", "B\(clinic)"])
        }
        await world.close()
    }

    @Test("a clinic that starts bringing its own key while the platform primary stays: its values move, the others stay", arguments: PatientStoreTests.Backend.all)
    func clinicOnlyRotation(backend: PatientStoreTests.Backend) async throws {
        let world = try await PatientStoreTests.world(backend)
        let platformOnly = try Keyring(keys: [(1, .primary, Self.platform)], blindIndexKey: Self.blind)
        let store = PatientStore(cipher: ColumnCipher(keyring: platformOnly))
        for clinic in 0..<2 {
            _ = try await world.app.withTenant(world.context(clinic)) { tx in
                try await store.insert(PatientPII(name: "C\(clinic)", phone: "+40 700 000 00\(clinic)"), in: tx)
            }
        }
        let withClinicKey = try Keyring(entries: [
            .init(id: 1, status: .primary, key: Self.platform),
            .init(id: 10, status: .primary, key: Self.clinicKey, organizationID: world.clinics[0]),
        ], blindIndexKey: Self.blind)
        let cipher = ColumnCipher(keyring: withClinicKey)
        let before = try await KeyringUsage.measure(world.admin, organizations: world.clinics)
        #expect(before.remaining(under: withClinicKey) == 2, "clinic 0's name and phone are under the platform key")
        let report = try await Reencryptor(admin: world.admin, cipher: cipher, organizations: world.clinics).run()
        #expect(report.rewritten.values.reduce(0, +) == 2)
        #expect(report.remaining == 0)
        let usage = try await KeyringUsage.measure(world.admin, organizations: world.clinics)
        #expect(usage.byOrganization[world.clinics[0]] == [10: 2])
        #expect(usage.byOrganization[world.clinics[1]] == [1: 2], "the other clinic's values are left under the platform primary")
        await world.close()
    }
}
