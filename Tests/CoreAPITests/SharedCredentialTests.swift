import AsyncHTTPClient
import Foundation
import RestartixAWS
@testable import RestartixPlatform
import RestartixTestSupport
import Synchronization
import Testing

/// The appointment follow-ups' default AWS credentials (a task role's, for SES rows that store
/// no keys): one provider, made at the first send and shared, so the container endpoint is
/// asked once, not once per e-mail.
@Suite("Shared credential provider")
struct SharedCredentialTests {
    @Test("the default credentials are fetched once and shared by every later send; a failed first fetch is retried by the next caller")
    func fetchedOnce() async throws {
        let failing = Mutex(true)
        let endpoint = try await StubHTTPServer.start { _ in
            if failing.withLock({ $0 }) { return .status(503) }
            return .json(#"{"AccessKeyId":"ASIASHARED","SecretAccessKey":"s","Token":"t","Expiration":"2099-01-01T00:00:00Z"}"#)
        }
        defer { endpoint.stop() }
        let shared = SharedCredentialProvider(.container(try AWSContainerCredentials(fullURI: endpoint.baseURL + "/creds")), httpClient: .shared)
        await #expect(throws: AWSError.self) { _ = try await shared.provider() }
        failing.withLock { $0 = false }
        let first = try await shared.provider()
        for _ in 0..<10 { #expect(try await shared.provider() === first) }
        #expect(try await first.credentials().accessKeyID == "ASIASHARED")
        #expect(endpoint.requests.count == 2, "the failed first fetch and one more")
    }
}
