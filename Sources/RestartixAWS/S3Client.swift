public import AsyncHTTPClient
import Crypto
public import Foundation
import NIOCore
import NIOHTTP1
import RestartixKit

/// An S3 client for one bucket over async-http-client, signed with ``AWSSigner``: `HeadBucket`,
/// `PutObject`, `GetObject` (whole or a range), `HeadObject`, `ListObjectsV2`, `DeleteObject`,
/// multipart uploads and presigned URLs. ``S3ObjectStore`` is the kit's ``ObjectStore`` on it. The endpoint
/// is overridable (moto in tests, a VPC endpoint in production), path-style or
/// virtual-hosted. Payloads are signed `UNSIGNED-PAYLOAD` over HTTPS (TLS protects them) and
/// by their SHA-256 over plain HTTP.
///
/// Errors are ``AWSError``: `.service(type:status:)` with S3's error code (`NoSuchBucket`,
/// `AccessDenied`...), never the body; `.unreachable` when S3 cannot be reached.
public struct S3Client: Sendable {
    /// The bucket.
    public let bucket: String
    /// The credentials every request is signed with (fetched again before they expire).
    public let credentials: AWSCredentialProvider
    /// The bucket's region.
    public let region: String
    /// A signer with the keys held now (region, `s3`); requests ask ``credentials`` for theirs.
    public var signer: AWSSigner { AWSSigner(credentials: credentials.current, region: region, service: "s3") }
    /// The bucket's base URL (`https://bucket.s3.region.amazonaws.com` or
    /// `http://127.0.0.1:5000/bucket`).
    public let bucketURL: URL
    let httpClient: HTTPClient
    let timeout: Duration

    /// A client for `bucket` with fixed keys.
    public init(
        bucket: String, region: String, credentials: AWSCredentials, endpoint: String? = nil, usePathStyle: Bool = false,
        httpClient: HTTPClient = .shared, timeout: Duration = .seconds(30)
    ) throws(AWSError) {
        try self.init(
            bucket: bucket, region: region, credentials: AWSCredentialProvider(credentials), endpoint: endpoint, usePathStyle: usePathStyle,
            httpClient: httpClient, timeout: timeout
        )
    }

    /// A client for `bucket`. `endpoint` replaces `https://s3.<region>.amazonaws.com`;
    /// `usePathStyle` puts the bucket in the path instead of the host name (moto, MinIO).
    public init(
        bucket: String,
        region: String,
        credentials: AWSCredentialProvider,
        endpoint: String? = nil,
        usePathStyle: Bool = false,
        httpClient: HTTPClient = .shared,
        timeout: Duration = .seconds(30)
    ) throws(AWSError) {
        guard (3...63).contains(bucket.count), bucket.allSatisfy({ $0.isLowercase || $0.isNumber || $0 == "-" || $0 == "." }) else {
            throw AWSError(.configuration, "a bucket name is 3 to 63 lower-case letters, digits, dots and hyphens")
        }
        let base = endpoint ?? "https://s3.\(region).amazonaws.com"
        guard var components = URLComponents(string: base), let scheme = components.scheme, ["http", "https"].contains(scheme),
            let host = components.host
        else {
            throw AWSError(.configuration, "the S3 endpoint is not an http(s) URL")
        }
        let trimmed = components.path.hasSuffix("/") ? String(components.path.dropLast()) : components.path
        if usePathStyle {
            components.path = trimmed + "/" + bucket
        } else {
            components.host = "\(bucket).\(host)"
            components.path = trimmed
        }
        guard let url = components.url else { throw AWSError(.configuration, "the S3 endpoint is not an http(s) URL") }
        self.bucket = bucket
        self.bucketURL = url
        self.credentials = credentials
        self.region = region
        self.httpClient = httpClient
        self.timeout = timeout
    }

    /// The URL of `key` (each path segment percent-encoded as S3 expects).
    public func url(for key: String) throws(AWSError) -> URL {
        guard !key.isEmpty, key.utf8.count <= 1024, !key.hasPrefix("/") else {
            throw AWSError(.configuration, "an object key is 1 to 1024 bytes and does not start with /")
        }
        let encoded = key.split(separator: "/", omittingEmptySubsequences: false).map { AWSSigner.encode(String($0)) }.joined(separator: "/")
        guard let url = URL(string: bucketURL.absoluteString + "/" + encoded) else {
            throw AWSError(.configuration, "the object key does not make a URL")
        }
        return url
    }

