public import Crypto
public import Foundation
public import RestartixKit

/// A versioned set of column-encryption keys: exactly one primary (seals), any number of
/// decrypt-only keys (open values sealed before a rotation), and disabled keys (refused, kept
/// in the document so an old id is never reused), plus the blind-index key.
///
/// Loaded once at boot from a ``KeyringSource``; plaintext keys live only in memory, and
/// nothing this type prints, logs or throws contains key bytes. The document format
/// (`ENCRYPTION_KEYS`) is described in Documentation/RestartixCrypto.md:
///
/// ```json
/// {
///   "keys": [
///     {"id": 1, "status": "decrypt-only", "key": "<base64 of 32 bytes>"},
///     {"id": 2, "status": "primary",      "key": "<base64 of 32 bytes>"}
///   ],
///   "blind_index_key": "<base64 of 32 bytes>",
///   "backup_encryption_key": "<base64 of 32 bytes>"
/// }
/// ```
///
/// `backup_encryption_key` is optional: the platform's `BACKUP_ENCRYPTION_KEY`, the envelope
/// key of database dumps. It seals no column; it travels with the keyring because it is kept
/// in the same secret and must be as distinct and as well checked as the other keys
/// (``KeyringSource`` also takes it from the secret's `BACKUP_ENCRYPTION_KEY` member or the
/// `BACKUP_ENCRYPTION_KEY` variable).
///
/// A key with `"organization_id"` belongs to that clinic (BYOK): it seals that clinic's values
/// (the clinic needs exactly one primary of its own) and opens nobody else's.
public struct Keyring: Sendable, CustomStringConvertible {
    /// What a key may do.
    public enum Status: String, Sendable, Hashable, Codable, CaseIterable {
        /// Seals new values and opens old ones. Exactly one key is primary.
        case primary
        /// Opens values sealed under it; never seals.
        case decryptOnly = "decrypt-only"
        /// Refused for everything; disable a key only when no value uses it.
        case disabled
    }

    /// One key: its id (written into every value it seals), status, owner and material.
    public struct Key: Sendable {
        /// 1 ... 2^32-1; 0 is never a key id.
        public let id: UInt32
        /// What the key may do.
        public let status: Status
        /// The clinic whose own key this is (BYOK), or `nil` for a platform key.
        public let organizationID: UUID?
        let material: SymmetricKey
    }

    /// One key of a keyring being built.
    public struct Entry: Sendable {
        /// The key id.
        public var id: UInt32
        /// Its status.
        public var status: Status
        /// Its material, 32 bytes.
        public var key: SymmetricKey
        /// The clinic it belongs to (BYOK), or `nil` for a platform key.
        public var organizationID: UUID?

        /// An entry.
        public init(id: UInt32, status: Status, key: SymmetricKey, organizationID: UUID? = nil) {
            self.id = id
            self.status = status
            self.key = key
            self.organizationID = organizationID
        }
    }

    /// Keys by id.
    public let keys: [UInt32: Key]
    /// The platform primary key's id.
    public let primaryID: UInt32
    /// The primary key of each clinic that brings its own keys (BYOK).
    public let organizationPrimaryIDs: [UUID: UInt32]
    let blindIndexMaterial: SymmetricKey
    /// The envelope key of database dumps (`BACKUP_ENCRYPTION_KEY`), when one was loaded. Never
    /// used for columns; distinct from every column key and the blind-index key.
    public let backupKey: SymmetricKey?

    /// The platform primary key.
    public var primary: Key { keys[primaryID]! }

    /// The key that seals for `organization`: its own primary when it brings its own keys,
    /// the platform primary otherwise (and for platform rows).
    public func primary(for organization: UUID?) -> Key {
        keys[primaryID(for: organization)]!
    }

    /// The id of ``primary(for:)``.
    public func primaryID(for organization: UUID?) -> UInt32 {
        guard let organization, !organizationPrimaryIDs.isEmpty else { return primaryID }
        return organizationPrimaryIDs[organization] ?? primaryID
    }

    /// Builds a keyring of platform keys and a blind-index key (tests, generated local
    /// keyrings); the same rules as the document apply.
    public init(
        keys: [(id: UInt32, status: Status, key: SymmetricKey)], blindIndexKey: SymmetricKey, backupKey: SymmetricKey? = nil
    ) throws(EncryptionError) {
        try self.init(entries: keys.map { Entry(id: $0.id, status: $0.status, key: $0.key) }, blindIndexKey: blindIndexKey, backupKey: backupKey)
    }

