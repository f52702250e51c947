public import RestartixKit
import Crypto
public import Foundation
public import Logging
import Metrics
import Synchronization

/// Where a sealed value lives: its table, column, clinic and row. Bound into the value's
/// associated data, so a value copied to another row, column or clinic does not open.
public struct ColumnPlace: Sendable, Hashable {
    /// The table (`patients`).
    public let table: String
    /// The column (`email`).
    public let column: String
    /// The clinic that owns the row; `nil` for platform rows (a provider's default credentials).
    public let organizationID: UUID?
    /// The row's id (client-generated, so known before the insert).
    public let rowID: UUID

    /// A place. Table and column are SQL identifiers: 1-63 characters of `a-z`, `0-9`, `_`.
    public init(table: String, column: String, organizationID: UUID?, rowID: UUID) {
        self.table = table
        self.column = column
        self.organizationID = organizationID
        self.rowID = rowID
    }

    var isValid: Bool { Self.isIdentifier(table) && Self.isIdentifier(column) }

    package static func isIdentifier(_ text: String) -> Bool {
        (1...63).contains(text.utf8.count) && text.utf8.allSatisfy { ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x5F }
    }
}

/// AES-256-GCM for database columns, with a self-describing format and the value bound to its
/// place. Reads like swift-crypto: ``seal(_:at:)`` and ``open(_:at:)``. The AES-GCM itself runs
/// through OpenSSL's EVP interface with a cached context per subkey and nonces from OpenSSL's
/// DRBG (libssl-dev); key derivation uses swift-crypto.
///
/// Format v1 (Documentation/RestartixCrypto.md):
///
/// | bytes | field |
/// |---|---|
/// | 1 | format version, `0x01` |
/// | 1 | algorithm, `0x01` = AES-256-GCM under an HKDF-SHA256 per-column subkey |
/// | 4 | key id, big-endian |
/// | 12 | random nonce |
/// | n | ciphertext |
/// | 16 | tag |
///
/// Associated data: the 6 header bytes, then table, column, organization id (16 bytes, or
/// empty) and row id (16 bytes), each prefixed with its length as a 4-byte big-endian integer.
/// The key sealing a column is `HKDF-SHA256(key, salt: "restartix/column/v1", info: key id
/// (4 bytes, big-endian) || table || 0x00 || column)`, so each column spends its own
/// random-nonce budget (2^32 seals per subkey).
///
/// Seals use the primary key (a clinic's own primary when it brings its own keys); opens accept
/// any key that is not disabled, and a clinic's own key only for that clinic's values. Every failure is a
/// ``EncryptionError`` — a changed byte, a value moved to another place, an unknown or disabled
/// key — never wrong plaintext.
public final class ColumnCipher: Sendable {
    /// Format version byte of values this cipher writes.
    public static let formatVersion: UInt8 = 1
    /// Algorithm byte of values this cipher writes.
    public static let algorithm: UInt8 = 1
    /// Bytes a sealed value adds to its plaintext: 6 header, 12 nonce, 16 tag.
    public static let overhead = 34
    /// Largest plaintext accepted (16 MiB): a column value, not a file.
    public static let maximumPlaintext = 16 << 20

    private struct SubkeyID: Hashable {
        let keyID: UInt32
        let table: String
        let column: String
    }

    /// The keyring in use.
    public let keyring: Keyring
    /// Seals per key id in this process above which a warning is logged (once per key). The
    /// random-nonce limit is 2^32 per subkey; fleet totals are in the
    /// `restartix_crypto_seals_total` metric, which is what to alert on.
    public let warningThreshold: Int
    private let subkeys = Mutex<[SubkeyID: Subkey]>([:])
    private let usage: [UInt32: KeyUsage]
    private let logger: Logger

    /// Seals under one key: a lock-free count and its metric, made once per key.
    private final class KeyUsage: Sendable {
        let keyID: UInt32
        let seals = Atomic<Int>(0)
        let counter: Counter
        init(keyID: UInt32) {
            self.keyID = keyID
            counter = Counter(label: "restartix_crypto_seals_total", dimensions: [("key_id", "\(keyID)")])
        }
    }