    /// Creates the bucket (`CreateBucket`), with Object Lock when `objectLockEnabled` (S3 turns
    /// versioning on with it). In the client's region: outside `us-east-1` the request names
    /// it. A bucket that exists and is yours already is not an error (`BucketAlreadyOwnedByYou`).
    public func createBucket(objectLockEnabled: Bool = false) async throws(AWSError) {
        let headers = objectLockEnabled ? [("x-amz-bucket-object-lock-enabled", "true")] : []
        let body = region == "us-east-1" ? Data() : Data((
            "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><LocationConstraint>"
                + Self.escaped(region) + "</LocationConstraint></CreateBucketConfiguration>"
        ).utf8)
        let (status, _, response) = try await send("PUT", bucketURL, headers: headers, payload: payload(body), body: body, accept: [200, 409])
        if status == 409, Self.element("Code", in: response) != "BucketAlreadyOwnedByYou" {
            throw AWSError(.service(type: Self.element("Code", in: response) ?? "Conflict", status: 409), "CreateBucket")
        }
    }

    /// Whether the bucket exists and these credentials may use it (`HeadBucket`): false for
    /// 404; a 403 is an error (``AWSError`` `AccessDenied`), not "missing".
    public func headBucket() async throws(AWSError) -> Bool {
        let (status, _, _) = try await send("HEAD", bucketURL, payload: .bytes(Data()), accept: [200, 404])
        return status == 200
    }

    /// Stores `body` at `key` (`PutObject`); returns its ETag. `headers` pass through as sent
    /// (`x-amz-server-side-encryption`, `x-amz-object-lock-mode`, `cache-control`...).
    @discardableResult
    public func put(_ body: Data, at key: String, contentType: String = "application/octet-stream", headers: [(String, String)] = []) async throws(AWSError) -> String {
        let (_, responseHeaders, _) = try await send(
            "PUT", try url(for: key), headers: [("content-type", contentType)] + headers, payload: payload(body), body: body
        )
        return responseHeaders["etag"].first ?? ""
    }

    /// The object at `key` (`GetObject`), or nil when there is none (404 `NoSuchKey`).
    public func get(_ key: String) async throws(AWSError) -> Data? {
        let (status, _, body) = try await send("GET", try url(for: key), payload: .bytes(Data()), accept: [200, 404])
        return status == 404 ? nil : body
    }

    /// Bytes `range` of the object at `key` (`GetObject` with `Range`), or nil when there is
    /// no object. A range past the end is cut at the end; one that starts at the end is empty;
    /// one that starts beyond it is S3's `InvalidRange` (416).
    public func get(_ key: String, range: Range<Int>) async throws(AWSError) -> Data? {
        guard range.lowerBound >= 0 else { throw AWSError(.configuration, "a range starts at 0 or later") }
        if range.isEmpty {
            guard let head = try await head(key) else { return nil }
            guard range.lowerBound <= head.size else {
                throw AWSError(.service(type: "InvalidRange", status: 416), "the range starts past the object's end (\(head.size) bytes)")
            }
            return Data()
        }
        let (status, _, body) = try await send(
            "GET", try url(for: key), headers: [("range", "bytes=\(range.lowerBound)-\(range.upperBound - 1)")], payload: .bytes(Data()),
            accept: [200, 206, 404, 416]
        )
        switch status {
        case 404: return nil
        case 200:
            // The server ignored the range (RFC 9110 allows it): cut the range out of the whole.
            guard range.lowerBound <= body.count else {
                throw AWSError(.service(type: "InvalidRange", status: 416), "the range starts past the object's end (\(body.count) bytes)")
            }
            return body.subdata(in: range.lowerBound..<min(range.upperBound, body.count))
        case 416:
            // Past the end: empty when it starts right at the end, as a slice would be.
            guard let head = try await head(key) else { return nil }
            if range.lowerBound == head.size { return Data() }
            throw AWSError(.service(type: "InvalidRange", status: 416), "the range starts past the object's end (\(head.size) bytes)")
        default: return body
        }
    }

    /// What S3 says of an object (`HeadObject`).
    public struct ObjectHead: Sendable, Hashable {
        /// Size in bytes.
        public let size: Int
        public let contentType: String?
        /// User metadata (`x-amz-meta-*`), names without the prefix, lower-cased.
        public let metadata: [String: String]
        /// `x-amz-object-lock-mode` (`GOVERNANCE`, `COMPLIANCE`) and its retain-until date.
        public let lockMode: String?
        public let lockRetainUntil: Date?
        /// `x-amz-server-side-encryption` (`AES256`, `aws:kms`) and the KMS key's id.
        public let serverSideEncryption: String?
        public let kmsKeyID: String?
    }

