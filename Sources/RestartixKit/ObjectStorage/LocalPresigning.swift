public import Crypto
public import Foundation

extension LocalObjectStore {
    /// How a local store signs URLs: the base URL of the HTTP route that serves its objects
    /// (the Core API's `/v1/objects` in the embedded setup), and the HMAC key that signs and
    /// verifies them. Only a process holding the key can check a URL, so the route runs where
    /// the store was made with the same key; a key made at start (``random(baseURL:)``) means
    /// URLs die with the process, which their minutes-long lifetimes allow.
    public struct Presigning: Sendable {
        /// The serving route's URL; an object's URL is this followed by its key's segments.
        public let baseURL: URL
        let key: SymmetricKey

        /// Signing under `key` (at least 32 bytes), URLs under `baseURL` (http or https).
        public init(baseURL: URL, key: SymmetricKey) throws(ObjectStoreError) {
            guard key.bitCount >= 256 else { throw ObjectStoreError(.invalidPresign, "a presigning key is at least 32 bytes") }
            guard let scheme = baseURL.scheme?.lowercased(), ["http", "https"].contains(scheme), baseURL.host != nil, baseURL.query == nil else {
                throw ObjectStoreError(.invalidPresign, "a presigning base URL is an http(s) URL without a query")
            }
            self.baseURL = baseURL
            self.key = key
        }

        /// Signing under a fresh random key.
        public static func random(baseURL: URL) throws(ObjectStoreError) -> Presigning {
            try Presigning(baseURL: baseURL, key: SymmetricKey(size: .bits256))
        }
    }

    /// A URL for `access` to `key`, as ``ObjectStore/presign(_:for:expires:)`` describes: the
    /// query carries `X-Restartix-Expires` (Unix seconds) and `X-Restartix-Signature`, an
    /// HMAC-SHA256 over the method, the key, the expiry and the required headers' values.
    public func presign(_ key: ObjectKey, for access: PresignedAccess, expires: Duration) throws(ObjectStoreError) -> PresignedRequest {
        guard let presigning else {
            throw ObjectStoreError(.presignUnavailable, "this local store was made without a base URL and key to presign with")
        }
        try access.validate(expires: expires)
        let expiresAt = (clock().timeIntervalSince1970 + Double(expires.components.seconds)).rounded(.down)
        let expiry = String(Int64(expiresAt))
        let signature = Self.signature(method: access.method, key: key, expiry: expiry, headers: access.requiredHeaders, using: presigning.key)
        // Each segment encoded on its own: `/` stays the separator, everything else a key may
        // hold (spaces, `?`, `#`, `%`, non-ASCII) is escaped.
        let path = key.value.split(separator: "/").map { Self.escape(String($0)) }.joined(separator: "/")
        var base = presigning.baseURL.absoluteString
        if base.hasSuffix("/") { base.removeLast() }
        guard let url = URL(string: "\(base)/\(path)?X-Restartix-Expires=\(expiry)&X-Restartix-Signature=\(Base64URL.encode(signature))") else {
            throw ObjectStoreError(.invalidPresign, "the presigned URL could not be formed")
        }
        return PresignedRequest(method: access.method, url: url, headers: access.requiredHeaders, expiresAt: Date(timeIntervalSince1970: expiresAt))
    }

    /// The store's own verifier, for the route that serves its presigned URLs: checks that a
    /// `method` request for `key` (the path after the base URL, decoded) with this `query` and
    /// these `headers` (lower-case names; a PUT's `content-type`, `content-length`,
    /// `if-none-match` and any encryption header) is one this store signed and that it has not expired. Returns what it
    /// grants, so the route can hold an upload to its signed length. `presignRefused` for a
    /// missing or wrong signature (any change to the key, method, expiry or a signed header
    /// value), `presignExpired` after the expiry; neither names more than the rule.
    public func verifyPresigned(method: String, key: ObjectKey, query: [String: String], headers: [String: String]) throws(ObjectStoreError) -> PresignedAccess {
        guard let presigning else {
            throw ObjectStoreError(.presignUnavailable, "this local store was made without a base URL and key to presign with")
        }
        guard let expiry = query["X-Restartix-Expires"], let expiresAt = Int64(expiry), expiry == String(expiresAt),
              let signatureText = query["X-Restartix-Signature"], let signature = Base64URL.decode(signatureText)
        else {
            throw ObjectStoreError(.presignRefused, "the request carries no presigned-URL signature")
        }
        let access: PresignedAccess
        switch method.uppercased() {
        case "GET", "HEAD":
            access = .download
        case "PUT":
            guard let type = headers["content-type"], let lengthText = headers["content-length"], let length = Int(lengthText), length >= 0 else {
                throw ObjectStoreError(.presignRefused, "a presigned upload sends the content type and length it was signed for")
            }
            // Signed, as S3 signs it: the request must send it (the store never replaces a file).
            guard headers["if-none-match"] == "*" else {
                throw ObjectStoreError(.presignRefused, "a presigned upload sends If-None-Match: * as it was signed")
            }
            let encryption = ServerSideEncryption(
                header: headers["x-amz-server-side-encryption"], kmsKeyID: headers["x-amz-server-side-encryption-aws-kms-key-id"]
            )
            access = .upload(contentType: type, contentLength: length, serverSideEncryption: encryption)
        default:
            throw ObjectStoreError(.presignRefused, "a presigned URL is for GET or PUT")
        }
        // isValidAuthenticationCode compares in constant time.
        let input = Self.signingInput(method: access.method, key: key, expiry: expiry, headers: access.requiredHeaders)
        guard HMAC<SHA256>.isValidAuthenticationCode(signature, authenticating: input, using: presigning.key) else {
            throw ObjectStoreError(.presignRefused, "the request does not match its presigned URL's signature")
        }
        guard Double(expiresAt) >= clock().timeIntervalSince1970 else {
            throw ObjectStoreError(.presignExpired, "the presigned URL has expired")
        }
        return access
    }

    /// What is signed: a version tag, the method, the key, the expiry and the required headers
    /// (sorted by name), one per line. The key cannot hold a newline (``ObjectKey``).
    static func signingInput(method: String, key: ObjectKey, expiry: String, headers: [String: String]) -> Data {
        let signed = headers.sorted { $0.key < $1.key }.map { "\($0.key):\($0.value)" }
        return Data((["RESTARTIX-PRESIGN-1", method, key.value, expiry] + signed).joined(separator: "\n").utf8)
    }

    static func signature(method: String, key: ObjectKey, expiry: String, headers: [String: String], using secret: SymmetricKey) -> Data {
        Data(HMAC<SHA256>.authenticationCode(for: signingInput(method: method, key: key, expiry: expiry, headers: headers), using: secret))
    }

    /// RFC 3986 unreserved characters stay; every other byte is `%XX`.
    static func escape(_ segment: String) -> String {
        var out = ""
        for byte in segment.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                out += "%" + Hex.lower([byte]).uppercased()
            }
        }
        return out
    }
}