    /// Builds a keyring from entries, platform and per-clinic (BYOK). Rules: ids unique and not
    /// 0; keys 32 bytes and all distinct (the blind-index and backup keys too); exactly one
    /// platform primary; a clinic with keys of its own has exactly one primary among them.
    public init(entries: [Entry], blindIndexKey: SymmetricKey, backupKey: SymmetricKey? = nil) throws(EncryptionError) {
        var byID: [UInt32: Key] = [:]
        for entry in entries {
            guard entry.id != 0 else { throw EncryptionError(.invalidKeyring, "key id 0 is reserved; ids are 1 to 4294967295") }
            guard entry.key.bitCount == 256 else {
                throw EncryptionError(.invalidKeyring, "key \(entry.id) is \(entry.key.bitCount / 8) bytes; keys are 32 bytes")
            }
            guard byID[entry.id] == nil else { throw EncryptionError(.invalidKeyring, "key id \(entry.id) appears twice") }
            byID[entry.id] = Key(id: entry.id, status: entry.status, organizationID: entry.organizationID, material: entry.key)
        }
        let primaries = byID.values.filter { $0.status == .primary && $0.organizationID == nil }.map(\.id).sorted()
        guard primaries.count == 1 else {
            throw EncryptionError(
                .invalidKeyring,
                primaries.isEmpty ? "no platform key is primary; exactly one must be" : "keys \(primaries.map(String.init).joined(separator: ", ")) are all primary; exactly one must be"
            )
        }
        var organizationPrimaries: [UUID: UInt32] = [:]
        for organization in Set(byID.values.compactMap(\.organizationID)) {
            let own = byID.values.filter { $0.organizationID == organization && $0.status == .primary }.map(\.id).sorted()
            guard own.count == 1 else {
                throw EncryptionError(
                    .invalidKeyring,
                    "organization \(organization.lowercasedString) has \(own.isEmpty ? "no primary key" : "keys \(own.map(String.init).joined(separator: ", ")) all primary"); exactly one must be"
                )
            }
            organizationPrimaries[organization] = own[0]
        }
        guard blindIndexKey.bitCount == 256 else {
            throw EncryptionError(.invalidKeyring, "the blind-index key is \(blindIndexKey.bitCount / 8) bytes; it must be 32")
        }
        if let backupKey, backupKey.bitCount != 256 {
            throw EncryptionError(.invalidKeyring, "the backup key (BACKUP_ENCRYPTION_KEY) is \(backupKey.bitCount / 8) bytes; it must be 32")
        }
        let distinct = Set(byID.values.map { $0.material.withUnsafeBytes { Data($0) } })
        guard distinct.count == byID.count, !distinct.contains(blindIndexKey.withUnsafeBytes { Data($0) }) else {
            throw EncryptionError(.invalidKeyring, "two keys have the same material; every key, and the blind-index key, must be distinct")
        }
        if let backup = backupKey?.withUnsafeBytes({ Data($0) }), distinct.contains(backup) || backup == blindIndexKey.withUnsafeBytes({ Data($0) }) {
            throw EncryptionError(.invalidKeyring, "the backup key (BACKUP_ENCRYPTION_KEY) is the same as another key; it must be distinct")
        }
        self.keys = byID
        self.primaryID = primaries[0]
        self.organizationPrimaryIDs = organizationPrimaries
        self.blindIndexMaterial = blindIndexKey
        self.backupKey = backupKey
    }

    /// This keyring with `backupKey` as its backup key (checked like one from the document).
    public func with(backupKey: SymmetricKey) throws(EncryptionError) -> Keyring {
        try Keyring(
            entries: keys.values.map { Entry(id: $0.id, status: $0.status, key: $0.material, organizationID: $0.organizationID) },
            blindIndexKey: blindIndexMaterial, backupKey: backupKey
        )
    }

