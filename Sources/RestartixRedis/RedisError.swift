/// An error from the Redis client or a Redis server.
///
/// Descriptions never contain a password, a key or a value: a server's error text can quote
/// the command's arguments (Redis 7's "unknown command" does), so it is kept apart in
/// ``serverMessage`` and only its first word (``serverCode``, e.g. `WRONGTYPE`) is described.
public import RestartixKit

public struct RedisError: RestartixError, Hashable {
    /// What went wrong, as an open set.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Base: String, Sendable, Hashable {
            case invalidURL, invalidConfiguration, invalidArgument, connectionFailed, authenticationFailed, timeout, unavailable
            case connectionClosed, protocolError, server, shutdown
        }
        private let base: Base

        /// The URL or configuration cannot be used.
        public static let invalidURL = Code(base: .invalidURL)
        /// A configuration value is out of range (pool size, timeouts, TLS settings).
        public static let invalidConfiguration = Code(base: .invalidConfiguration)
        /// A command's arguments are out of range (a TTL of zero, an empty key).
        public static let invalidArgument = Code(base: .invalidArgument)
        /// A TCP or TLS connection could not be made in time.
        public static let connectionFailed = Code(base: .connectionFailed)
        /// `AUTH` was refused (wrong username or password), or the server wants one.
        public static let authenticationFailed = Code(base: .authenticationFailed)
        /// No answer within the command timeout; the connection is dropped and made again.
        public static let timeout = Code(base: .timeout)
        /// Every connection is waiting out its reconnect backoff: failing fast, so callers can
        /// degrade (fail open or fall back) at once instead of waiting.
        public static let unavailable = Code(base: .unavailable)
        /// The connection closed before the answer came.
        public static let connectionClosed = Code(base: .connectionClosed)
        /// The server sent bytes that are not RESP.
        public static let protocolError = Code(base: .protocolError)
        /// The server answered with an error reply (``RedisError/serverCode``).
        public static let server = Code(base: .server)
        /// The client was shut down.
        public static let shutdown = Code(base: .shutdown)

        /// The code's name.
        public var description: String { base.rawValue }
    }

    /// What went wrong.
    public let code: Code
    /// A sentence about it, with nothing secret in it.
    public let detail: String
    /// For ``Code/server``: the first word of the server's error (`ERR`, `WRONGTYPE`, `NOSCRIPT`).
    public let serverCode: String?
    /// For ``Code/server``: the server's whole error text. It may quote the command's arguments,
    /// so it is not part of ``description``; log it only where arguments are not sensitive.
    public let serverMessage: String?

    /// An error of `code`.
    public init(_ code: Code, _ detail: String) {
        self.code = code
        self.detail = detail
        self.serverCode = nil
        self.serverMessage = nil
    }

    /// A server's error reply.
    public init(serverMessage message: String) {
        // Only an error code's shape (WRONGTYPE, NOSCRIPT) is taken as the code: a script's
        // error_reply can start with any text.
        let first = message.prefix { $0 != " " }
        let isCode = (1...32).contains(first.count) && first.allSatisfy { $0.isASCII && ($0.isUppercase || $0.isNumber || $0 == "_") }
        self.code = .server
        self.serverCode = isCode ? String(first) : "ERR"
        self.serverMessage = message
        self.detail = "the server answered \(self.serverCode!)"
    }

    public static let domain = "redis"
    public var codeName: String { code.description }
    public var safeDetail: String { detail }

    /// 503 when Redis cannot be asked (down, timing out, closed, shut down); 502 for bytes that
    /// are not RESP; 500 for a configuration, an argument or a server error reply.
    public var httpStatus: Int {
        switch code {
        case .connectionFailed, .timeout, .unavailable, .connectionClosed, .shutdown: 503
        case .protocolError: 502
        default: 500
        }
    }

    /// Redis could not be asked this time: a lost or refused connection, a timeout, every
    /// connection waiting out its backoff.
    public var isTransient: Bool {
        [.connectionFailed, .timeout, .unavailable, .connectionClosed].contains(code)
    }

    public var description: String { restartixDescription }
}