    /// One key's subkey for one column, with what every value under it shares: the first
    /// fields of the associated data (header, table, column), the key's owner and its counter.
    private final class Subkey: Sendable {
        let engine: GCMKey
        /// Header (6 bytes), then the table and column fields.
        let prefix: [UInt8]
        let owner: UUID?
        let usage: KeyUsage?

        init(engine: GCMKey, prefix: [UInt8], owner: UUID?, usage: KeyUsage?) {
            self.engine = engine
            self.prefix = prefix
            self.owner = owner
            self.usage = usage
        }

        /// Calls `body` with the whole associated data for a value of this column in clinic
        /// `organization`, row `row`, built on the stack.
        func withAssociatedData<R>(organization: UUID?, row: UUID, _ body: (UnsafeRawBufferPointer) -> R) -> R {
            let count = prefix.count + (organization == nil ? 4 : 20) + 20
            return withUnsafeTemporaryAllocation(byteCount: count, alignment: 1) { buffer in
                prefix.withUnsafeBytes { buffer.copyMemory(from: $0) }
                var offset = prefix.count
                func field(_ id: UUID?) {
                    let length: UInt32 = id == nil ? 0 : 16
                    withUnsafeBytes(of: length.bigEndian) { UnsafeMutableRawBufferPointer(rebasing: buffer[offset..<offset + 4]).copyMemory(from: $0) }
                    offset += 4
                    if let id {
                        withUnsafeBytes(of: id.uuid) { UnsafeMutableRawBufferPointer(rebasing: buffer[offset..<offset + 16]).copyMemory(from: $0) }
                        offset += 16
                    }
                }
                field(organization)
                field(row)
                return body(UnsafeRawBufferPointer(buffer))
            }
        }
    }

    /// Creates a cipher over `keyring`.
    public init(keyring: Keyring, warningThreshold: Int = 1 << 30, logger: Logger = Logger(label: "restartix.crypto")) {
        self.keyring = keyring
        self.warningThreshold = warningThreshold
        self.logger = logger
        self.usage = Dictionary(uniqueKeysWithValues: keyring.keys.keys.map { ($0, KeyUsage(keyID: $0)) })
    }

    /// Seals `plaintext` for `place` under the primary key.
    public func seal(_ plaintext: Data, at place: ColumnPlace) throws(EncryptionError) -> Data {
        try plaintext.withUnsafeBytes { seal($0, at: place, nonce: nil) }.get()
    }

    /// Seals `plaintext` for `place` under the primary key.
    public func seal(_ plaintext: some DataProtocol, at place: ColumnPlace) throws(EncryptionError) -> Data {
        try seal(plaintext, at: place, nonce: nil)
    }

    /// Seals UTF-8 text for `place`.
    public func seal(_ text: String, at place: ColumnPlace) throws(EncryptionError) -> Data {
        var text = text
        return try text.withUTF8 { seal(UnsafeRawBufferPointer($0), at: place, nonce: nil) }.get()
    }

    /// `nonce` is for known-answer tests only; `nil` takes a random one.
    func seal(_ plaintext: some DataProtocol, at place: ColumnPlace, nonce: AES.GCM.Nonce?) throws(EncryptionError) -> Data {
        let body = { (bytes: UnsafeRawBufferPointer) -> Result<Data, EncryptionError> in
            guard let nonce else { return self.seal(bytes, at: place, nonce: nil) }
            return nonce.withUnsafeBytes { self.seal(bytes, at: place, nonce: $0) }
        }
        if let result = plaintext.withContiguousStorageIfAvailable({ body(UnsafeRawBufferPointer($0)) }) { return try result.get() }
        return try Array(plaintext).withUnsafeBytes(body).get()
    }

