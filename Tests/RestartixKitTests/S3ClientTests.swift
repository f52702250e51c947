import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import RestartixAWS
import RestartixKit
import Testing

/// The S3 client and the signer's request-level entry point, against moto (a real S3 API).
@Suite("S3 on moto", .timeLimit(.minutes(1)))
struct S3ClientTests {
    static func client(bucket: String) throws -> S3Client? {
        guard let endpoint = try AWSClientTests.endpoint() else { return nil }
        return try S3Client(bucket: bucket, region: "us-east-1", credentials: AWSClientTests.credentials, endpoint: endpoint, usePathStyle: true)
    }

    /// A fresh bucket (moto: created with a signed `PUT /bucket` through the signer's URL entry point).
    static func bucket() async throws -> S3Client? {
        let name = "restartix-test-\(UUID().uuidString.prefix(8).lowercased())"
        guard let s3 = try client(bucket: name) else { return nil }
        let signed = s3.signer.sign("PUT", url: s3.bucketURL, payload: .bytes(Data()))
        var request = HTTPClientRequest(url: s3.bucketURL.absoluteString)
        request.method = .PUT
        for (header, value) in signed where header != "host" { request.headers.add(name: header, value: value) }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
        #expect(response.status.code == 200, "CreateBucket")
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
