import Crypto
public import Foundation

/// Keyed blind indexes for equality lookup on sealed columns: HMAC-SHA256 under the keyring's
/// blind-index key (never a column key) over the organization, the table, the column and the
/// normalized value, each length-prefixed. Stored in a column of its own (`patients.email_index`); equal
/// values in one clinic and column give equal indexes, nothing else does, and without the key
/// an index says nothing about its value. Including the organization keeps two clinics' indexes
/// of the same email unrelated.
public struct BlindIndex: Sendable {
    private let key: SymmetricKey

    /// The blind index of `keyring`.
    public init(keyring: Keyring) { self.key = keyring.blindIndexMaterial }

    /// The 32-byte index of `value` (already normalized: see ``normalizedEmail(_:)``).
    public func index(_ value: String, table: String, column: String, organizationID: UUID?) -> Data {
        var message = Data("restartix/blind-index/v1".utf8)
        message.appendField(organizationID)
        message.appendField(table.utf8)
        message.appendField(column.utf8)
        message.appendField(value.utf8)
        return Data(HMAC<SHA256>.authenticationCode(for: message, using: key))
    }

    /// An email as indexed: surrounding whitespace removed, Unicode NFC, lower-cased.
    public static func normalizedEmail(_ email: String) -> String {
        email.trimmingCharacters(in: .whitespacesAndNewlines).precomposedStringWithCanonicalMapping.lowercased()
    }
}
