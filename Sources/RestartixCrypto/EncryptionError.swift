public import RestartixKit

/// A keyring or column-cipher failure. Descriptions name the problem (a key id, a field, a byte count), never a
/// key, a secret or a plaintext, so they are safe to log and to return.
public typealias EncryptionError = DomainError<EncryptionErrorDomain>

/// The `encryption` error domain: its codes' HTTP statuses and transience.
public enum EncryptionErrorDomain: ErrorDomain {
    public static let name = "encryption"

    /// 422 for a value to seal that is not valid input; 503 when the keyring cannot be read
    /// from its source; 500 otherwise (a sealed value that does not open is the platform's
    /// fault, never the caller's).
    public static func httpStatus(for code: ErrorCode<EncryptionErrorDomain>) -> Int {
        switch code {
        case .invalidInput: 422
        case .keyringUnavailable: 503
        default: 500
        }
    }

    /// The keyring's source could not be read this time (a secret store that is down).
    public static func isTransient(_ code: ErrorCode<EncryptionErrorDomain>) -> Bool { code == .keyringUnavailable }
}

extension ErrorCode where Domain == EncryptionErrorDomain {
    /// The keyring document is unusable: malformed JSON, a key that is not 32 bytes, a
    /// duplicate id, not exactly one primary. Boot must stop.
    public static var invalidKeyring: Self { Self("invalidKeyring") }
    /// The keyring could not be read from its source (missing variable, unreadable file).
    public static var keyringUnavailable: Self { Self("keyringUnavailable") }
    /// A sealed value is shorter than a header, nonce and tag; a stream (``StreamDecryptor``)
    /// ends without its final segment.
    public static var truncated: Self { Self("truncated") }
    /// The format version byte is not one this kit reads.
    public static var unsupportedFormat: Self { Self("unsupportedFormat") }
    /// The algorithm byte is not one this kit reads.
    public static var unsupportedAlgorithm: Self { Self("unsupportedAlgorithm") }
    /// The value names a key id the keyring does not hold.
    public static var unknownKey: Self { Self("unknownKey") }
    /// The value names a key that is disabled: it must have been re-encrypted first.
    public static var keyDisabled: Self { Self("keyDisabled") }
    /// Authentication failed: a byte was changed, or the value was sealed for another table,
    /// column, organization or row (its associated data differs). Never garbage plaintext.
    public static var authenticationFailed: Self { Self("authenticationFailed") }
    /// A value to seal is not valid input (too large, or text that is not UTF-8 on open).
    public static var invalidInput: Self { Self("invalidInput") }
}
