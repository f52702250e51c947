import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import RestartixAWS
import RestartixKit
import Testing

/// The S3 client and the signer's request-level entry point, against moto (a real S3 API).
@Suite("S3 on moto", .timeLimit(.minutes(3)))
struct S3ClientTests {
    static func client(bucket: String) throws -> S3Client? {
        guard let endpoint = try AWSClientTests.endpoint() else { return nil }
        return try S3Client(bucket: bucket, region: "us-east-1", credentials: AWSClientTests.credentials, endpoint: endpoint, usePathStyle: true)
    }

    /// A fresh bucket (``S3Client/createBucket(objectLockEnabled:)``), with Object Lock when
    /// `locked`.
    static func bucket(locked: Bool = false) async throws -> S3Client? {
        let name = "restartix-test-\(UUID().uuidString.prefix(8).lowercased())"
        guard let s3 = try client(bucket: name) else { return nil }
        try await s3.createBucket(objectLockEnabled: locked)
        return s3
    }

    @Test("put, get, delete; a key with spaces and unicode; a missing key and a missing bucket")
    func objects() async throws {
        guard let s3 = try await Self.bucket() else { return }
        #expect(try await s3.headBucket())
        let key = "org-1/uploads/ståmp notes+1.txt"
        let body = Data("hello, clinic".utf8)
        let etag = try await s3.put(body, at: key, contentType: "text/plain", headers: [("x-amz-server-side-encryption", "AES256")])
        #expect(!etag.isEmpty)
        #expect(try await s3.get(key) == body)
        #expect(try await s3.get("org-1/nothing-here") == nil)
        try await s3.delete(key)
        #expect(try await s3.get(key) == nil)
        try await s3.delete(key)  // deleting what is not there succeeds
        let missing = try #require(try Self.client(bucket: "restartix-missing-\(UUID().uuidString.prefix(8).lowercased())"))
        #expect(try await !missing.headBucket())
        let error = await #expect(throws: AWSError.self) { try await missing.put(body, at: "k") }
        #expect(error?.kind == .service(type: "NoSuchBucket", status: 404), "\(String(describing: error))")
        #expect(error?.description.contains("hello") == false, "no body in an error")
    }