    private func seal(_ plaintext: UnsafeRawBufferPointer, at place: ColumnPlace, nonce: UnsafeRawBufferPointer?) -> Result<Data, EncryptionError> {
        guard plaintext.count <= Self.maximumPlaintext else {
            return .failure(EncryptionError(.invalidInput, "a column value is at most \(Self.maximumPlaintext) bytes"))
        }
        let subkey: Subkey
        do { subkey = try self.subkey(keyring.primaryID(for: place.organizationID), place) } catch { return .failure(error) }
        // The value is written straight into memory that the returned `Data` then owns.
        let count = Self.overhead + plaintext.count
        let out = UnsafeMutableRawBufferPointer(start: malloc(count), count: count)
        guard let base = out.baseAddress else { return .failure(EncryptionError(.invalidInput, "no memory for a sealed value")) }
        subkey.prefix.withUnsafeBytes { base.copyMemory(from: $0.baseAddress!, byteCount: 6) }
        let sealed = subkey.withAssociatedData(organization: place.organizationID, row: place.rowID) { aad in
            subkey.engine.seal(plaintext, aad: aad, nonce: nonce, into: UnsafeMutableRawBufferPointer(rebasing: out[6...]))
        }
        guard sealed else {
            free(base)
            return .failure(EncryptionError(.invalidInput, "the value could not be sealed"))
        }
        if let usage = subkey.usage { self.count(usage) }
        return .success(Data(bytesNoCopy: base, count: count, deallocator: .free))
    }

    /// Opens a value sealed for `place`.
    public func open(_ sealed: Data, at place: ColumnPlace) throws(EncryptionError) -> Data {
        try sealed.withUnsafeBytes { open($0, at: place) }.get()
    }

    /// Opens a value sealed for `place`.
    public func open(_ sealed: some DataProtocol, at place: ColumnPlace) throws(EncryptionError) -> Data {
        if let result = sealed.withContiguousStorageIfAvailable({ open(UnsafeRawBufferPointer($0), at: place) }) { return try result.get() }
        return try Array(sealed).withUnsafeBytes { open($0, at: place) }.get()
    }

    private func open(_ bytes: UnsafeRawBufferPointer, at place: ColumnPlace) -> Result<Data, EncryptionError> {
        guard bytes.count >= Self.overhead else {
            return .failure(EncryptionError(.truncated, "a sealed value is at least \(Self.overhead) bytes; this one is \(bytes.count)"))
        }
        guard bytes[0] == Self.formatVersion else {
            return .failure(EncryptionError(.unsupportedFormat, "format version \(bytes[0]) is not supported"))
        }
        guard bytes[1] == Self.algorithm else {
            return .failure(EncryptionError(.unsupportedAlgorithm, "algorithm \(bytes[1]) is not supported"))
        }
        let keyID = UInt32(bytes[2]) << 24 | UInt32(bytes[3]) << 16 | UInt32(bytes[4]) << 8 | UInt32(bytes[5])
        let subkey: Subkey
        do { subkey = try self.subkey(keyID, place) } catch { return .failure(error) }
        if let owner = subkey.owner, owner != place.organizationID {
            return .failure(EncryptionError(.authenticationFailed, "the value is under key \(keyID), which belongs to another organization"))
        }
        let count = bytes.count - Self.overhead
        guard count > 0 else {
            let opened = subkey.withAssociatedData(organization: place.organizationID, row: place.rowID) { aad in
                subkey.engine.open(UnsafeRawBufferPointer(rebasing: bytes[6...]), aad: aad, into: UnsafeMutableRawBufferPointer(start: nil, count: 0))
            }
            return opened ? .success(Data()) : .failure(Self.notAuthentic)
        }
        let out = UnsafeMutableRawBufferPointer(start: malloc(count), count: count)
        guard let base = out.baseAddress else { return .failure(EncryptionError(.invalidInput, "no memory for an opened value")) }
        let opened = subkey.withAssociatedData(organization: place.organizationID, row: place.rowID) { aad in
            subkey.engine.open(UnsafeRawBufferPointer(rebasing: bytes[6...]), aad: aad, into: out)
        }
        guard opened else {
            free(base)  // zeroed by the engine
            return .failure(Self.notAuthentic)
        }
        return .success(Data(bytesNoCopy: base, count: count, deallocator: .free))
    }

    private static var notAuthentic: EncryptionError {
        EncryptionError(.authenticationFailed, "the value does not authenticate: it was changed, or sealed for another place")
    }

