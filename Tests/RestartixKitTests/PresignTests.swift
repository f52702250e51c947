import AsyncHTTPClient
import Crypto
import Foundation
import NIOCore
import NIOHTTP1
import RestartixAWS
@testable import RestartixKit
import Testing

/// Presigned URLs: the local store's own verifier, and S3's (moto behind the checks S3 makes,
/// Scripts/dev/moto-server.py): what was signed works until it expires and nothing else does.
@Suite("Presigned URLs: local store and S3 (moto)", .timeLimit(.minutes(3)))
struct PresignTests {
    static func parts(_ url: URL, base: URL) throws -> (key: ObjectKey, query: [String: String]) {
        let components = try #require(URLComponents(url: url, resolvingAgainstBaseURL: false))
        let path = String(components.percentEncodedPath.dropFirst(base.path.count + 1))
        let key = try ObjectKey(try #require(path.removingPercentEncoding))
        var query: [String: String] = [:]
        for item in components.queryItems ?? [] { query[item.name] = item.value }
        return (key, query)
    }

    @Test("local: a presigned upload and download verify as signed; after the expiry, or with another key, method, expiry, signature, content type or length, refused; without presigning, unavailable; limits checked before signing")
    func local() throws {
        let clock = ObjectStoreTests.TestClock(Date(timeIntervalSince1970: 1_800_000_000))
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("presign-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let base = URL(string: "http://127.0.0.1:8080/v1/objects")!
        let store = try LocalObjectStore(directory: directory, presigning: try .random(baseURL: base), clock: { clock.read() })
        let key = try ObjectKey("0193a000-0000-7000-8000-0000000000aa/patient-files/scan nº 1?.png")
        let upload = try store.presign(key, for: .upload(contentType: "image/png", contentLength: 1234), expires: PresignedAccess.uploadLifetime)
        #expect(upload.method == "PUT" && upload.headers == ["content-type": "image/png", "content-length": "1234", "if-none-match": "*"])
        #expect(upload.expiresAt == clock.read().addingTimeInterval(300))
        #expect(!upload.description.contains("Signature"))
        let (parsed, query) = try Self.parts(upload.url, base: base)
        #expect(parsed == key)
        let granted = try store.verifyPresigned(method: "PUT", key: parsed, query: query, headers: upload.headers)
        #expect(granted == .upload(contentType: "image/png", contentLength: 1234))
        func refusal(method: String = "PUT", key: ObjectKey? = nil, query change: (inout [String: String]) -> Void = { _ in }, headers: [String: String]? = nil) -> ObjectStoreError.Code? {
            var changed = query
            change(&changed)
            do {
                _ = try store.verifyPresigned(method: method, key: key ?? parsed, query: changed, headers: headers ?? upload.headers)
                return nil
            } catch { return error.code }
        }
        #expect(refusal(key: try ObjectKey("0193a000-0000-7000-8000-0000000000bb/patient-files/scan nº 1?.png")) == .presignRefused)
        #expect(refusal(method: "GET") == .presignRefused)
        #expect(refusal(query: { $0["X-Restartix-Expires"] = String(Int($0["X-Restartix-Expires"]!)! + 3600) }) == .presignRefused)
        #expect(refusal(query: { $0["X-Restartix-Signature"] = String($0["X-Restartix-Signature"]!.reversed()) }) == .presignRefused)
        #expect(refusal(query: { $0["X-Restartix-Signature"] = nil }) == .presignRefused)
        #expect(refusal(headers: ["content-type": "text/html", "content-length": "1234", "if-none-match": "*"]) == .presignRefused)
        #expect(refusal(headers: ["content-type": "image/png", "content-length": "99999999", "if-none-match": "*"]) == .presignRefused)
        #expect(refusal(headers: ["content-type": "image/png", "if-none-match": "*"]) == .presignRefused)
        #expect(refusal(headers: ["content-type": "image/png", "content-length": "1234"]) == .presignRefused, "If-None-Match is signed")
        clock.set(clock.read().addingTimeInterval(301))
        #expect(refusal() == .presignExpired)

        let download = try store.presign(key, for: .download, expires: PresignedAccess.downloadLifetime)
        let (_, downloadQuery) = try Self.parts(download.url, base: base)
        #expect(try store.verifyPresigned(method: "GET", key: key, query: downloadQuery, headers: [:]) == .download)
        #expect(throws: ObjectStoreError.self) { try store.verifyPresigned(method: "PUT", key: key, query: downloadQuery, headers: upload.headers) }

        for (access, expires) in [
            (PresignedAccess.download, Duration.zero), (.download, .seconds(8 * 86_400)), (.upload(contentType: "image", contentLength: 1), .seconds(60)),
            (.upload(contentType: "image/png; x=1", contentLength: 1), .seconds(60)), (.upload(contentType: "image/png", contentLength: -1), .seconds(60)),
        ] {
            #expect(throws: ObjectStoreError.self) { try store.presign(key, for: access, expires: expires) }
        }
        let plain = try LocalObjectStore(directory: directory)
        let error = #expect(throws: ObjectStoreError.self) { try plain.presign(key, for: .download, expires: .seconds(60)) }
        #expect(error?.code == .presignUnavailable && error?.httpStatus == 501)
    }

    static func send(_ method: String, _ url: URL, headers: [String: String] = [:], body: [UInt8]? = nil) async throws -> (status: Int, body: [UInt8]) {
        var request = HTTPClientRequest(url: url.absoluteString)
        request.method = HTTPMethod(rawValue: method)
        for (name, value) in headers where name != "content-length" { request.headers.add(name: name, value: value) }
        if let body { request.body = .bytes(ByteBuffer(bytes: body)) }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
        let collected = try await response.body.collect(upTo: 1 << 20)
        return (Int(response.status.code), Array(collected.readableBytesView))
    }

    @Test("S3: a presigned PUT stores exactly the signed type and length with the encryption asked for, a presigned GET reads it; another type or length, another key, a changed expiry or signature, and an expired URL are refused (403)")
    func s3() async throws {
        guard let client = try await S3ObjectStoreTests.bucket() else { return }
        let store = try S3ObjectStore(client: client)
        let key = try ObjectKey("0193a000-0000-7000-8000-0000000000aa/patient-files/ståmp 1+2.png")
        let bytes = (0..<1234).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let upload = try store.presign(key, for: .upload(contentType: "image/png", contentLength: bytes.count, serverSideEncryption: .s3), expires: .seconds(300))
        #expect(upload.headers["x-amz-server-side-encryption"] == "AES256")
        // The wrong type, the wrong length: refused, nothing stored.
        var wrongType = upload.headers
        wrongType["content-type"] = "text/html"
        #expect(try await Self.send("PUT", upload.url, headers: wrongType, body: bytes).status == 403)
        #expect(try await Self.send("PUT", upload.url, headers: upload.headers, body: bytes + [0]).status == 403)
        var noEncryption = upload.headers
        noEncryption["x-amz-server-side-encryption"] = nil
        #expect(try await Self.send("PUT", upload.url, headers: noEncryption, body: bytes).status == 403)
        #expect(try await store.head(key) == nil)
        var mayReplace = upload.headers
        mayReplace["if-none-match"] = nil
        #expect(try await Self.send("PUT", upload.url, headers: mayReplace, body: bytes).status == 403, "If-None-Match is signed")
        #expect(try await Self.send("PUT", upload.url, headers: upload.headers, body: bytes).status == 200)
        let head = try #require(try await store.head(key))
        #expect(head.size == bytes.count && head.contentType == "image/png" && head.serverSideEncryption == .s3)
        // The same URL again, within its five minutes, with other bytes: S3 keeps the first.
        let other = bytes.map { $0 ^ 0xFF }
        #expect(try await Self.send("PUT", upload.url, headers: upload.headers, body: other).status == 412)
        #expect(try await store.read(key, range: nil) == bytes)

        let download = try store.presign(key, for: .download, expires: PresignedAccess.downloadLifetime)
        let fetched = try await Self.send("GET", download.url)
        #expect(fetched.status == 200 && fetched.body == bytes)
        let text = download.url.absoluteString
        let otherKey = try #require(URL(string: text.replacingOccurrences(of: "0000000000aa", with: "0000000000bb")))
        #expect(try await Self.send("GET", otherKey).status == 403)
        let longer = try #require(URL(string: text.replacingOccurrences(of: "X-Amz-Expires=900", with: "X-Amz-Expires=9000")))
        #expect(try await Self.send("GET", longer).status == 403)
        let signature = try #require(text.range(of: "X-Amz-Signature="))
        let flipped = text[..<signature.upperBound] + String(text[signature.upperBound...].reversed())
        #expect(try await Self.send("GET", try #require(URL(string: String(flipped)))).status == 403)

        let brief = try store.presign(key, for: .download, expires: .seconds(1))
        try await Task.sleep(for: .milliseconds(2100))
        let expired = try await Self.send("GET", brief.url)
        #expect(expired.status == 403 && String(decoding: expired.body, as: UTF8.self).contains("expired"))
    }
}
