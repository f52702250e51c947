public import RestartixKit

/// A keyring or column-cipher failure. Descriptions name the problem (a key id, a field, a byte count), never a
/// key, a secret or a plaintext, so they are safe to log and to return.
public struct EncryptionError: RestartixError, Equatable {
    /// What went wrong.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        let name: String
        /// The keyring document is unusable: malformed JSON, a key that is not 32 bytes, a
        /// duplicate id, not exactly one primary. Boot must stop.
        public static let invalidKeyring = Code(name: "invalidKeyring")
        /// The keyring could not be read from its source (missing variable, unreadable file).
        public static let keyringUnavailable = Code(name: "keyringUnavailable")
        /// A sealed value is shorter than a header, nonce and tag.
        public static let truncated = Code(name: "truncated")
        /// The format version byte is not one this kit reads.
        public static let unsupportedFormat = Code(name: "unsupportedFormat")
        /// The algorithm byte is not one this kit reads.
        public static let unsupportedAlgorithm = Code(name: "unsupportedAlgorithm")
        /// The value names a key id the keyring does not hold.
        public static let unknownKey = Code(name: "unknownKey")
        /// The value names a key that is disabled: it must have been re-encrypted first.
        public static let keyDisabled = Code(name: "keyDisabled")
        /// Authentication failed: a byte was changed, or the value was sealed for another table,
        /// column, organization or row (its associated data differs). Never garbage plaintext.
        public static let authenticationFailed = Code(name: "authenticationFailed")
        /// A value to seal is not valid input (too large, or text that is not UTF-8 on open).
        public static let invalidInput = Code(name: "invalidInput")

        public var description: String { name }
    }

    /// The kind of failure.
    public let code: Code
    /// A short explanation that is safe to log and to show.
    public let detail: String

    /// Creates an error.
    public init(_ code: Code, _ detail: String) {
        self.code = code
        self.detail = detail
    }

    public static let domain = "encryption"
    public var codeName: String { code.name }
    public var safeDetail: String { detail }

    /// 422 for a value to seal that is not valid input; 503 when the keyring cannot be read
    /// from its source; 500 otherwise (a sealed value that does not open is the platform's
    /// fault, never the caller's).
    public var httpStatus: Int {
        switch code {
        case .invalidInput: 422
        case .keyringUnavailable: 503
        default: 500
        }
    }

    /// The keyring's source could not be read this time (a secret store that is down).
    public var isTransient: Bool { code == .keyringUnavailable }

    public var description: String { restartixDescription }
}
