import AsyncHTTPClient
@testable import CoreAPI
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import NIOHTTP1
import RestartixAWS
import RestartixKit
import RestartixPlatform
import RestartixTestSupport
import ServiceSupport
import Testing

/// The files routes with the patient tests' clinics: on SQLite with the local uploads store the
/// Core API serves itself, on Postgres through PgBouncer with the uploads bucket on moto.
extension PatientRouteTests {
    /// Sends a presigned request: to the app itself for the local store (its path and query),
    /// to moto for S3.
    static func send(
        _ presigned: PresignedBody, body: [UInt8]? = nil, headers extra: [String: String]? = nil, url: String? = nil, client: some TestClientProtocol
    ) async throws -> (status: Int, body: [UInt8]) {
        let target = url ?? presigned.url
        let headers = extra ?? presigned.headers
        if target.hasPrefix("http://127.0.0.1:0/") || target.contains("/v1/objects/") {
            let components = try #require(URLComponents(string: target))
            var fields = HTTPFields()
            for (name, value) in headers { fields[HTTPField.Name(name)!] = value }
            return try await client.execute(
                uri: components.percentEncodedPath + "?" + (components.percentEncodedQuery ?? ""), method: HTTPRequest.Method(presigned.method)!,
                headers: fields, body: body.map { ByteBuffer(bytes: $0) }
            ) { response in (Int(response.status.code), Array(response.body.readableBytesView)) }
        }
        var request = HTTPClientRequest(url: target)
        request.method = HTTPMethod(rawValue: presigned.method)
        for (name, value) in headers where name != "content-length" { request.headers.add(name: name, value: value) }
        if let body { request.body = .bytes(ByteBuffer(bytes: body)) }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
        return (Int(response.status.code), Array(try await response.body.collect(upTo: 1 << 20).readableBytesView))
    }

