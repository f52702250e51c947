public import Foundation

/// What a presigned URL lets its holder do with one object, without credentials of its own.
public enum PresignedAccess: Sendable, Hashable {
    /// `GET` the object.
    case download
    /// `PUT` the object: exactly `contentLength` bytes of `contentType`, stored with
    /// `serverSideEncryption` (S3) when given. The values are part of the signature: a request
    /// with another type, another length or without the encryption header is refused, so a
    /// caller checks its MIME allow-list and size cap before signing and the URL enforces them.
    /// An upload never replaces an object: `If-None-Match: *` is signed too, so a second PUT
    /// with the same URL (within its minutes) is refused (S3: 412 `PreconditionFailed`; the
    /// local store: 409).
    case upload(contentType: String, contentLength: Int, serverSideEncryption: ServerSideEncryption? = nil)

    /// How long a presigned upload lives unless asked otherwise: 5 minutes (the platform's
    /// uploads).
    public static let uploadLifetime: Duration = .seconds(300)
    /// How long a presigned download lives unless asked otherwise: 15 minutes.
    public static let downloadLifetime: Duration = .seconds(900)
    /// The longest any presigned URL lives: 7 days (S3's own limit).
    public static let maximumLifetime: Duration = .seconds(7 * 86_400)

    /// The HTTP method the URL is for.
    public var method: String {
        switch self {
        case .download: "GET"
        case .upload: "PUT"
        }
    }

    /// The headers a request must send with exactly these values, lower-case names.
    public var requiredHeaders: [String: String] {
        guard case .upload(let type, let length, let encryption) = self else { return [:] }
        var headers = ["content-type": type, "content-length": String(length), "if-none-match": "*"]
        for (name, value) in encryption?.headers ?? [] { headers[name] = value }
        return headers
    }

    /// Checks what is signed: a lifetime of 1 second to 7 days, a media type that is a
    /// `type/subtype` token, a length of 0 or more. `invalidPresign` names the rule.
    public func validate(expires: Duration) throws(ObjectStoreError) {
        guard expires >= .seconds(1), expires <= Self.maximumLifetime else {
            throw ObjectStoreError(.invalidPresign, "a presigned URL lives between 1 second and 7 days")
        }
        guard case .upload(let type, let length, _) = self else { return }
        guard length >= 0 else { throw ObjectStoreError(.invalidPresign, "a presigned upload's content length is 0 or more") }
        guard Self.isMediaType(type) else { throw ObjectStoreError(.invalidPresign, "a presigned upload's content type is a type/subtype media type") }
    }

    /// `type/subtype`, each an RFC 9110 token, with no parameters: what the platform's MIME
    /// allow-lists name.
    static func isMediaType(_ text: String) -> Bool {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        let token = Set("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
        return text.utf8.count <= 255 && parts.count == 2 && parts.allSatisfy { !$0.isEmpty && $0.allSatisfy(token.contains) }
    }
}

/// S3 server-side encryption of an object: `x-amz-server-side-encryption` (and the KMS key's
/// id), sent with the upload and, for a presigned upload, signed into its URL. The local store
/// keeps files as they are written (its directory's disk encryption is the operator's).
public enum ServerSideEncryption: Sendable, Hashable, Codable {
    /// SSE-S3 (`AES256`).
    case s3
    /// SSE-KMS (`aws:kms`), under `keyID` or the bucket's default KMS key when `nil`.
    case kms(keyID: String?)

    /// The encryption `x-amz-server-side-encryption` names (`AES256`, `aws:kms` with the KMS
    /// key's id), nil for none or anything else: how S3 reports it and how a request asks.
    public init?(header: String?, kmsKeyID: String?) {
        switch header {
        case "AES256": self = .s3
        case "aws:kms": self = .kms(keyID: kmsKeyID)
        default: return nil
        }
    }

    /// The request headers that ask for it.
    public var headers: [(String, String)] {
        switch self {
        case .s3: [("x-amz-server-side-encryption", "AES256")]
        case .kms(let keyID): [("x-amz-server-side-encryption", "aws:kms")] + (keyID.map { [("x-amz-server-side-encryption-aws-kms-key-id", $0)] } ?? [])
        }
    }
}

/// A request anyone holding it may make until ``expiresAt``: an upload or a download URL for a
/// browser. The URL is a bearer credential for one object: hand it to the one client that asked,
/// never log it.
public struct PresignedRequest: Sendable, Hashable, CustomStringConvertible {
    /// `PUT` or `GET`.
    public let method: String
    /// The URL, signature included.
    public let url: URL
    /// Headers the request must carry with exactly these values (lower-case names): a PUT's
    /// content type and length, its encryption header.
    public let headers: [String: String]
    /// When the URL stops working.
    public let expiresAt: Date

    public init(method: String, url: URL, headers: [String: String], expiresAt: Date) {
        self.method = method
        self.url = url
        self.headers = headers
        self.expiresAt = expiresAt
    }

    /// The method and expiry; never the URL (it is a credential).
    public var description: String { "PresignedRequest(\(method), expires \(expiresAt))" }
}
