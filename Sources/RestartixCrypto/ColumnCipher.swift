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

    static func isIdentifier(_ text: String) -> Bool {
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
    private let subkeys = Mutex<[SubkeyID: GCMKey]>([:])
    private let usage: [UInt32: KeyUsage]
    private let logger: Logger

    /// Seals under one key: a lock-free count and its metric, made once per key.
    private final class KeyUsage: Sendable {
        let seals = Atomic<Int>(0)
        let counter: Counter
        init(keyID: UInt32) { counter = Counter(label: "restartix_crypto_seals_total", dimensions: [("key_id", "\(keyID)")]) }
    }

    /// Creates a cipher over `keyring`.
    public init(keyring: Keyring, warningThreshold: Int = 1 << 30, logger: Logger = Logger(label: "restartix.crypto")) {
        self.keyring = keyring
        self.warningThreshold = warningThreshold
        self.logger = logger
        self.usage = Dictionary(uniqueKeysWithValues: keyring.keys.keys.map { ($0, KeyUsage(keyID: $0)) })
    }

    /// Seals `plaintext` for `place` under the primary key.
    public func seal(_ plaintext: some DataProtocol, at place: ColumnPlace) throws(EncryptionError) -> Data {
        try seal(plaintext, at: place, nonce: nil)
    }

    /// Seals UTF-8 text for `place`.
    public func seal(_ text: String, at place: ColumnPlace) throws(EncryptionError) -> Data {
        try seal(Data(text.utf8), at: place)
    }

    /// `nonce` is for known-answer tests only; `nil` draws 12 random bytes from the DRBG.
    func seal(_ plaintext: some DataProtocol, at place: ColumnPlace, nonce: AES.GCM.Nonce?) throws(EncryptionError) -> Data {
        guard plaintext.count <= Self.maximumPlaintext else {
            throw EncryptionError(.invalidInput, "a column value is at most \(Self.maximumPlaintext) bytes")
        }
        let key = keyring.primary(for: place.organizationID)
        let header = Self.header(keyID: key.id)
        let engine = try subkey(key, place)
        let input = (plaintext as? Data) ?? Data(plaintext)
        let fixed = nonce.map { Array($0) }
        var out = Data(count: header.count + 12 + input.count + 16)
        let sealed = out.withUnsafeMutableBytes { buffer -> Bool in
            buffer.copyBytes(from: header)
            return input.withUnsafeBytes { engine.seal($0, aad: Self.associatedData(header, place), nonce: fixed, into: UnsafeMutableRawBufferPointer(rebasing: buffer[header.count...])) }
        }
        guard sealed else { throw EncryptionError(.invalidInput, "the value could not be sealed") }
        count(key.id)
        return out
    }

    /// Opens a value sealed for `place`.
    public func open(_ sealed: some DataProtocol, at place: ColumnPlace) throws(EncryptionError) -> Data {
        let bytes = (sealed as? Data) ?? Data(sealed)
        guard bytes.count >= Self.overhead else {
            throw EncryptionError(.truncated, "a sealed value is at least \(Self.overhead) bytes; this one is \(bytes.count)")
        }
        let start = bytes.startIndex
        guard bytes[start] == Self.formatVersion else {
            throw EncryptionError(.unsupportedFormat, "format version \(bytes[start]) is not supported")
        }
        guard bytes[start + 1] == Self.algorithm else {
            throw EncryptionError(.unsupportedAlgorithm, "algorithm \(bytes[start + 1]) is not supported")
        }
        let keyID = UInt32(bytes[start + 2]) << 24 | UInt32(bytes[start + 3]) << 16 | UInt32(bytes[start + 4]) << 8 | UInt32(bytes[start + 5])
        guard let key = keyring.keys[keyID] else { throw EncryptionError(.unknownKey, "key \(keyID) is not in the keyring") }
        guard key.status != .disabled else { throw EncryptionError(.keyDisabled, "key \(keyID) is disabled") }
        if let owner = key.organizationID, owner != place.organizationID {
            throw EncryptionError(.authenticationFailed, "the value is under key \(keyID), which belongs to another organization")
        }
        let engine = try subkey(key, place)
        let aad = Self.associatedData(Self.header(keyID: keyID), place)
        let opened = bytes.withUnsafeBytes { engine.open(UnsafeRawBufferPointer(rebasing: $0[6...]), aad: aad) }
        guard let opened else {
            throw EncryptionError(.authenticationFailed, "the value does not authenticate: it was changed, or sealed for another place")
        }
        return opened
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

    static func header(keyID: UInt32) -> [UInt8] {
        [formatVersion, algorithm, UInt8(keyID >> 24), UInt8(keyID >> 16 & 0xFF), UInt8(keyID >> 8 & 0xFF), UInt8(keyID & 0xFF)]
    }

    static func associatedData(_ header: [UInt8], _ place: ColumnPlace) -> [UInt8] {
        var aad: [UInt8] = []
        aad.reserveCapacity(6 + 16 + place.table.utf8.count + place.column.utf8.count + 32)
        aad.append(contentsOf: header)
        aad.appendField(place.table.utf8)
        aad.appendField(place.column.utf8)
        aad.appendField(place.organizationID)
        aad.appendField(place.rowID)
        return aad
    }

    /// The engine for a key and column; table and column are checked to be identifiers when the
    /// subkey is first derived (a cached subkey was checked then).
    private func subkey(_ key: Keyring.Key, _ place: ColumnPlace) throws(EncryptionError) -> GCMKey {
        let id = SubkeyID(keyID: key.id, table: place.table, column: place.column)
        if let cached = subkeys.withLock({ $0[id] }) { return cached }
        guard place.isValid else { throw EncryptionError(.invalidInput, "table and column must be SQL identifiers (a-z, 0-9, _)") }
        var info = Data("\(place.table)\u{0}\(place.column)".utf8)
        info.insert(contentsOf: withUnsafeBytes(of: key.id.bigEndian) { Array($0) }, at: 0)
        let derived = HKDF<SHA256>.deriveKey(
            inputKeyMaterial: key.material, salt: Data("restartix/column/v1".utf8), info: info, outputByteCount: 32
        )
        let engine = GCMKey(derived)
        return subkeys.withLock { cache in
            if let existing = cache[id] { return existing }
            cache[id] = engine
            return engine
        }
    }

    private func count(_ keyID: UInt32) {
        guard let usage = usage[keyID] else { return }
        let total = usage.seals.wrappingAdd(1, ordering: .relaxed).newValue
        usage.counter.increment()
        if total == warningThreshold {
            logger.warning(
                "Many seals under one key in this process: rotate well before 2^32 per column",
                metadata: ["key_id": "\(keyID)", "seals": "\(total)"]
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
