import RestartixKit
import Crypto
public import Foundation
public import AsyncHTTPClient
import NIOCore
import NIOHTTP1

/// AWS credentials. `sessionToken` is set for temporary credentials (STS, container roles).
public struct AWSCredentials: Sendable, Hashable, CustomStringConvertible {
    /// The access key id (`AKIA...`, `ASIA...`).
    public let accessKeyID: String
    /// The secret access key; never printed.
    public let secretAccessKey: String
    /// The session token of temporary credentials.
    public let sessionToken: String?
    /// When temporary credentials stop working (the container endpoint's `Expiration`); nil
    /// for keys that do not expire. ``AWSCredentialProvider`` fetches new ones before then.
    public let expiration: Date?

    /// Credentials from their parts.
    public init(accessKeyID: String, secretAccessKey: String, sessionToken: String? = nil, expiration: Date? = nil) {
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
        self.expiration = expiration
    }

    /// The access key id only.
    public var description: String { "AWSCredentials(\(accessKeyID), secret: <redacted>)" }
}

extension AWSCredentials: CustomReflectable {
    /// `dump()` and debuggers see the access key id only.
    public var customMirror: Mirror { Mirror(self, children: ["accessKeyID": accessKeyID], displayStyle: .struct) }
}

/// AWS Signature Version 4 (`AWS4-HMAC-SHA256`), header form.
///
/// Checked against the AWS SigV4 test suite vectors (Tests/RestartixKitTests/AWSTests.swift)
/// and by round trips to moto. `path` is the decoded path; it is encoded once (RFC 3986
/// unreserved characters kept, everything else `%XX`, `/` kept), which is right for the
/// JSON-protocol services (path `/`) and S3. For every service but S3 the path is first
/// normalized as SigV4 requires (`.` and `..` segments resolved, repeated slashes collapsed);
/// S3 signs its keys as they are. REST services other than S3 sign each segment encoded twice:
/// pass them the path already encoded once.
public struct AWSSigner: Sendable {
    /// The credentials signing requests.
    public let credentials: AWSCredentials
    /// The region (`eu-central-1`).
    public let region: String
    /// The signing name of the service (`secretsmanager`, `kms`, `s3`).
    public let service: String

    /// A signer for one region and service.
    public init(credentials: AWSCredentials, region: String, service: String) {
        self.credentials = credentials
        self.region = region
        self.service = service
    }

    /// The headers to add to a request: `x-amz-date`, `x-amz-security-token` for temporary
    /// credentials, and `authorization`. `headers` must include `host` and every header that
    /// will be sent and should be signed.
    public func sign(
        method: String,
        path: String,
        query: [(String, String)] = [],
        headers: [(String, String)],
        body: some DataProtocol,
        date: Date = Date()
    ) -> [(String, String)] {
        sign(method: method, path: path, query: query, headers: headers, payloadHash: Self.hex(SHA256.hash(data: Data(body))), date: date)
    }

    func sign(method: String, path: String, query: [(String, String)], headers: [(String, String)], payloadHash: String, date: Date) -> [(String, String)] {
        let amzDate = Self.amzDate(date)
        var all = headers.filter { $0.0.lowercased() != "x-amz-date" && $0.0.lowercased() != "authorization" }
        all.append(("x-amz-date", amzDate))
        var added = [("x-amz-date", amzDate)]
        if let token = credentials.sessionToken {
            all.append(("x-amz-security-token", token))
            added.append(("x-amz-security-token", token))
        }
        let signedPath = service == "s3" ? path : Self.normalized(path)
        let (canonical, signedHeaders) = Self.canonicalRequest(method: method, path: signedPath, query: query, headers: all, payloadHash: payloadHash)
        let day = String(amzDate.prefix(8))
        let scope = "\(day)/\(region)/\(service)/aws4_request"
        let stringToSign = "AWS4-HMAC-SHA256\n\(amzDate)\n\(scope)\n\(Self.hex(SHA256.hash(data: Data(canonical.utf8))))"
        let signature = Self.hex(HMAC<SHA256>.authenticationCode(for: Data(stringToSign.utf8), using: signingKey(day: day)))
        added.append((
            "authorization",
            "AWS4-HMAC-SHA256 Credential=\(credentials.accessKeyID)/\(scope), SignedHeaders=\(signedHeaders), Signature=\(signature)"
        ))
        return added
    }

    /// What a request's payload hash is (`x-amz-content-sha256`, the last line of the
    /// canonical request).
    public enum Payload: Sendable {
        /// The body itself: its SHA-256 is computed here.
        case bytes(Data)
        /// A body that streams: the hex SHA-256 the caller computed while producing it.
        case sha256(hex: String)
        /// `UNSIGNED-PAYLOAD`: the body is not covered by the signature (S3 over TLS, presigned
        /// URLs, uploads whose hash is not known before they start).
        case unsigned

