import Foundation
import Hummingbird
import JWTKit
import Logging
import NIOCore
import _CryptoExtras
import RestartixTestSupport
import Synchronization

/// A real HTTP server on 127.0.0.1 serving a JWKS document, counting fetches. The document can
/// be replaced (key rotation) while it runs.
final class JWKSServer: Sendable {
    private let state = Mutex<(document: String, fetches: Int, status: Int)>(("{\"keys\":[]}", 0, 200))
    private let task: Task<Void, any Error>
    let url: String

    var fetches: Int { state.withLock { $0.fetches } }

    func serve(_ document: String) { state.withLock { $0.document = document } }
    func fail(with status: Int) { state.withLock { $0.status = status } }

    private init(task: Task<Void, any Error>, port: Int) {
        self.task = task
        self.url = "http://127.0.0.1:\(port)/.well-known/jwks.json"
    }

    static func start() async throws -> JWKSServer {
        let holder = Mutex<JWKSServer?>(nil)
        let router = Router()
        router.get("/.well-known/jwks.json") { _, _ -> Response in
            let (document, status) = holder.withLock { server in
                server!.state.withLock { state in
                    state.fetches += 1
                    return (state.document, state.status)
                }
            }
            return Response(
                status: HTTPResponse.Status(code: status),
                headers: [.contentType: "application/json"],
                body: ResponseBody(byteBuffer: ByteBuffer(string: document))
            )
        }
        let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
        let app = Application(
            router: router,
            configuration: ApplicationConfiguration(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { channel in continuation.yield(channel.localAddress?.port ?? 0) },
            logger: {
                var logger = Logger(label: "restartix.tests.jwks")
                logger.logLevel = .critical  // stopping the server logs the cancellation
                return logger
            }()
        )
        let task = Task { try await app.run() }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next(), port > 0 else { throw MissingService(name: "JWKS test server") }
        let server = JWKSServer(task: task, port: port)
        holder.withLock { $0 = server }
        return server
    }

    func stop() { task.cancel() }
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