    @Test("files: MIME allow-list and size cap before signing; a patient uploads to its own record; nothing downloadable before the upload completes; a signed URL takes exactly its type and length; the clinic's staff and the patient download, another clinic gets 404; audited", arguments: PatientRouteTests.backends)
    func files(backend: Backend) async throws {
        let directory = try TemporaryDirectory("core-files")
        defer { directory.remove() }
        var bucket: String?
        if backend.isPostgres {
            let name = "restartix-uploads-\(UUID().uuidString.prefix(8).lowercased())"
            let s3 = try S3Client(
                bucket: name, region: "us-east-1",
                credentials: AWSCredentials(accessKeyID: try RequiredServices.require("AWS_ACCESS_KEY_ID"), secretAccessKey: try RequiredServices.require("AWS_SECRET_ACCESS_KEY")),
                endpoint: try RequiredServices.require("AWS_ENDPOINT_URL"), usePathStyle: true
            )
            try await s3.createBucket()
            bucket = name
        }
        try await withAPI(backend, configure: { configuration in
            configuration.uploadsDirectory = directory.path("uploads")
            if let bucket {
                configuration.uploadsBucket = bucket
                configuration.uploadsEncryption = .s3
                configuration.service = ServiceEnvironment(RequiredServices.environment)
            }
        }) { client, fixture in
            let record = try await Self.createOwn(client, fixture)
            let bytes = (0..<3000).map { UInt8(truncatingIfNeeded: $0 &* 13) }
            func ask(_ who: String, _ body: [String: Any]) async throws -> (HTTPResponse.Status, UploadBody?, Problem?) {
                try await client.execute(uri: "/v1/files", method: .post, headers: fixture.auth(who), body: Self.json(body)) { response in
                    (response.status, Self.decode(UploadBody.self, response), Self.decode(Problem.self, response))
                }
            }
            // Refused before anything is signed or recorded.
            let before = try await fixture.count("SELECT count(*) AS n FROM files WHERE organization_id IN (\(fixture.clinic), \(fixture.otherClinic))")
            for (who, body, status, code) in [
                ("patient", ["surface": "patient-files", "content_type": "text/html", "size_bytes": 10] as [String: Any], HTTPResponse.Status.unprocessableContent, "file.typeNotAllowed"),
                ("patient", ["surface": "patient-files", "content_type": "image/png", "size_bytes": 26 << 20], .unprocessableContent, "file.tooLarge"),
                ("patient", ["surface": "patient-files", "content_type": "image/png", "size_bytes": 0], .badRequest, "file.invalidField"),
                ("patient", ["surface": "exercise-videos", "content_type": "video/mp4", "size_bytes": 10], .forbidden, "tenancy.roleNotAllowed"),
                ("patient", ["surface": "x-rays", "content_type": "image/png", "size_bytes": 10], .badRequest, "request.invalidField"),
                ("other-owner", ["surface": "documents", "content_type": "application/pdf", "size_bytes": 10, "patient_id": record.id], .notFound, "tenancy.notFound"),
            ] {
                let (answered, _, problem) = try await ask(who, body)
                #expect(answered == status && problem?.code == code, "\(body): \(answered) \(problem?.code ?? "-")")
            }
            #expect(try await fixture.count("SELECT count(*) AS n FROM files WHERE organization_id IN (\(fixture.clinic), \(fixture.otherClinic))") == before)

            let (status, asked, _) = try await ask("patient", ["surface": "patient-files", "content_type": "image/png", "size_bytes": bytes.count])
            #expect(status == .created)
            let upload = try #require(asked)
            #expect(upload.file.state == "pending" && upload.file.patient_id == record.id && upload.upload.method == "PUT")
            #expect(upload.upload.headers["content-type"] == "image/png" && upload.upload.headers["content-length"] == String(bytes.count))
            #expect(upload.upload.url.contains("\(fixture.clinic.lowercasedString)/patient-files/\(upload.file.id)"))
            // Nothing to complete or download yet.
            try await client.execute(uri: "/v1/files/\(upload.file.id)/complete", method: .post, headers: fixture.auth("patient")) { response in
                #expect(response.status == .conflict && Self.decode(Problem.self, response)?.code == "file.notUploaded")
            }
            try await client.execute(uri: "/v1/files/\(upload.file.id)/download", method: .get, headers: fixture.auth("patient")) { response in
                #expect(response.status == .conflict)
            }
            // Another type or another length than signed: refused, nothing stored.
            var wrongType = upload.upload.headers
            wrongType["content-type"] = "text/html"
            #expect(try await Self.send(upload.upload, body: bytes, headers: wrongType, client: client).status == 403)
            var wrongLength = upload.upload.headers
            wrongLength["content-length"] = String(bytes.count + 1)
            #expect(try await Self.send(upload.upload, body: bytes + [0], headers: wrongLength, client: client).status == 403)
            // The signed upload; on the local store, once (the URL is still valid, the object is
            // not replaced).
            #expect(try await Self.send(upload.upload, body: bytes, client: client).status == 200)
            if backend == .sqlite {
                #expect(try await Self.send(upload.upload, body: bytes.reversed(), client: client).status == 409)
            }
            try await client.execute(uri: "/v1/files/\(upload.file.id)/complete", method: .post, headers: fixture.auth("patient")) { response in
                #expect(response.status == .ok && Self.decode(FileBody.self, response)?.state == "uploaded")
            }
            for who in ["patient", "specialist"] {
                let answer = try await client.execute(uri: "/v1/files/\(upload.file.id)/download", method: .get, headers: fixture.auth(who)) { response in
                    #expect(response.status == .ok && response.headers[.cacheControl] == "no-store")
                    return Self.decode(DownloadBody.self, response)
                }
                let download = try #require(answer)
                let fetched = try await Self.send(download.download, client: client)
                #expect(fetched.status == 200 && fetched.body == bytes, "\(who)")
                // A signature changed by one character is refused.
                let tampered = download.download.url.replacingOccurrences(of: "Signature=", with: "Signature=A")
                #expect(try await Self.send(download.download, url: tampered, client: client).status == 403)
            }
            for path in ["/v1/files/\(upload.file.id)", "/v1/files/\(upload.file.id)/download"] {
                try await client.execute(uri: path, method: .get, headers: fixture.auth("other-owner")) { response in
                    #expect(response.status == .notFound && Self.decode(Problem.self, response)?.code == "tenancy.notFound")
                }
            }
            let actions = try await fixture.rows("SELECT action FROM audit_log WHERE organization_id = \(fixture.clinic) AND resource_type = 'file' ORDER BY created_at")
            #expect(try actions.map { try $0.decode("action", as: String.self) } == ["file.upload", "file.complete", "file.download", "file.download"])
        }
    }
}