    /// The object's size, type, metadata and Object Lock (`HeadObject`), or nil when there is none.
    public func head(_ key: String) async throws(AWSError) -> ObjectHead? {
        let (status, headers, _) = try await send("HEAD", try url(for: key), payload: .bytes(Data()), accept: [200, 404])
        guard status == 200 else { return nil }
        var metadata: [String: String] = [:]
        for (name, value) in headers where name.lowercased().hasPrefix("x-amz-meta-") {
            metadata[String(name.lowercased().dropFirst("x-amz-meta-".count))] = value
        }
        return ObjectHead(
            size: headers["content-length"].first.flatMap { Int($0) } ?? 0, contentType: headers["content-type"].first, metadata: metadata,
            lockMode: headers["x-amz-object-lock-mode"].first,
            lockRetainUntil: headers["x-amz-object-lock-retain-until-date"].first.flatMap(Self.parseTime),
            serverSideEncryption: headers["x-amz-server-side-encryption"].first,
            kmsKeyID: headers["x-amz-server-side-encryption-aws-kms-key-id"].first
        )
    }

    /// Every object whose key starts with `prefix`, in S3's key order, with its size
    /// (`ListObjectsV2`, following continuation tokens).
    public func list(prefix: String) async throws(AWSError) -> [(key: String, size: Int)] {
        var found: [(key: String, size: Int)] = []
        var token: String?
        repeat {
            var query = [URLQueryItem(name: "list-type", value: "2"), URLQueryItem(name: "prefix", value: prefix)]
            if let token { query.append(URLQueryItem(name: "continuation-token", value: token)) }
            let (_, _, body) = try await send("GET", bucketURL.withQuery(query), payload: .bytes(Data()))
            let text = String(decoding: body, as: UTF8.self)
            for entry in text.components(separatedBy: "<Contents>").dropFirst() {
                guard let key = Self.element("Key", in: Data(entry.utf8)), let size = Self.element("Size", in: Data(entry.utf8)).flatMap({ Int($0) }) else {
                    throw AWSError(.malformedResponse, "ListObjectsV2 returned an entry without a key or size")
                }
                found.append((Self.unescaped(key), size))
            }
            token = Self.element("IsTruncated", in: body) == "true" ? Self.element("NextContinuationToken", in: body).map(Self.unescaped) : nil
        } while token != nil
        return found
    }

    static func parseTime(_ text: String) -> Date? {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let date = formatter.date(from: text) { return date }
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.date(from: text)
    }

    static func unescaped(_ text: String) -> String {
        text.replacingOccurrences(of: "&lt;", with: "<").replacingOccurrences(of: "&gt;", with: ">").replacingOccurrences(of: "&quot;", with: "\"")
            .replacingOccurrences(of: "&apos;", with: "'").replacingOccurrences(of: "&amp;", with: "&")
    }

    /// The multipart uploads in progress (started, neither completed nor aborted) under `prefix`
    /// (`ListMultipartUploads`, first page: up to 1,000).
    public func listMultipartUploads(prefix: String) async throws(AWSError) -> [(key: String, uploadID: String)] {
        let url = bucketURL.withQuery([URLQueryItem(name: "uploads", value: ""), URLQueryItem(name: "prefix", value: prefix)])
        let (_, _, body) = try await send("GET", url, payload: .bytes(Data()))
        return String(decoding: body, as: UTF8.self).components(separatedBy: "<Upload>").dropFirst().compactMap { entry in
            guard let key = Self.element("Key", in: Data(entry.utf8)), let id = Self.element("UploadId", in: Data(entry.utf8)) else { return nil }
            return (Self.unescaped(key), Self.unescaped(id))
        }
    }

    /// The bucket's Object Lock configuration (`GetObjectLockConfiguration`): whether Object
    /// Lock is enabled, and its default retention (mode and days or years) when one is set.
    /// `nil` when the bucket has no Object Lock (S3's `ObjectLockConfigurationNotFoundError`).
    public func objectLockConfiguration() async throws(AWSError) -> ObjectLockConfiguration? {
        let url = bucketURL.withQuery([URLQueryItem(name: "object-lock", value: "")])
        let (status, _, body) = try await send("GET", url, payload: .bytes(Data()), accept: [200, 404])
        guard status == 200, Self.element("ObjectLockEnabled", in: body) == "Enabled" else {
            if status == 404, Self.element("Code", in: body) != "ObjectLockConfigurationNotFoundError" {
                throw AWSError(.service(type: Self.element("Code", in: body) ?? "NotFound", status: 404), "GetObjectLockConfiguration")
            }
            return nil
        }
        return ObjectLockConfiguration(
            defaultMode: Self.element("Mode", in: body), defaultDays: Self.element("Days", in: body).flatMap { Int($0) },
            defaultYears: Self.element("Years", in: body).flatMap { Int($0) }
        )
    }