    /// A base64 backup key from a document, a secret or the environment, checked; `origin` names
    /// where it came from in the error.
    package static func backupKey(base64 text: String, from origin: String) throws(EncryptionError) -> SymmetricKey {
        guard let bytes = Data(base64Encoded: text.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw EncryptionError(.invalidKeyring, "the backup key (\(origin)) is not base64")
        }
        guard bytes.count == 32 else {
            throw EncryptionError(.invalidKeyring, "the backup key (\(origin)) is \(bytes.count) bytes; it must be 32")
        }
        return SymmetricKey(data: bytes)
    }

    /// Parses an `ENCRYPTION_KEYS` document. Every problem is named (a key id, a field); no
    /// error ever contains key material.
    public init(json: some DataProtocol) throws(EncryptionError) {
        let document: KeyringDocument
        do {
            document = try JSONDecoder().decode(KeyringDocument.self, from: Data(json))
        } catch let DecodingError.keyNotFound(key, _) {
            throw EncryptionError(.invalidKeyring, "the keyring document has no \"\(key.stringValue)\" field")
        } catch let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context) {
            let path = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
            throw EncryptionError(.invalidKeyring, "the keyring field \(path.isEmpty ? "(root)" : path) has the wrong type")
        } catch {
            throw EncryptionError(.invalidKeyring, "the keyring is not a JSON document of the documented shape")
        }
        var entries: [Entry] = []
        for entry in document.keys {
            let (id, status) = try Self.validated(id: entry.id, status: entry.status)
            guard let bytes = Data(base64Encoded: entry.key) else {
                throw EncryptionError(.invalidKeyring, "key \(entry.id) is not base64")
            }
            entries.append(Entry(id: id, status: status, key: SymmetricKey(data: bytes), organizationID: try Self.organization(entry.organization_id, key: id)))
        }
        guard let blind = Data(base64Encoded: document.blind_index_key) else {
            throw EncryptionError(.invalidKeyring, "the blind-index key is not base64")
        }
        let backup = try document.backup_encryption_key.map { text throws(EncryptionError) in
            try Self.backupKey(base64: text, from: "backup_encryption_key")
        }
        try self.init(entries: entries, blindIndexKey: SymmetricKey(data: blind), backupKey: backup)
    }

    /// A document entry's id and status, checked.
    package static func validated(id: Int64, status: String) throws(EncryptionError) -> (UInt32, Status) {
        guard let key = UInt32(exactly: id) else {
            throw EncryptionError(.invalidKeyring, "key id \(id) is out of range; ids are 1 to 4294967295")
        }
        guard let parsed = Status(rawValue: status) else {
            throw EncryptionError(.invalidKeyring, "key \(id) has an unknown status; use primary, decrypt-only or disabled")
        }
        return (key, parsed)
    }

    /// A document entry's `organization_id`, checked.
    package static func organization(_ text: String?, key id: UInt32) throws(EncryptionError) -> UUID? {
        guard let text else { return nil }
        guard let organization = UUID(uuidString: text) else {
            throw EncryptionError(.invalidKeyring, "key \(id) has an organization_id that is not a UUID")
        }
        return organization
    }

    /// A new keyring with one random primary key (id 1) and a random blind-index key, and its
    /// document: for the embedded default's generated local keyring and for tests.
    public static func generate() -> (keyring: Keyring, document: String) {
        let key = SymmetricKey(size: .bits256)
        let blind = SymmetricKey(size: .bits256)
        func base64(_ key: SymmetricKey) -> String { key.withUnsafeBytes { Data($0).base64EncodedString() } }
        let document = #"{"keys":[{"id":1,"status":"primary","key":"\#(base64(key))"}],"blind_index_key":"\#(base64(blind))"}"#
        return (try! Keyring(keys: [(1, .primary, key)], blindIndexKey: blind), document)
    }

    /// Ids, statuses and owners only.
    public var description: String {
        let list = keys.values.sorted { $0.id < $1.id }
            .map { "\($0.id):\($0.status.rawValue)\($0.organizationID.map { "@\($0.lowercasedString)" } ?? "")" }.joined(separator: ", ")
        return "Keyring(primary: \(primaryID), keys: [\(list)]\(backupKey == nil ? "" : ", backup key: loaded"))"
    }
}

/// The `ENCRYPTION_KEYS` document as JSON.
struct KeyringDocument: Decodable {
    struct Entry: Decodable {
        let id: Int64
        let status: String
        let key: String
        let organization_id: String?
    }
    let keys: [Entry]
    let blind_index_key: String
    let backup_encryption_key: String?
}