    /// Opens a value sealed from text.
    public func openString(_ sealed: some DataProtocol, at place: ColumnPlace) throws(EncryptionError) -> String {
        let data = try open(sealed, at: place)
        guard let text = String(data: data, encoding: .utf8) else { throw EncryptionError(.invalidInput, "the value is not UTF-8 text") }
        return text
    }

    /// The key id in a sealed value's header, without opening it (`nil` if it is not a v1
    /// value). The re-encryption job finds rows to rewrite with the same bytes in SQL.
    public static func keyID(of sealed: some DataProtocol) -> UInt32? {
        let bytes = Array(sealed.prefix(6))
        guard bytes.count == 6, bytes[0] == formatVersion, bytes[1] == algorithm else { return nil }
        return bytes[2...5].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
    }

    /// Seals made in this process under `keyID`.
    public func sealCount(keyID: UInt32) -> Int { usage[keyID]?.seals.load(ordering: .relaxed) ?? 0 }

    // MARK: - Internals

    package static func header(keyID: UInt32) -> [UInt8] {
        [formatVersion, algorithm, UInt8(keyID >> 24), UInt8(keyID >> 16 & 0xFF), UInt8(keyID >> 8 & 0xFF), UInt8(keyID & 0xFF)]
    }

    /// The subkey of key `keyID` for the place's column: from the cache, or derived once. A key
    /// that is missing or disabled is refused here; table and column are checked to be
    /// identifiers when the subkey is first derived (a cached subkey was checked then).
    private func subkey(_ keyID: UInt32, _ place: ColumnPlace) throws(EncryptionError) -> Subkey {
        let id = SubkeyID(keyID: keyID, table: place.table, column: place.column)
        if let cached = subkeys.withLock({ $0[id] }) { return cached }
        guard let key = keyring.keys[keyID] else { throw EncryptionError(.unknownKey, "key \(keyID) is not in the keyring") }
        guard key.status != .disabled else { throw EncryptionError(.keyDisabled, "key \(keyID) is disabled") }
        guard place.isValid else { throw EncryptionError(.invalidInput, "table and column must be SQL identifiers (a-z, 0-9, _)") }
        var info = Data("\(place.table)\u{0}\(place.column)".utf8)
        info.insert(contentsOf: withUnsafeBytes(of: key.id.bigEndian) { Array($0) }, at: 0)
        let derived = HKDF<SHA256>.deriveKey(
            inputKeyMaterial: key.material, salt: Data("restartix/column/v1".utf8), info: info, outputByteCount: 32
        )
        var prefix = Self.header(keyID: keyID)
        prefix.appendField(place.table.utf8)
        prefix.appendField(place.column.utf8)
        let subkey = Subkey(engine: GCMKey(derived), prefix: prefix, owner: key.organizationID, usage: usage[keyID])
        return subkeys.withLock { cache in
            if let existing = cache[id] { return existing }
            cache[id] = subkey
            return subkey
        }
    }

    private func count(_ usage: KeyUsage) {
        let total = usage.seals.wrappingAdd(1, ordering: .relaxed).newValue
        usage.counter.increment()
        if total == warningThreshold {
            logger.warning(
                "Many seals under one key in this process: rotate well before 2^32 per column",
                metadata: ["key_id": "\(usage.keyID)", "seals": "\(total)"]
            )
        }
    }
}

extension RangeReplaceableCollection<UInt8> {
    /// Appends `bytes` prefixed with their count as a 4-byte big-endian integer, so adjacent
    /// fields can never be shifted into one another.
    mutating func appendField(_ bytes: some Collection<UInt8>) {
        let n = UInt32(bytes.count)
        append(contentsOf: [UInt8(n >> 24), UInt8(n >> 16 & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n & 0xFF)])
        append(contentsOf: bytes)
    }

    /// A UUID's 16 bytes as a field, or an empty field for `nil`.
    mutating func appendField(_ id: UUID?) {
        guard let id else { return appendField(EmptyCollection<UInt8>()) }
        Swift.withUnsafeBytes(of: id.uuid) { appendField($0) }
    }
}