    /// A bucket's Object Lock configuration (``objectLockConfiguration()``).
    public struct ObjectLockConfiguration: Sendable, Hashable {
        /// The default retention's mode (`GOVERNANCE` or `COMPLIANCE`), when the bucket has one.
        public var defaultMode: String?
        /// The default retention in days or years, when the bucket has one.
        public var defaultDays: Int?
        public var defaultYears: Int?
    }

    /// Sets the Object Lock retention of the object at `key` (`PutObjectRetention`; the bucket
    /// must have Object Lock): `mode` `GOVERNANCE` or `COMPLIANCE`, until `retainUntil`.
    public func putRetention(_ key: String, mode: String, retainUntil: Date) async throws(AWSError) {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let body = Data((
            "<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Mode>\(Self.escaped(mode))</Mode>"
                + "<RetainUntilDate>\(formatter.string(from: retainUntil))</RetainUntilDate></Retention>"
        ).utf8)
        let url = try url(for: key).withQuery([URLQueryItem(name: "retention", value: "")])
        _ = try await send(
            "PUT", url, headers: [("content-type", "application/xml"), ("content-md5", Data(Insecure.MD5.hash(data: body)).base64EncodedString())],
            payload: payload(body), body: body
        )
    }

    /// Deletes the object at `key` (`DeleteObject`); deleting one that is not there succeeds.
    public func delete(_ key: String) async throws(AWSError) {
        _ = try await send("DELETE", try url(for: key), payload: .bytes(Data()), accept: [200, 204])
    }

    /// Starts a multipart upload to `key`; returns its upload id.
    public func createMultipartUpload(at key: String, contentType: String = "application/octet-stream", headers: [(String, String)] = []) async throws(AWSError) -> String {
        let url = try url(for: key).withQuery([URLQueryItem(name: "uploads", value: "")])
        let (_, _, body) = try await send("POST", url, headers: [("content-type", contentType)] + headers, payload: .bytes(Data()))
        guard let id = Self.element("UploadId", in: body) else { throw AWSError(.malformedResponse, "CreateMultipartUpload returned no UploadId") }
        return id
    }

    /// Uploads part `number` (1...10,000; every part but the last at least 5 MiB) of an upload;
    /// returns the part's ETag, which ``completeMultipartUpload(at:uploadID:parts:)`` needs.
    /// `headers` pass through as sent (`content-md5`, which S3 asks for under Object Lock).
    public func uploadPart(_ body: Data, at key: String, uploadID: String, number: Int, headers extra: [(String, String)] = []) async throws(AWSError) -> String {
        guard (1...10_000).contains(number) else { throw AWSError(.configuration, "a part number is 1 to 10,000") }
        let url = try url(for: key).withQuery([
            URLQueryItem(name: "partNumber", value: "\(number)"), URLQueryItem(name: "uploadId", value: uploadID),
        ])
        let (_, headers, _) = try await send("PUT", url, headers: extra, payload: payload(body), body: body)
        guard let etag = headers["etag"].first else { throw AWSError(.malformedResponse, "UploadPart returned no ETag") }
        return etag
    }

    /// Completes an upload from its parts' numbers and ETags, in order.
    public func completeMultipartUpload(
        at key: String, uploadID: String, parts: [(number: Int, etag: String)], headers extra: [(String, String)] = []
    ) async throws(AWSError) {
        let url = try url(for: key).withQuery([URLQueryItem(name: "uploadId", value: uploadID)])
        let list = parts.map { "<Part><PartNumber>\($0.number)</PartNumber><ETag>\(Self.escaped($0.etag))</ETag></Part>" }.joined()
        let body = Data("<CompleteMultipartUpload>\(list)</CompleteMultipartUpload>".utf8)
        let (_, _, answer) = try await send("POST", url, headers: [("content-type", "application/xml")] + extra, payload: payload(body), body: body)
        // S3 can answer 200 with an error document when completing fails late.
        if let code = Self.element("Code", in: answer) { throw AWSError(.service(type: code, status: 200), "CompleteMultipartUpload failed") }
    }

    /// Abandons an upload and frees its parts.
    public func abortMultipartUpload(at key: String, uploadID: String) async throws(AWSError) {
        let url = try url(for: key).withQuery([URLQueryItem(name: "uploadId", value: uploadID)])
        _ = try await send("DELETE", url, payload: .bytes(Data()), accept: [204, 200, 404])
    }

