import RestartixKit
public import NIOSSL

/// Where and how the Redis client connects.
///
/// From a URL (`REDIS_URL`): `redis://[[username]:password@]host[:port][/db]`, or `rediss://`
/// for TLS (ElastiCache with encryption in transit), verified against the system's trust roots
/// and the host name; set ``tls`` for another CA (a test certificate).
public struct RedisConfiguration: Sendable, CustomStringConvertible {
    /// The server's host name or address.
    public var host: String
    /// The server's port. Default 6379.
    public var port: Int
    /// The ACL user (Redis 6+); `nil` for the default user.
    public var username: String?
    /// The password; never printed.
    public var password: String?
    /// The logical database (`SELECT`). Default 0.
    public var database: Int
    /// TLS settings; `nil` for plain TCP.
    public var tls: TLSConfiguration?
    /// How long a connection (TCP, TLS, `AUTH`, `SELECT`) may take. Default 2 seconds.
    public var connectTimeout: Duration = .seconds(2)
    /// How long a command may wait for its reply; then the connection is dropped and made again.
    /// Default 1 second: the services degrade (fail open, fall back) rather than wait.
    public var commandTimeout: Duration = .seconds(1)
    /// Connections in the pool; commands from many tasks are pipelined over each. Default 2.
    public var connectionCount: Int = 2
    /// The first wait after a failed connect; doubled on each further failure. Default 50 ms.
    public var reconnectInitialBackoff: Duration = .milliseconds(50)
    /// The longest wait between connect attempts. Default 2 seconds.
    public var reconnectMaximumBackoff: Duration = .seconds(2)

    /// A configuration for `host:port`, no password, database 0, plain TCP.
    public init(host: String, port: Int = 6379) {
        self.host = host
        self.port = port
        self.database = 0
    }

    /// Parses a `redis://` or `rediss://` URL. Errors name what is wrong and never include the
    /// password.
    public init(url: String) throws(RedisError) {
        func invalid(_ why: String) -> RedisError { RedisError(.invalidURL, "the Redis URL \(Self.redacted(url)) \(why)") }
        let tls: Bool
        let rest: Substring
        if url.hasPrefix("redis://") {
            tls = false
            rest = url.dropFirst("redis://".count)
        } else if url.hasPrefix("rediss://") {
            tls = true
            rest = url.dropFirst("rediss://".count)
        } else {
            throw invalid("does not start with redis:// or rediss://")
        }
        guard !rest.contains("?"), !rest.contains("#") else { throw invalid("has a query or fragment; settings go in the configuration") }
        let authorityEnd = rest.firstIndex(of: "/") ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        let path = rest[authorityEnd...]
        var username: String?, password: String?
        var hostPort = authority
        if let at = authority.lastIndex(of: "@") {
            let userinfo = authority[..<at]
            hostPort = authority[authority.index(after: at)...]
            if let colon = userinfo.firstIndex(of: ":") {
                let user = userinfo[..<colon]
                guard let decodedUser = Self.percentDecoded(user), let decodedPassword = Self.percentDecoded(userinfo[userinfo.index(after: colon)...]) else {
                    throw invalid("has a badly percent-encoded username or password")
                }
                username = decodedUser.isEmpty ? nil : decodedUser
                password = decodedPassword.isEmpty ? nil : decodedPassword
            } else {
                // `redis://password@host` is how some tools spell a password alone.
                guard let decoded = Self.percentDecoded(userinfo) else { throw invalid("has a badly percent-encoded password") }
                password = decoded.isEmpty ? nil : decoded
            }
        }
        var host: Substring
        var portText: Substring?
        if hostPort.hasPrefix("[") {
            guard let close = hostPort.firstIndex(of: "]") else { throw invalid("has an unclosed [ in its IPv6 address") }
            host = hostPort[hostPort.index(after: hostPort.startIndex)..<close]
            let after = hostPort[hostPort.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw invalid("has text after its IPv6 address") }
                portText = after.dropFirst()
            }
        } else if let colon = hostPort.lastIndex(of: ":") {
            host = hostPort[..<colon]
            portText = hostPort[hostPort.index(after: colon)...]
        } else {
            host = hostPort
        }
        guard !host.isEmpty else { throw invalid("has no host") }
        guard host.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-._:".contains($0)) }) else {
            throw invalid("has a host name with characters a host name cannot have")
        }
        var port = 6379
        if let portText {
            guard let parsed = Int(portText), (1...65535).contains(parsed) else { throw invalid("has a port that is not 1-65535") }
            port = parsed
        }
        var database = 0
        let dbText = path.drop { $0 == "/" }
        if !dbText.isEmpty {
            guard let parsed = Int(dbText), parsed >= 0, parsed <= 1_000_000 else { throw invalid("has a database that is not a number (/0, /1, ...)") }
            database = parsed
        }
        self.init(host: String(host), port: port)
        self.username = username
        self.password = password
        self.database = database
        self.tls = tls ? .makeClientConfiguration() : nil
    }

    /// The wait after `failures` consecutive failures (at least 1): the initial backoff doubled
    /// for each failure after the first, at most the maximum, with ±20 % jitter so a fleet does
    /// not reconnect in step.
    func reconnectBackoff(afterFailures failures: Int) -> Duration {
        .backoff(initial: reconnectInitialBackoff, maximum: reconnectMaximumBackoff, afterFailures: failures)
    }

    /// `host:port/db`, with the scheme; no credentials.
    public var endpoint: String { "\(tls == nil ? "redis" : "rediss")://\(host.contains(":") ? "[\(host)]" : host):\(port)/\(database)" }

    /// The endpoint and whether a password is set; never the password.
    public var description: String {
        "RedisConfiguration(\(endpoint)\(username.map { ", user \($0)" } ?? "")\(password == nil ? "" : ", password: <redacted>"))"
    }

    /// Checks the values a caller may have set by hand.
    func validated() throws(RedisError) -> RedisConfiguration {
        guard (1...64).contains(connectionCount) else { throw RedisError(.invalidConfiguration, "connectionCount must be 1-64") }
        guard connectTimeout > .zero, commandTimeout > .zero else { throw RedisError(.invalidConfiguration, "timeouts must be positive") }
        guard reconnectInitialBackoff > .zero, reconnectMaximumBackoff >= reconnectInitialBackoff else {
            throw RedisError(.invalidConfiguration, "reconnect backoff must be positive, the maximum at least the initial")
        }
        return self
    }

    /// The URL with everything before its last `@` (the userinfo, whatever it contains)
    /// replaced by `***`; a URL without `@` has no credentials to hide.
    static func redacted(_ url: String) -> String {
        guard let at = url.lastIndex(of: "@") else { return url.count > 200 ? String(url.prefix(40)) + "…" : url }
        let scheme = url.hasPrefix("rediss://") ? "rediss://" : url.hasPrefix("redis://") ? "redis://" : ""
        return scheme + "***@" + String(url[url.index(after: at)...])
    }

    private static func percentDecoded(_ text: Substring) -> String? {
        var bytes: [UInt8] = []
        var iterator = text.utf8.makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                continue
            }
            guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue) else { return nil }
            bytes.append(high << 4 | low)
        }
        return String(validating: bytes, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}
