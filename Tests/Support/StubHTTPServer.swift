public import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Synchronization

/// The one stub HTTP server of the test suites: a real server on 127.0.0.1 (the port the
/// system picks) whose answers the test decides, recording every request it gets. Key-set
/// endpoints, provider APIs, the AWS container credential endpoint: each is a handler on this.
///
/// ```swift
/// let server = try await StubHTTPServer.start { request in
///     request.path == "/.well-known/jwks.json" ? .json(document) : .status(404)
/// }
/// defer { server.stop() }
/// ```
public final class StubHTTPServer: Sendable {
    /// A request as the server saw it.
    public struct Request: Sendable {
        /// `GET`, `POST`, ...
        public let method: String
        /// The path with its query string.
        public let path: String
        /// Header values by lower-cased name (the last value when repeated).
        public let headers: [String: String]
        /// The body (at most 1 MiB is read).
        public let body: Data
    }

    /// What the server answers.
    public struct Reply: Sendable {
        public var status: Int
        public var headers: [String: String]
        public var body: String
        /// How long to wait before answering.
        public var delay: Duration

        public init(status: Int, headers: [String: String] = [:], body: String = "", delay: Duration = .zero) {
            self.status = status
            self.headers = headers
            self.body = body
            self.delay = delay
        }

        /// `status` with a JSON body.
        public static func json(_ body: String, status: Int = 200) -> Reply {
            Reply(status: status, headers: ["content-type": "application/json"], body: body)
        }

        /// `status` and no body.
        public static func status(_ status: Int) -> Reply { Reply(status: status) }
    }

    /// Decides the reply to a request.
    public typealias Handler = @Sendable (Request) async -> Reply

    private let task: Task<Void, any Error>
    private let received = Mutex<[Request]>([])
    /// `http://127.0.0.1:<port>`.
    public let baseURL: String

    /// Every request so far, oldest first.
    public var requests: [Request] { received.withLock { $0 } }

    private init(task: Task<Void, any Error>, port: Int) {
        self.task = task
        self.baseURL = "http://127.0.0.1:\(port)"
    }

    /// Starts a server answering every path and method with `handler`.
    public static func start(_ handler: @escaping Handler) async throws -> StubHTTPServer {
        let holder = Mutex<StubHTTPServer?>(nil)
        let router = Router()
        let respond: @Sendable (Hummingbird.Request, BasicRequestContext) async throws -> Response = { request, _ in
            var headers: [String: String] = [:]
            for field in request.headers { headers[field.name.canonicalName] = field.value }
            let buffer = try await request.body.collect(upTo: 1 << 20)
            let seen = Request(method: request.method.rawValue, path: request.uri.description, headers: headers, body: Data(buffer.readableBytesView))
            holder.withLock { $0?.received.withLock { $0.append(seen) } }
            let reply = await handler(seen)
            if reply.delay > .zero { try? await Task.sleep(for: reply.delay) }
            var fields = HTTPFields()
            for (name, value) in reply.headers {
                if let name = HTTPField.Name(name) { fields[name] = value }
            }
            return Response(status: HTTPResponse.Status(code: reply.status), headers: fields, body: ResponseBody(byteBuffer: ByteBuffer(string: reply.body)))
        }
        for method in [HTTPRequest.Method.get, .post, .put, .patch, .delete, .head] {
            router.on("**", method: method, use: respond)
            router.on("/", method: method, use: respond)
        }
        let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
        var logger = Logger(label: "restartix.tests.stub-http")
        logger.logLevel = .critical  // stopping the server logs the cancellation
        let app = Application(
            router: router,
            configuration: ApplicationConfiguration(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { channel in continuation.yield(channel.localAddress?.port ?? 0) },
            logger: logger
        )
        let task = Task { try await app.run() }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next(), port > 0 else {
            task.cancel()
            throw MissingService(name: "the stub HTTP server (it did not start listening)")
        }
        let server = StubHTTPServer(task: task, port: port)
        holder.withLock { $0 = server }
        return server
    }

    /// Stops the server.
    public func stop() { task.cancel() }
}