    /// A presigned URL to `GET` (or `PUT`) `key` for `expires`. For a PUT, `contentType` (and
    /// `contentLength`, when given) are signed, as are `headers` (`x-amz-server-side-encryption`):
    /// the upload must send exactly those.
    public func presignedURL(
        _ method: String, for key: String, expires: Duration, contentType: String? = nil, contentLength: Int? = nil,
        headers extra: [(String, String)] = [], date: Date = Date()
    ) throws(AWSError) -> URL {
        guard ["GET", "PUT", "HEAD", "DELETE"].contains(method) else { throw AWSError(.configuration, "presign GET, PUT, HEAD or DELETE") }
        var headers: [(String, String)] = []
        if let contentType { headers.append(("content-type", contentType)) }
        if let contentLength { headers.append(("content-length", "\(contentLength)")) }
        return try signer.presign(method, url: try url(for: key), expires: expires, headers: headers + extra, date: date)
    }

    // MARK: - Sending

    /// The largest answer read into memory (64 MiB): larger objects are for presigned URLs.
    static let maximumAnswer = 64 << 20

    /// Over HTTPS the payload is left unsigned (TLS protects it); over plain HTTP it is hashed.
    func payload(_ body: Data) -> AWSSigner.Payload {
        bucketURL.scheme == "https" ? .unsigned : .bytes(body)
    }

    func send(
        _ method: String, _ url: URL, headers: [(String, String)] = [], payload: AWSSigner.Payload, body: Data = Data(), accept: Set<Int> = [200]
    ) async throws(AWSError) -> (status: Int, headers: HTTPHeaders, body: Data) {
        let signer = AWSSigner(credentials: try await credentials.credentials(), region: region, service: "s3")
        let signed = signer.sign(method, url: url, headers: headers, payload: payload)
        var request = HTTPClientRequest(url: url.absoluteString)
        request.method = HTTPMethod(rawValue: method)
        for (name, value) in signed where name != "host" { request.headers.add(name: name, value: value) }
        if !body.isEmpty { request.body = .bytes(ByteBuffer(bytes: body)) }
        let response: HTTPClientResponse
        let data: Data
        do {
            response = try await httpClient.execute(request, timeout: TimeAmount(timeout))
        } catch {
            throw AWSError(.unreachable, "S3 (\(url.host ?? "?")) could not be reached or did not answer in time")
        }
        do {
            let buffer = try await response.body.collect(upTo: Self.maximumAnswer)
            data = Data(buffer.readableBytesView)
        } catch is NIOTooManyBytesError {
            // Not a passing fault: the same GET would be as large again.
            throw AWSError(.malformedResponse, "S3's answer to \(method) is over \(Self.maximumAnswer >> 20) MiB; fetch large objects in ranges or presign them")
        } catch {
            throw AWSError(.unreachable, "S3 (\(url.host ?? "?")) stopped answering \(method)")
        }
        let status = Int(response.status.code)
        guard accept.contains(status) else {
            let code = Self.element("Code", in: data) ?? "HTTP\(status)"
            throw AWSError(.service(type: code, status: status), "S3 refused \(method) on the bucket \(bucket)")
        }
        return (status, response.headers, data)
    }

    /// The text of the first `<name>` element of an XML answer (S3's are flat enough).
    static func element(_ name: String, in data: Data) -> String? {
        guard let text = String(data: data, encoding: .utf8),
            let start = text.range(of: "<\(name)>"), let end = text.range(of: "</\(name)>", range: start.upperBound..<text.endIndex)
        else { return nil }
        return String(text[start.upperBound..<end.lowerBound])
    }

    static func escaped(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
            .replacingOccurrences(of: "\"", with: "&quot;")
    }
}

extension URL {
    /// The URL with `items` as its query, each name and value encoded as SigV4 encodes them
    /// (`URL.appending(queryItems:)` leaves `+` as it is, which S3 reads as a space while the
    /// signature covers `%2B`: a continuation token or an upload id with a `+` would not verify).
    func withQuery(_ items: [URLQueryItem]) -> URL {
        guard var components = URLComponents(url: self, resolvingAgainstBaseURL: false) else { return self }
        let encoded = items.map { AWSSigner.encode($0.name) + "=" + AWSSigner.encode($0.value ?? "") }.joined(separator: "&")
        let existing = components.percentEncodedQuery ?? ""
        components.percentEncodedQuery = existing.isEmpty ? encoded : existing + "&" + encoded
        return components.url ?? self
    }
}
