import AsyncHTTPClient
import Foundation
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1
@testable import RestartixAWS
@testable import RestartixKit
import RestartixTestSupport
import Synchronization
import Testing

/// SigV4 against the AWS Signature Version 4 test suite (aws-sig-v4-test-suite: credentials
/// AKIDEXAMPLE, 2015-08-30T12:36:00Z, us-east-1, service "service"), every case the header
/// form applies to, the normalize-path and post-sts-token groups included. Left out:
/// post-sts-header-after (a token added unsigned after signing, which this signer never does).
@Suite("AWS SigV4")
struct AWSSignerTests {
    struct Vector {
        let name: String
        let method: String
        let path: String
        var query: [(String, String)] = []
        var headers: [(String, String)] = []
        var body = ""
        let signature: String
        var signed = "host;x-amz-date"
    }

    static let signer = AWSSigner(
        credentials: AWSCredentials(accessKeyID: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
        region: "us-east-1",
        service: "service"
    )
    static let date = Date(timeIntervalSince1970: 1_440_938_160)  // 2015-08-30T12:36:00Z

    static let vectors: [Vector] = [
        Vector(name: "get-header-key-duplicate", method: "GET", path: "/", headers: [("my-header1", "value2,value2,value1")],
               signature: "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea", signed: "host;my-header1;x-amz-date"),
        Vector(name: "get-header-value-order", method: "GET", path: "/", headers: [("my-header1", "value4,value1,value3,value2")],
               signature: "08c7e5a9acfcfeb3ab6b2185e75ce8b1deb5e634ec47601a50643f830c755c01", signed: "host;my-header1;x-amz-date"),
        Vector(name: "get-header-value-trim", method: "GET", path: "/", headers: [("my-header1", "value1"), ("my-header2", "\"a   b   c\"")],
               signature: "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736", signed: "host;my-header1;my-header2;x-amz-date"),
        Vector(name: "get-unreserved", method: "GET", path: "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
               signature: "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f"),
        Vector(name: "get-utf8", method: "GET", path: "/\u{1234}", signature: "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85"),
        Vector(name: "get-vanilla", method: "GET", path: "/", signature: "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
        Vector(name: "get-vanilla-empty-query-key", method: "GET", path: "/", query: [("Param1", "value1")],
               signature: "a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec72011b9aeb"),
        Vector(name: "get-vanilla-query-order-key-case", method: "GET", path: "/", query: [("Param2", "value2"), ("Param1", "value1")],
               signature: "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"),
        Vector(name: "get-vanilla-query-unreserved", method: "GET", path: "/",
               query: [("-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")],
               signature: "9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197"),
        Vector(name: "get-vanilla-utf8-query", method: "GET", path: "/", query: [("\u{1234}", "bar")],
               signature: "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04"),
        Vector(name: "post-header-key-sort", method: "POST", path: "/", headers: [("my-header1", "value1")],
               signature: "c5410059b04c1ee005303aed430f6e6645f61f4dc9e1461ec8f8916fdf18852c", signed: "host;my-header1;x-amz-date"),
        Vector(name: "post-header-value-case", method: "POST", path: "/", headers: [("My-Header1", "VALUE1")],
               signature: "cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d", signed: "host;my-header1;x-amz-date"),
        Vector(name: "post-vanilla", method: "POST", path: "/", signature: "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"),
        Vector(name: "post-vanilla-query", method: "POST", path: "/", query: [("Param1", "value1")],
               signature: "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11"),
        Vector(name: "post-vanilla-query-nonunreserved", method: "POST", path: "/", query: [("@#$%^", ""), ("+", "/,?><`\";:\\|][{}")],
               signature: "66c82657c86e26fb25238d0e69f011edc4c6df5ae71119d7cb98ed9b87393c1e"),
        Vector(name: "post-vanilla-query-space", method: "POST", path: "/", query: [("p", "")],
               signature: "e71688addb58a26418614085fb730ba3faa623b461c17f48f2fbdb9361b94a9b"),
        Vector(name: "get-header-value-multiline", method: "GET", path: "/", headers: [("My-Header1", "value1\n  value2\n     value3")],
               signature: "ba17b383a53190154eb5fa66a1b836cc297cc0a3d70a5d00705980573d8ff790", signed: "host;my-header1;x-amz-date"),
        Vector(name: "get-vanilla-query", method: "GET", path: "/", signature: "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
        Vector(name: "get-vanilla-query-order-key", method: "GET", path: "/", query: [("Param1", "value2"), ("Param1", "Value1")],
               signature: "eedbc4e291e521cf13422ffca22be7d2eb8146eecf653089df300a15b2382bd1"),
        Vector(name: "get-vanilla-query-order-value", method: "GET", path: "/", query: [("Param1", "value2"), ("Param1", "value1")],
               signature: "5772eed61e12b33fae39ee5e7012498b51d56abc0abb7c60486157bd471c4694"),
        Vector(name: "post-header-key-case", method: "POST", path: "/", signature: "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"),
        // normalize-path/: every service but S3 signs the normalized path.
        Vector(name: "get-space", method: "GET", path: "/example space/", signature: "652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741"),
        Vector(name: "get-slash", method: "GET", path: "//", signature: "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
        Vector(name: "get-slash-dot-slash", method: "GET", path: "/./", signature: "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
        Vector(name: "get-slash-pointless-dot", method: "GET", path: "/./example", signature: "ef75d96142cf21edca26f06005da7988e4f8dc83a165a80865db7089db637ec5"),
        Vector(name: "get-slashes", method: "GET", path: "//example//", signature: "9a624bd73a37c9a373b5312afbebe7a714a789de108f0bdfe846570885f57e84"),
        Vector(name: "get-relative", method: "GET", path: "/example/..", signature: "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
        Vector(name: "get-relative-relative", method: "GET", path: "/example1/example2/../..", signature: "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
        Vector(name: "post-x-www-form-urlencoded", method: "POST", path: "/", headers: [("Content-Type", "application/x-www-form-urlencoded")],
               body: "Param1=value1", signature: "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a", signed: "content-type;host;x-amz-date"),
        Vector(name: "post-x-www-form-urlencoded-parameters", method: "POST", path: "/",
               headers: [("Content-Type", "application/x-www-form-urlencoded; charset=utf8")], body: "Param1=value1",
               signature: "1a72ec8f64bd914b0e42e42607c7fbce7fb2c7465f63e3092b3b0d39fa77a6fe", signed: "content-type;host;x-amz-date"),
    ]

    @Test("the AWS SigV4 test suite", arguments: vectors.map(\.name))
    func suite(name: String) {
        let vector = Self.vectors.first { $0.name == name }!
        let added = Self.signer.sign(
            method: vector.method, path: vector.path, query: vector.query,
            headers: [("Host", "example.amazonaws.com")] + vector.headers, body: Data(vector.body.utf8), date: Self.date
        )
        let authorization = added.first { $0.0 == "authorization" }?.1
        #expect(authorization == "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=\(vector.signed), Signature=\(vector.signature)")
        #expect(added.first { $0.0 == "x-amz-date" }?.1 == "20150830T123600Z")
    }

    @Test("post-sts-header-before: temporary credentials sign their session token (the suite's vector)")
    func stsHeaderBefore() {
        let token = "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA=="
        let signer = AWSSigner(
            credentials: AWSCredentials(accessKeyID: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", sessionToken: token),
            region: "us-east-1", service: "service"
        )
        let added = signer.sign(method: "POST", path: "/", headers: [("Host", "example.amazonaws.com")], body: Data(), date: Self.date)
        #expect(added.first { $0.0 == "authorization" }?.1 == "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date;x-amz-security-token, Signature=85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead")
        #expect(added.contains { $0 == ("x-amz-security-token", token) })
    }

    @Test("S3 signs its keys as they are; other services sign the normalized path")
    func pathNormalization() {
        #expect(AWSSigner.normalized("/a/./b/../c//") == "/a/c/")
        #expect(AWSSigner.normalized("/example/.") == "/example/")
        #expect(AWSSigner.normalized("") == "/")
        let s3 = AWSSigner(credentials: Self.signer.credentials, region: "us-east-1", service: "s3")
        let dotted = s3.sign(method: "GET", path: "/bucket/a/../b", headers: [("Host", "s3.amazonaws.com")], body: Data(), date: Self.date)
        let plain = s3.sign(method: "GET", path: "/bucket/b", headers: [("Host", "s3.amazonaws.com")], body: Data(), date: Self.date)
        #expect(dotted.first { $0.0 == "authorization" }?.1 != plain.first { $0.0 == "authorization" }?.1, "an S3 key with dots is its own key")
    }

    @Test("temporary credentials sign their session token; credentials never print their secret")
    func sessionToken() {
        let credentials = AWSCredentials(accessKeyID: "ASIAEXAMPLE", secretAccessKey: "very-secret", sessionToken: "token-1")
        let added = AWSSigner(credentials: credentials, region: "eu-central-1", service: "kms")
            .sign(method: "POST", path: "/", headers: [("host", "kms.eu-central-1.amazonaws.com")], body: Data(), date: Self.date)
        #expect(added.contains { $0 == ("x-amz-security-token", "token-1") })
        #expect(added.first { $0.0 == "authorization" }?.1.contains("x-amz-security-token") == true)
        #expect(!"\(credentials)".contains("very-secret"))
    }
}

/// Secrets Manager and KMS round trips against moto_server (Scripts/services).
@Suite("AWS clients on moto", .timeLimit(.minutes(3)))
struct AWSClientTests {
    static func endpoint() throws -> String? {
        if let url = TestBackend.value("AWS_ENDPOINT_URL") { return url }
        if TestBackend.servicesRequired { _ = try TestBackend.require("AWS_ENDPOINT_URL") }
        return nil
    }

    static let credentials = AWSCredentials(accessKeyID: "testing", secretAccessKey: "testing")

    @Test("Secrets Manager: create, read AWSCURRENT, and a missing secret is a typed error")
    func secretsManager() async throws {
        guard let endpoint = try Self.endpoint() else { return }
        let client = try SecretsManagerClient(region: "us-east-1", credentials: Self.credentials, endpoint: endpoint)
        let name = "restartix/test/\(UUID().uuidString)"
        try await client.createSecret(name: name, value: #"{"hello":"world"}"#)
        guard case .string(let value) = try await client.getSecretValue(name) else {
            Issue.record("expected a string secret")
            return
        }
        #expect(value == #"{"hello":"world"}"#)
        let missing = await #expect(throws: AWSError.self) { try await client.getSecretValue(name + "-missing") }
        if case .service(let type, let status) = missing?.kind {
            #expect(type == "ResourceNotFoundException")
            #expect((400..<500).contains(status))  // AWS answers 400, moto 404
        } else {
            Issue.record("expected a service error, got \(String(describing: missing))")
        }
    }

    @Test("KMS: encrypt and decrypt a data key; a wrong context fails; an unreachable endpoint is typed")
    func kms() async throws {
        guard let endpoint = try Self.endpoint() else { return }
        let client = try KMSClient(region: "us-east-1", credentials: Self.credentials, endpoint: endpoint)
        let key = try await client.createKey(description: "restartix test")
        let dataKey = Data((0..<32).map { _ in UInt8.random(in: 0...255) })
        let blob = try await client.encrypt(dataKey, keyID: key, encryptionContext: ["purpose": "column"])
        #expect(blob != dataKey)
        #expect(try await client.decrypt(blob, encryptionContext: ["purpose": "column"]) == dataKey)
        await #expect(throws: AWSError.self) { try await client.decrypt(blob, encryptionContext: ["purpose": "other"]) }
        let nowhere = try KMSClient(region: "us-east-1", credentials: Self.credentials, endpoint: "http://127.0.0.1:9", timeout: .seconds(1))
        let error = await #expect(throws: AWSError.self) { try await nowhere.decrypt(blob) }
        #expect(error?.kind == .unreachable)
        #expect(throws: AWSError.self) { try KMSClient(region: "us-east-1", credentials: Self.credentials, endpoint: "ftp://x") }
    }
}

/// The container credential endpoint (ECS task roles, EKS pod identity) against a real local
/// HTTP server standing in for 169.254.170.2.
@Suite("AWS container credentials", .timeLimit(.minutes(3)))
struct AWSContainerCredentialsTests {
    static func server(token: String) async throws -> (url: String, stop: @Sendable () -> Void) {
        let stub = try await StubHTTPServer.start { request in
            guard request.path == "/creds" else { return .status(404) }
            guard request.headers["authorization"] == token else { return .status(403) }
            return .json(#"{"AccessKeyId":"ASIACONTAINER","SecretAccessKey":"container-secret","Token":"session-1","Expiration":"2030-01-01T00:00:00Z"}"#)
        }
        return (stub.baseURL + "/creds", { stub.stop() })
    }

    @Test("credentials from the endpoint with a token file; a wrong token, an unsafe URI and a missing token file are typed errors")
    func resolve() async throws {
        let (url, stop) = try await Self.server(token: "pod-identity-token")
        defer { stop() }
        let tokenFile = FileManager.default.temporaryDirectory.appendingPathComponent("aws-token-\(UUID().uuidString)").path
        _ = FileManager.default.createFile(atPath: tokenFile, contents: Data("pod-identity-token\n".utf8))
        defer { try? FileManager.default.removeItem(atPath: tokenFile) }
        let credentials = try await AWSCredentialSource.container(AWSContainerCredentials(fullURI: url, authorization: .tokenFile(path: tokenFile))).resolve()
        #expect(credentials.accessKeyID == "ASIACONTAINER")
        #expect(credentials.sessionToken == "session-1")
        #expect(try await AWSCredentialSource.static(AWSCredentials(accessKeyID: "AKIA", secretAccessKey: "s")).resolve().accessKeyID == "AKIA")
        let wrong = await #expect(throws: AWSError.self) {
            try await AWSCredentialSource.container(AWSContainerCredentials(fullURI: url, authorization: .token("other"))).resolve()
        }
        #expect(wrong?.kind == .service(type: "ContainerCredentials", status: 403))
        let remote = #expect(throws: AWSError.self) { try AWSContainerCredentials(fullURI: "http://example.com/creds") }
        #expect(remote?.kind == .configuration)
        let noFile = await #expect(throws: AWSError.self) {
            try await AWSCredentialSource.container(AWSContainerCredentials(fullURI: url, authorization: .tokenFile(path: tokenFile + ".missing"))).resolve()
        }
        #expect(noFile?.kind == .configuration)
        #expect(AWSContainerCredentials(relativeURI: "v2/credentials/x").url.absoluteString == "http://169.254.170.2/v2/credentials/x")
        #expect(!"\(AWSCredentialSource.static(AWSCredentials(accessKeyID: "AKIA", secretAccessKey: "hunter2")))".contains("hunter2"))
    }
}

/// Keys that expire while a client lives: a container endpoint that issues numbered keys valid
/// for an hour of a test clock, and an S3 endpoint that records which key signed each request.
@Suite("AWS credential refresh", .timeLimit(.minutes(2)))
struct AWSCredentialRefreshTests {
    final class World: Sendable {
        let now = Mutex(Date(timeIntervalSince1970: 1_900_000_000))
        let issued = Mutex(0)
        let failing = Mutex(false)
        let slow = Mutex(Duration.zero)
        func advance(_ seconds: TimeInterval) { now.withLock { $0 += seconds } }
    }

    static func keyID(_ request: StubHTTPServer.Request) -> String? {
        guard let authorization = request.headers["authorization"], let range = authorization.range(of: "Credential=") else { return nil }
        return String(authorization[range.upperBound...].prefix { $0 != "/" })
    }

    @Test("a client signs with fresh keys once the held ones are within the window; one fetch for many callers; a failed refresh keeps valid keys, fails expired ones")
    func refresh() async throws {
        let world = World()
        let endpoint = try await StubHTTPServer.start { _ in
            try? await Task.sleep(for: world.slow.withLock { $0 })
            if world.failing.withLock({ $0 }) { return .status(503) }
            let n = world.issued.withLock { $0 += 1; return $0 }
            let expiration = world.now.withLock { $0 }.addingTimeInterval(3600).formatted(.iso8601)
            return .json(#"{"AccessKeyId":"ASIAKEY\#(n)","SecretAccessKey":"secret-\#(n)","Token":"token-\#(n)","Expiration":"\#(expiration)"}"#)
        }
        defer { endpoint.stop() }
        let s3 = try await StubHTTPServer.start { _ in StubHTTPServer.Reply(status: 200, headers: ["ETag": "\"e\""]) }
        defer { s3.stop() }
        let provider = try await AWSCredentialProvider(
            .container(AWSContainerCredentials(fullURI: endpoint.baseURL + "/creds")), clock: { world.now.withLock { $0 } }
        )
        #expect(provider.current.expiration == world.now.withLock { $0 }.addingTimeInterval(3600))
        let client = try S3Client(bucket: "refresh-test", region: "us-east-1", credentials: provider, endpoint: s3.baseURL, usePathStyle: true)
        func lastKey() -> String? { s3.requests.last.flatMap(Self.keyID) }

        try await client.put(Data("a".utf8), at: "a")
        #expect(lastKey() == "ASIAKEY1" && provider.refreshCount == 0, "an hour left: the keys held")
        world.advance(46 * 60)
        try await client.put(Data("b".utf8), at: "b")
        #expect(lastKey() == "ASIAKEY2" && provider.refreshCount == 1, "14 minutes left: fetched again before signing")

        // Twenty requests at once, when the keys are due and the endpoint is slow: one fetch.
        world.advance(46 * 60)
        world.slow.withLock { $0 = .milliseconds(300) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<20 { group.addTask { try await client.put(Data("c".utf8), at: "c\(i)") } }
            try await group.waitForAll()
        }
        world.slow.withLock { $0 = .zero }
        #expect(world.issued.withLock { $0 } == 3 && provider.refreshCount == 2)
        #expect(s3.requests.suffix(20).allSatisfy { Self.keyID($0) == "ASIAKEY3" })

        // The endpoint down while the keys held are still valid: they go on signing, and the
        // endpoint is asked again only after the retry interval.
        world.advance(50 * 60)
        world.failing.withLock { $0 = true }
        let before = endpoint.requests.count
        try await client.put(Data("d".utf8), at: "d")
        try await client.put(Data("e".utf8), at: "e")
        #expect(lastKey() == "ASIAKEY3")
        #expect(endpoint.requests.count == before + 1, "one attempt within the retry interval")
        world.advance(11)
        try await client.put(Data("f".utf8), at: "f")
        #expect(endpoint.requests.count == before + 2)

        // Expired, and the endpoint still down: the request fails with the endpoint's error and
        // sends nothing.
        world.advance(20 * 60)
        let sent = s3.requests.count
        let expired = await #expect(throws: AWSError.self) { try await client.put(Data("g".utf8), at: "g") }
        #expect(expired?.kind == .service(type: "ContainerCredentials", status: 503))
        #expect(s3.requests.count == sent)

        // Within the retry interval: the last error at once, no fetch.
        let fetches = endpoint.requests.count
        let again = await #expect(throws: AWSError.self) { try await client.put(Data("g".utf8), at: "g") }
        #expect(again?.kind == .service(type: "ContainerCredentials", status: 503) && endpoint.requests.count == fetches)

        // Back: after the interval the next request signs with new keys; a presigned URL
        // (synchronous) uses them.
        world.failing.withLock { $0 = false }
        world.advance(11)
        try await client.put(Data("h".utf8), at: "h")
        #expect(lastKey() == "ASIAKEY4")
        let url = try client.presignedURL("GET", for: "h", expires: .seconds(900))
        #expect(url.absoluteString.contains("ASIAKEY4"))
        #expect(!"\(provider)".contains("secret-") && !"\(provider.current)".contains("secret-"))
    }

    @Test("an endpoint that answers keys already within the window is asked once per retry interval, not on every request")
    func notRotatedYet() async throws {
        let now = Mutex(Date(timeIntervalSince1970: 1_900_000_000))
        let endpoint = try await StubHTTPServer.start { _ in
            // Ten minutes left, whenever asked: inside the 15-minute window.
            let expiration = now.withLock { $0 }.addingTimeInterval(600).formatted(.iso8601)
            return .json(#"{"AccessKeyId":"ASIASTALE","SecretAccessKey":"s","Token":"t","Expiration":"\#(expiration)"}"#)
        }
        defer { endpoint.stop() }
        let provider = try await AWSCredentialProvider(.container(AWSContainerCredentials(fullURI: endpoint.baseURL + "/creds")), clock: { now.withLock { $0 } })
        for _ in 0..<20 { _ = try await provider.credentials() }
        #expect(endpoint.requests.count == 2, "the first fetch, then one refresh; the rest within the interval")
        now.withLock { $0 += 11 }
        for _ in 0..<20 { _ = try await provider.credentials() }
        #expect(endpoint.requests.count == 3)
    }

    @Test("fixed keys never refresh; container keys without an expiration are kept")
    func fixed() async throws {
        let provider = AWSCredentialProvider(AWSCredentials(accessKeyID: "AKIAFIXED", secretAccessKey: "s"))
        #expect(try await provider.credentials().accessKeyID == "AKIAFIXED" && provider.refreshCount == 0)
        let endpoint = try await StubHTTPServer.start { _ in .json(#"{"AccessKeyId":"ASIANOEXP","SecretAccessKey":"s"}"#) }
        defer { endpoint.stop() }
        let container = try await AWSCredentialProvider(.container(AWSContainerCredentials(fullURI: endpoint.baseURL + "/creds")))
        #expect(try await container.credentials().accessKeyID == "ASIANOEXP")
        #expect(endpoint.requests.count == 1 && container.current.expiration == nil)
    }
}

/// SES v2 against moto (send, an unverified sender refused, the send counted), and its REST
/// paths against a stub that checks the request SigV4 signs (moto has no suppression list).
@Suite("SES", .timeLimit(.minutes(3)))
struct SESClientTests {
    static let credentials = AWSCredentials(accessKeyID: "testing", secretAccessKey: "testing")

    /// moto's SES v1 send quota: `SentLast24Hours` counts every message moto accepted.
    static func sentCount(_ endpoint: String) async throws -> Int {
        let url = URL(string: endpoint + "/")!
        let body = Data("Action=GetSendQuota&Version=2010-12-01".utf8)
        let signer = AWSSigner(credentials: credentials, region: "us-east-1", service: "ses")
        var request = HTTPClientRequest(url: url.absoluteString)
        request.method = .POST
        for (name, value) in signer.sign("POST", url: url, headers: [("content-type", "application/x-www-form-urlencoded")], payload: .bytes(body)) {
            request.headers.add(name: name, value: value)
        }
        request.body = .bytes(ByteBuffer(bytes: body))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(5))
        let text = String(buffer: try await response.body.collect(upTo: 1 << 16))
        let count = text.components(separatedBy: "<SentLast24Hours>").dropFirst().first?.components(separatedBy: "<").first
        return Int(Double(try #require(count)) ?? -1)
    }

    @Test("send: a verified sender's message is accepted and counted; an unverified one is MessageRejected, the address kept out of the description; bad input refused before any request")
    func send() async throws {
        guard let endpoint = try AWSClientTests.endpoint() else { return }
        let aws = AWSConfiguration(region: "us-east-1", credentials: .static(Self.credentials), defaultEndpoint: URL(string: endpoint))
        let ses = try await SESClient(aws)
        let sender = "noreply-\(UUID().uuidString.prefix(8).lowercased())@clinic.example"
        try await ses.createEmailIdentity(sender)
        let before = try await Self.sentCount(endpoint)
        var email = SESClient.Email(from: sender, to: ["ana@example.com"], subject: "Your appointment", text: "Tuesday 10:00", html: "<p>Tuesday 10:00</p>")
        email.replyTo = ["desk@clinic.example"]
        email.tags = ["kind": "booking"]
        let id = try await ses.send(email)
        #expect(!id.isEmpty)
        #expect(try await Self.sentCount(endpoint) == before + 1, "moto holds exactly one more message")

        var stranger = email
        stranger.from = "unverified-hunter2@clinic.example"
        let rejected = await #expect(throws: AWSError.self) { try await ses.send(stranger) }
        #expect(rejected?.kind == .service(type: "MessageRejected", status: 400))
        #expect(rejected?.serverMessage?.contains("unverified-hunter2") == true, "the server's message is kept apart")
        #expect(rejected.map { !"\($0)".contains("hunter2") } == true, "and never printed")

        for (change, what) in [({ (e: inout SESClient.Email) in e.to = [] }, "recipients"), ({ e in e.text = nil; e.html = nil }, "body"),
                               ({ e in e.subject = "Hi\r\nBcc: all@example.com" }, "line break")] as [((inout SESClient.Email) -> Void, String)] {
            var bad = email
            change(&bad)
            let error = await #expect(throws: AWSError.self, "\(what)") { try await ses.send(bad) }
            #expect(error?.kind == .configuration, "\(what)")
        }
        #expect(try await Self.sentCount(endpoint) == before + 1, "nothing refused was sent")
        var dumped = ""
        dump(email, to: &dumped)
        #expect(!"\(email) \(dumped)".contains("ana@example.com") && !dumped.contains("Tuesday"), "an e-mail prints its counts, never its content")
    }

    @Test("suppression list: the address is one path segment, signed encoded twice; NotFoundException means not suppressed")
    func suppression() async throws {
        let signer = AWSSigner(credentials: Self.credentials, region: "eu-central-1", service: "ses")
        // The server sees Host as the URI's authority, not a header: the stub's own address.
        let host = Mutex("")
        let stub = try await StubHTTPServer.start { request in
            // Recompute the signature from the path-based entry point (checked against the AWS
            // SigV4 vectors): the once-encoded path, which it encodes a second time.
            let path = String(request.path.split(separator: "?").first ?? "")
            let headers = [("host", host.withLock { $0 })]
                + request.headers.filter { ["x-amz-date", "x-amz-content-sha256", "content-type"].contains($0.key) }.map { ($0.key, $0.value) }
            let formatter = DateFormatter()
            formatter.locale = Locale(identifier: "en_US_POSIX")
            formatter.timeZone = TimeZone(identifier: "UTC")
            formatter.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
            let date = formatter.date(from: request.headers["x-amz-date"] ?? "") ?? Date()
            let expected = signer.sign(
                method: request.method, path: path, query: [], headers: headers, payloadHash: request.headers["x-amz-content-sha256"] ?? "", date: date
            )
                .first { $0.0 == "authorization" }?.1
            guard request.headers["authorization"] == expected else { return .status(403) }
            switch (request.method, path) {
            case ("GET", "/v2/email/suppression/addresses/ana%2Bcare%40example.com"):
                return .json(#"{"SuppressedDestination":{"EmailAddress":"ana+care@example.com","Reason":"BOUNCE","LastUpdateTime":1.7e9}}"#)
            case ("GET", _):
                return StubHTTPServer.Reply(status: 404, headers: ["x-amzn-ErrorType": "NotFoundException:http://internal.amazon.com/"], body: #"{"message":"not found"}"#)
            case ("PUT", "/v2/email/suppression/addresses"):
                return .json("{}")
            default:
                return .status(400)
            }
        }
        defer { stub.stop() }
        host.withLock { $0 = AWSJSONClient.hostHeader(URL(string: stub.baseURL)!) }
        let ses = try SESClient(region: "eu-central-1", credentials: Self.credentials, endpoint: stub.baseURL)
        #expect(try await ses.suppression(of: "ana+care@example.com") == .bounce)
        #expect(try await ses.suppression(of: "bo@example.com") == nil)
        try await ses.suppress("bo@example.com", reason: .complaint)
        let sent = try #require(stub.requests.last).body
        #expect(try JSONDecoder().decode([String: String].self, from: sent) == ["EmailAddress": "bo@example.com", "Reason": "COMPLAINT"])
    }
}
