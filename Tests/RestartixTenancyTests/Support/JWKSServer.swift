import Foundation
import JWTKit
import _CryptoExtras
import RestartixTestSupport
import Synchronization

/// A JWKS endpoint on the suites' stub HTTP server, counting fetches. The document can be
/// replaced (key rotation) and the endpoint made to fail while it runs.
final class JWKSServer: Sendable {
    private let state = Mutex<(document: String, status: Int)>(("{\"keys\":[]}", 200))
    private let server = Mutex<StubHTTPServer?>(nil)

    var url: String { (server.withLock { $0?.baseURL } ?? "") + "/.well-known/jwks.json" }
    var fetches: Int { server.withLock { $0?.requests.filter { $0.path == "/.well-known/jwks.json" }.count ?? 0 } }

    func serve(_ document: String) { state.withLock { $0.document = document } }
    func fail(with status: Int) { state.withLock { $0.status = status } }

    static func start() async throws -> JWKSServer {
        let jwks = JWKSServer()
        let stub = try await StubHTTPServer.start { request in
            guard request.path == "/.well-known/jwks.json" else { return .status(404) }
            let (document, status) = jwks.state.withLock { ($0.document, $0.status) }
            return .json(document, status: status)
        }
        jwks.server.withLock { $0 = stub }
        return jwks
    }

    func stop() { server.withLock { $0?.stop() } }
}

/// An RSA signing key and its JWKS entry.
struct TestRSAKey: Sendable {
    let kid: String
    let keys: JWTKeyCollection
    let jwk: String
    let publicPEM: String

    static func make(kid: String) async throws -> TestRSAKey {
        let key = try Insecure.RSA.PrivateKey(backing: _RSA.Signing.PrivateKey(keySize: .bits2048))
        let (n, e) = try key.publicKey.getKeyPrimitives()
        let keys = await JWTKeyCollection().add(rsa: key, digestAlgorithm: .sha256, kid: JWKIdentifier(string: kid))
        let jwk = #"{"kty":"RSA","use":"sig","alg":"RS256","kid":"\#(kid)","n":"\#(base64URL(n))","e":"\#(base64URL(e))"}"#
        return TestRSAKey(kid: kid, keys: keys, jwk: jwk, publicPEM: key.publicKey.pemRepresentation)
    }

    func sign(_ claims: some JWTPayload) async throws -> String {
        try await keys.sign(claims, kid: JWKIdentifier(string: kid))
    }
}

func jwks(_ keys: TestRSAKey...) -> String { #"{"keys":[\#(keys.map(\.jwk).joined(separator: ","))]}"# }

func base64URL(_ data: some DataProtocol) -> String {
    Data(data).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
        .replacingOccurrences(of: "=", with: "")
}