    /// Amazon S3's own example of a chunked upload ("Signature Calculations for the
    /// Authorization Header: Transferring Payload in Multiple Chunks", Example: PUT Object):
    /// 66,560 bytes of "a" in a 64 KiB chunk and a 1 KiB one, its seed and chunk signatures.
    @Test("chunked upload signing matches Amazon S3's example: seed, each chunk, the final chunk, the framed length")
    func chunkedSigningVector() throws {
        let signer = AWSSigner(
            credentials: AWSCredentials(accessKeyID: "AKIAIOSFODNN7EXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
            region: "us-east-1", service: "s3"
        )
        let date = Date(timeIntervalSince1970: 1_369_353_600)  // 20130524T000000Z
        var (headers, payload) = try signer.signChunked(
            "PUT", url: URL(string: "https://s3.amazonaws.com/examplebucket/chunkObject.txt")!,
            headers: [("x-amz-storage-class", "REDUCED_REDUNDANCY")], decodedContentLength: 66_560, chunkSize: 65_536, date: date
        )
        #expect(headers.first { $0.0 == "content-length" }?.1 == "66824")
        #expect(headers.first { $0.0 == "authorization" }?.1 == """
            AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
            SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class, \
            Signature=4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9
            """)
        let first = try payload.chunk(Data(repeating: UInt8(ascii: "a"), count: 65_536))
        #expect(first.prefix(88) == Data("10000;chunk-signature=ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648\r\n".utf8))
        let second = try payload.chunk(Data(repeating: UInt8(ascii: "a"), count: 1_024))
        #expect(second.prefix(86) == Data("400;chunk-signature=0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497\r\n".utf8))
        let last = try payload.finalChunk()
        #expect(last == Data("0;chunk-signature=b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9\r\n\r\n".utf8))
        #expect(first.count + second.count + last.count == 66_824, "the framed body is the signed content-length")
    }

    @Test("chunked upload: refuses chunks that do not fit the signed length; moto stores the decoded object")
    func chunkedUpload() async throws {
        let signer = AWSSigner(credentials: AWSClientTests.credentials, region: "us-east-1", service: "s3")
        var (_, wrong) = try signer.signChunked("PUT", url: URL(string: "http://127.0.0.1/b/k")!, decodedContentLength: 20_000, chunkSize: 8_192)
        #expect(throws: AWSError.self) { try wrong.chunk(Data(count: 100)) }  // not a full chunk, not the rest
        _ = try wrong.chunk(Data(count: 8_192))
        #expect(throws: AWSError.self) { try wrong.finalChunk() }  // 11,808 bytes announced and not sent
        #expect(throws: AWSError.self) { try signer.signChunked("PUT", url: URL(string: "http://127.0.0.1/b/k")!, decodedContentLength: 1, chunkSize: 1_024) }

        guard let s3 = try await Self.bucket() else { return }
        let object = Data((0..<150_000).map { UInt8(truncatingIfNeeded: $0 &* 31) })
        let url = s3.bucketURL.appendingPathComponent("org-1/streamed.bin")
        var (headers, payload) = try s3.signer.signChunked("PUT", url: url, decodedContentLength: object.count, chunkSize: 64 * 1024)
        var body = Data()
        var offset = 0
        while offset < object.count {
            let end = min(offset + 64 * 1024, object.count)
            body.append(try payload.chunk(object[offset..<end]))
            offset = end
        }
        body.append(try payload.finalChunk())
        #expect(String(body.count) == headers.first { $0.0 == "content-length" }?.1)
        var request = HTTPClientRequest(url: url.absoluteString)
        request.method = .PUT
        headers.removeAll { $0.0 == "host" }
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        request.body = .bytes(ByteBuffer(bytes: body))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
        #expect(response.status.code == 200)
        #expect(try await s3.get("org-1/streamed.bin") == object, "moto decoded the chunks into the object")
    }

    @Test("multipart: parts in order make the object; an aborted upload leaves nothing")
    func multipart() async throws {
        guard let s3 = try await Self.bucket() else { return }
        let key = "org-1/backups/dump.bin"
        let first = Data(repeating: 0xAB, count: 5 << 20), last = Data("tail".utf8)
        let upload = try await s3.createMultipartUpload(at: key)
        let etag1 = try await s3.uploadPart(first, at: key, uploadID: upload, number: 1)
        let etag2 = try await s3.uploadPart(last, at: key, uploadID: upload, number: 2)
        try await s3.completeMultipartUpload(at: key, uploadID: upload, parts: [(1, etag1), (2, etag2)])
        #expect(try await s3.get(key) == first + last)
        let abandoned = try await s3.createMultipartUpload(at: "org-1/backups/abandoned.bin")
        _ = try await s3.uploadPart(last, at: "org-1/backups/abandoned.bin", uploadID: abandoned, number: 1)
        try await s3.abortMultipartUpload(at: "org-1/backups/abandoned.bin", uploadID: abandoned)
        #expect(try await s3.get("org-1/backups/abandoned.bin") == nil)
    }

    @Test("presigned PUT and GET work with a plain HTTP client; the URL carries no secret")
    func presigned() async throws {
        guard let s3 = try await Self.bucket() else { return }
        let key = "org-1/uploads/scan.png"
        let body = Data([0x89, 0x50, 0x4E, 0x47])
        let put = try s3.presignedURL("PUT", for: key, expires: .seconds(300), contentType: "image/png")
        #expect(!put.absoluteString.contains(AWSClientTests.credentials.secretAccessKey + "&"))
        #expect(put.absoluteString.contains("X-Amz-Expires=300") && put.absoluteString.contains("X-Amz-SignedHeaders=content-type%3Bhost"))
        var request = HTTPClientRequest(url: put.absoluteString)
        request.method = .PUT
        request.headers.add(name: "content-type", value: "image/png")
        request.body = .bytes(ByteBuffer(bytes: body))
        #expect(try await HTTPClient.shared.execute(request, timeout: .seconds(10)).status.code == 200)
        let get = try s3.presignedURL("GET", for: key, expires: .seconds(900))
        let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: get.absoluteString), timeout: .seconds(10))
        #expect(response.status.code == 200)
        #expect(Data(try await response.body.collect(upTo: 1 << 20).readableBytesView) == body)
        #expect(throws: AWSError.self) { try s3.presignedURL("GET", for: key, expires: .seconds(8 * 86_400)) }
        #expect(throws: AWSError.self) { try s3.presignedURL("GET", for: "", expires: .seconds(60)) }
    }
}

/// The signer's request-level entry point and presigning, on the examples of Amazon S3's
/// Signature Version 4 documentation (known answers) and against the lower-level entry point.
@Suite("AWS SigV4 request entry point and presigning")
struct SignerEntryPointTests {
    static let docsSigner = AWSSigner(
        credentials: AWSCredentials(accessKeyID: "AKIAIOSFODNN7EXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
        region: "us-east-1", service: "s3"
    )
    static let docsDate = Date(timeIntervalSince1970: 1_369_353_600)  // 2013-05-24T00:00:00Z

    @Test("GET Object with a Range header: the documentation's signature, host and payload hash added here")
    func getObjectExample() throws {
        let url = try #require(URL(string: "https://examplebucket.s3.amazonaws.com/test.txt"))
        let headers = Self.docsSigner.sign("GET", url: url, headers: [("range", "bytes=0-9")], payload: .bytes(Data()), date: Self.docsDate)
        #expect(headers.first { $0.0 == "host" }?.1 == "examplebucket.s3.amazonaws.com")
        #expect(headers.first { $0.0 == "x-amz-content-sha256" }?.1 == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        let authorization = try #require(headers.first { $0.0 == "authorization" }?.1)
        #expect(authorization.contains("SignedHeaders=host;range;x-amz-content-sha256;x-amz-date"))
        #expect(authorization.hasSuffix("Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"), "\(authorization)")
    }

    @Test("a presigned GET: the documentation's example URL, signature included")
    func presignExample() throws {
        let url = try #require(URL(string: "https://examplebucket.s3.amazonaws.com/test.txt"))
        let presigned = try Self.docsSigner.presign("GET", url: url, expires: .seconds(86_400), date: Self.docsDate)
        #expect(presigned.absoluteString == "https://examplebucket.s3.amazonaws.com/test.txt"
            + "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
            + "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
            + "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404")
    }

    @Test("the URL entry point signs as the path-and-query one does with the same request split by hand")
    func sameAsManual() throws {
        let url = try #require(URL(string: "https://examplebucket.s3.amazonaws.com/photos/my%20cat.jpg?versionId=3&acl"))
        let fromURL = Self.docsSigner.sign("GET", url: url, payload: .bytes(Data()), date: Self.docsDate)
        let manual = Self.docsSigner.sign(
            method: "GET", path: "/photos/my cat.jpg", query: [("versionId", "3"), ("acl", "")],
            headers: [("host", "examplebucket.s3.amazonaws.com"),
                      ("x-amz-content-sha256", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")],
            body: Data(), date: Self.docsDate
        )
        #expect(fromURL.first { $0.0 == "authorization" }?.1 == manual.first { $0.0 == "authorization" }?.1)
        let unsigned = Self.docsSigner.sign("PUT", url: url, payload: .unsigned, date: Self.docsDate)
        #expect(unsigned.first { $0.0 == "x-amz-content-sha256" }?.1 == "UNSIGNED-PAYLOAD")
        #expect(throws: AWSError.self) { try Self.docsSigner.presign("GET", url: url, expires: .zero) }
    }
}