        var hash: String {
            switch self {
            case .bytes(let data): AWSSigner.hex(SHA256.hash(data: data))
            case .sha256(let hex): hex.lowercased()
            case .unsigned: "UNSIGNED-PAYLOAD"
            }
        }
    }

    /// Signs a request to `url` as it will be sent: the path and query are read from the URL
    /// (so a caller never splits or decodes it), and `host` and `x-amz-content-sha256` are
    /// added here. Returns every header to send: `headers`, then `host`,
    /// `x-amz-content-sha256`, `x-amz-date`, `x-amz-security-token` for temporary
    /// credentials, and `authorization`. S3 signs its keys as sent (encoded once); every other
    /// REST service signs each path segment encoded twice, as SigV4 requires, so
    /// `/v2/email/suppression/addresses/ana%40example.com` is signed as `.../ana%2540example.com`.
    public func sign(_ method: String, url: URL, headers: [(String, String)] = [], payload: Payload, date: Date = Date()) -> [(String, String)] {
        sign(method, url: url, headers: headers, payloadHash: payload.hash, date: date)
    }

    /// ``sign(_:url:headers:payload:date:)`` with the `x-amz-content-sha256` value as given
    /// (a chunked upload's `STREAMING-AWS4-HMAC-SHA256-PAYLOAD` is not a hex hash).
    func sign(_ method: String, url: URL, headers: [(String, String)], payloadHash hash: String, date: Date) -> [(String, String)] {
        let reserved: Set<String> = ["host", "x-amz-content-sha256", "x-amz-date", "authorization", "x-amz-security-token"]
        var all = headers.filter { !reserved.contains($0.0.lowercased()) }
        all.append(("host", AWSJSONClient.hostHeader(url)))
        all.append(("x-amz-content-sha256", hash))
        // The path as sent (encoded once): S3 decodes it and the signer encodes it once again;
        // other services get it as sent, and the signer's encoding is their second.
        let sent = URLComponents(url: url, resolvingAgainstBaseURL: false)?.percentEncodedPath ?? ""
        let path = service == "s3" ? Self.path(of: url) : (sent.isEmpty ? "/" : sent)
        let signed = sign(method: method, path: path, query: Self.query(of: url), headers: all, payloadHash: hash, date: date)
        return all + signed
    }

    /// A presigned URL for `method` on `url` (query-string authentication): valid for
    /// `expires` (1 second to 7 days), for the payload unsigned. Headers in `headers` (a
    /// content type, a content length) are signed: the request must send them with these
    /// values. S3 answers 403 once it expires or when anything signed was changed.
    public func presign(
        _ method: String, url: URL, expires: Duration, headers: [(String, String)] = [], date: Date = Date()
    ) throws(AWSError) -> URL {
        guard service == "s3" else {
            // Other services sign the empty payload's hash, not UNSIGNED-PAYLOAD.
            throw AWSError(.configuration, "presigning is for S3 URLs; this signer is for \(service)")
        }
        guard expires >= .seconds(1), expires <= .seconds(7 * 86_400) else {
            throw AWSError(.configuration, "a presigned URL lives between 1 second and 7 days")
        }
        let amzDate = Self.amzDate(date)
        let day = String(amzDate.prefix(8))
        let scope = "\(day)/\(region)/\(service)/aws4_request"
        let signedHeaders = [("host", AWSJSONClient.hostHeader(url))] + headers.map { ($0.0.lowercased(), $0.1) }
        var query = Self.query(of: url).filter { !$0.0.hasPrefix("X-Amz-") }
        query += [
            ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
            ("X-Amz-Credential", "\(credentials.accessKeyID)/\(scope)"),
            ("X-Amz-Date", amzDate),
            ("X-Amz-Expires", "\(expires.components.seconds)"),
            ("X-Amz-SignedHeaders", signedHeaders.map(\.0).sorted().joined(separator: ";")),
        ]
        if let token = credentials.sessionToken { query.append(("X-Amz-Security-Token", token)) }
        let signedPath = service == "s3" ? Self.path(of: url) : Self.normalized(Self.path(of: url))
        let (canonical, _) = Self.canonicalRequest(
            method: method, path: signedPath, query: query, headers: signedHeaders, payloadHash: "UNSIGNED-PAYLOAD"
        )
        let stringToSign = "AWS4-HMAC-SHA256\n\(amzDate)\n\(scope)\n\(Self.hex(SHA256.hash(data: Data(canonical.utf8))))"
        let signature = Self.hex(HMAC<SHA256>.authenticationCode(for: Data(stringToSign.utf8), using: signingKey(day: day)))
        query.append(("X-Amz-Signature", signature))
        var components = URLComponents(url: url, resolvingAgainstBaseURL: false)
        components?.percentEncodedQuery = query.map { Self.encode($0.0) + "=" + Self.encode($0.1) }.joined(separator: "&")
        guard let presigned = components?.url else { throw AWSError(.configuration, "the URL to presign is not valid") }
        return presigned
    }

