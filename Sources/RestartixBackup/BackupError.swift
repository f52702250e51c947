public import RestartixCore
import RestartixCrypto
import RestartixKit

/// What went wrong making, checking or restoring a backup. Each way a stored backup can be
/// damaged has a code of its own, so an operator (and a test) can tell a wrong key from a
/// missing piece from a flipped byte:
///
/// | code | meaning |
/// |---|---|
/// | `wrongKey` | the backup was made under another `BACKUP_ENCRYPTION_KEY` (both key ids named) |
/// | `invalidHeader` | the stream's header was changed |
/// | `authenticationFailed` | a segment's bytes were changed |
/// | `segmentMissing` | a segment was dropped from the middle |
/// | `segmentsReordered` | segments were swapped or moved |
/// | `truncated` | the object ends before its last segment |
/// | `trailingData` | bytes follow the last segment |
/// | `manifestTampered` | the manifest was changed (its MAC under the backup's key fails) |
/// | `manifestMismatch` | the object opens but its sizes or checksums are not the manifest's |
/// | `manifestInvalid` | the manifest is not a manifest of a format this kit reads |
/// | `notFound` | no such backup, or its data object is gone |
/// | `sourceFailed` | the program writing the plaintext (`pg_dump`) failed |
/// | `targetNotEmpty` | a restore target already holds tables |
/// | `targetFailed` | the program reading the plaintext (`pg_restore`) failed, or the restored database does not check out |
/// | `objectLockMissing` | the bucket has no Object Lock where the run requires it |
/// | `storage` | the object store failed (its detail says how) |
/// | `invalidInput` | a bad argument (an id, a size, a missing key) |
///
/// Details name ids, keys of objects and sizes, never key material or row data.
public typealias BackupError = DomainError<BackupErrorDomain>

/// The old name of ``BackupErrorDomain``.
@available(*, deprecated, renamed: "BackupErrorDomain")
public typealias BackupErrors = BackupErrorDomain

/// The backup domain (``BackupError``).
public enum BackupErrorDomain: ErrorDomain {
    public static let name = "backup"

    public static func httpStatus(for code: ErrorCode<BackupErrorDomain>) -> Int {
        switch code {
        case .invalidInput, .targetNotEmpty: 400
        case .notFound: 404
        case .storage: 503
        default: 500
        }
    }

    public static func isTransient(_ code: ErrorCode<BackupErrorDomain>) -> Bool { code == .storage }
}

extension ErrorCode where Domain == BackupErrorDomain {
    public static var wrongKey: Self { Self("wrongKey") }
    public static var invalidHeader: Self { Self("invalidHeader") }
    public static var authenticationFailed: Self { Self("authenticationFailed") }
    public static var segmentMissing: Self { Self("segmentMissing") }
    public static var segmentsReordered: Self { Self("segmentsReordered") }
    public static var truncated: Self { Self("truncated") }
    public static var trailingData: Self { Self("trailingData") }
    public static var manifestTampered: Self { Self("manifestTampered") }
    public static var manifestMismatch: Self { Self("manifestMismatch") }
    public static var manifestInvalid: Self { Self("manifestInvalid") }
    public static var notFound: Self { Self("notFound") }
    public static var sourceFailed: Self { Self("sourceFailed") }
    public static var targetNotEmpty: Self { Self("targetNotEmpty") }
    public static var targetFailed: Self { Self("targetFailed") }
    public static var objectLockMissing: Self { Self("objectLockMissing") }
    public static var storage: Self { Self("storage") }
    public static var invalidInput: Self { Self("invalidInput") }
}

extension DomainError where Domain == BackupErrorDomain {
    /// The cipher's refusal under the same code (`authenticationFailed`, `segmentMissing`,
    /// `wrongKey`, ...), so a damaged backup reads the same from the cipher and from here.
    init(_ error: EncryptionError, while action: String) {
        self.init(ErrorCode(error.code.name), "\(action): \(error.detail)")
    }

    /// A store failure, saying what was being done.
    init(_ error: ObjectStoreError, while action: String) {
        self.init(.storage, "\(action): \(error.code): \(error.detail)")
    }
}