    /// The decoded path of `url` (`/` when empty): what ``sign(method:path:query:headers:body:date:)`` encodes once.
    static func path(of url: URL) -> String {
        let path = URLComponents(url: url, resolvingAgainstBaseURL: false)?.percentEncodedPath ?? ""
        return path.isEmpty ? "/" : (path.removingPercentEncoding ?? path)
    }

    /// The decoded query pairs of `url`, in order.
    static func query(of url: URL) -> [(String, String)] {
        (URLComponents(url: url, resolvingAgainstBaseURL: false)?.queryItems ?? []).map { ($0.name, $0.value ?? "") }
    }

    func signingKey(day: String) -> SymmetricKey {
        func hmac(_ key: SymmetricKey, _ text: String) -> SymmetricKey {
            SymmetricKey(data: Data(HMAC<SHA256>.authenticationCode(for: Data(text.utf8), using: key)))
        }
        let date = hmac(SymmetricKey(data: Data("AWS4\(credentials.secretAccessKey)".utf8)), day)
        return hmac(hmac(hmac(date, region), service), "aws4_request")
    }

    /// The canonical request and the signed-headers list (SigV4 task 1).
    static func canonicalRequest(
        method: String, path: String, query: [(String, String)], headers: [(String, String)], payloadHash: String
    ) -> (String, String) {
        let encoded: [(name: String, value: String)] = query.map { (encode($0.0), encode($0.1)) }
        let sorted = encoded.sorted { (a, b) -> Bool in a.name == b.name ? a.value < b.value : a.name < b.name }
        let canonicalQuery = sorted.map { pair -> String in pair.name + "=" + pair.value }.joined(separator: "&")
        var merged: [String: [String]] = [:]
        for (name, value) in headers {
            // Trimall: no leading or trailing whitespace, every run of spaces one space. The lines
            // of a folded (obs-fold) value count as values of their own, as the test suite's
            // get-header-value-multiline has it.
            let lines = value.split(whereSeparator: { $0 == "\n" || $0 == "\r" })
                .map { $0.split(whereSeparator: { $0 == " " || $0 == "\t" }).joined(separator: " ") }
                .filter { !$0.isEmpty }
            merged[name.lowercased(), default: []].append(contentsOf: lines.isEmpty ? [""] : lines)
        }
        let names = merged.keys.sorted()
        let canonicalHeaders = names.map { "\($0):\(merged[$0]!.joined(separator: ","))\n" }.joined()
        let signed = names.joined(separator: ";")
        let uri = path.isEmpty ? "/" : path.split(separator: "/", omittingEmptySubsequences: false).map { encode(String($0)) }.joined(separator: "/")
        return ([method.uppercased(), uri, canonicalQuery, canonicalHeaders, signed, payloadHash].joined(separator: "\n"), signed)
    }

    /// `path` with `.` and `..` segments resolved (RFC 3986 §5.2.4) and empty segments
    /// dropped, keeping a trailing slash: `/a/./b/../c//` is `/a/c/`.
    static func normalized(_ path: String) -> String {
        var segments: [Substring] = []
        for segment in path.split(separator: "/", omittingEmptySubsequences: true) {
            switch segment {
            case ".": continue
            case "..": _ = segments.popLast()
            default: segments.append(segment)
            }
        }
        let last = path.split(separator: "/", omittingEmptySubsequences: true).last
        let trailing = !segments.isEmpty && (path.hasSuffix("/") || last == "." || last == "..")
        return "/" + segments.joined(separator: "/") + (trailing ? "/" : "")
    }

    /// RFC 3986 encoding as SigV4 wants it: unreserved characters as they are, every other
    /// UTF-8 byte as `%XX` (upper-case hex).
    static func encode(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                let digits = Array("0123456789ABCDEF".unicodeScalars)
                out.unicodeScalars.append("%")
                out.unicodeScalars.append(digits[Int(byte >> 4)])
                out.unicodeScalars.append(digits[Int(byte & 0x0F)])
            }
        }
        return out
    }

    static func amzDate(_ date: Date) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        func two(_ n: Int?) -> String { n.map { $0 < 10 ? "0\($0)" : "\($0)" } ?? "00" }
        return "\(c.year ?? 1970)\(two(c.month))\(two(c.day))T\(two(c.hour))\(two(c.minute))\(two(c.second))Z"
    }

    static func hex(_ bytes: some Sequence<UInt8>) -> String { Hex.lower(bytes) }
}

