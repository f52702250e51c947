import RestartixKit
import Crypto
public import Logging
public import NIOCore
import NIOPosix
import NIOSSL
public import ServiceLifecycle
import Synchronization

/// An async Redis client: a small pool of connections, each carrying the commands of many tasks
/// pipelined; connect and command timeouts; `AUTH` and `SELECT`; TLS for `rediss://`;
/// reconnects by itself with exponential backoff; Lua scripts by `EVALSHA` with a fallback to
/// `EVAL` on `NOSCRIPT`; pub/sub on dedicated connections (``subscribe(to:)``).
///
/// RESP is parsed by hiredis's reader (a C state machine, no I/O) inside a SwiftNIO channel,
/// with NIOSSL for TLS: Debian's hiredis 0.14 has no TLS of its own.
///
/// While Redis cannot be reached, commands fail fast with ``RedisError/Code/unavailable`` (every
/// connection is waiting out its backoff) instead of queueing, so the services built on it
/// degrade at once: rate limits fail open, holds fall back to the database.
///
/// A `Service`: ``run()`` waits for graceful shutdown, then closes the connections. Commands work
/// without `run()`; connections are made on first use.
///
/// Blocking commands (`BLPOP`, `WAIT`) hold up every command pipelined behind them on the same
/// connection: do not send them through this client.
public final class RedisClient: Sendable, Service {
    /// The configuration in use.
    public let configuration: RedisConfiguration
    private let logger: Logger
    private let slots: [Slot]
    private let next = Atomic<Int>(0)
    private let closed = Atomic<Bool>(false)
    private let group: any EventLoopGroup
    private let tls: NIOSSLContext?
    private let subscriptions = Mutex<[Int: Task<Void, Never>]>([:])
    private let subscriptionIDs = Atomic<Int>(0)

    /// A client for `configuration`; nothing connects until the first command. Connections run
    /// on `eventLoopGroup`, by default NIO's shared singleton group.
    public init(configuration: RedisConfiguration, logger: Logger, eventLoopGroup: (any EventLoopGroup)? = nil) throws(RedisError) {
        self.configuration = try configuration.validated()
        self.logger = logger
        let eventLoopGroup = eventLoopGroup ?? MultiThreadedEventLoopGroup.singleton
        self.group = eventLoopGroup
        let configuration = self.configuration
        let tls = try RedisConnection.tlsContext(configuration)
        self.tls = tls
        // One connection per event loop in turn (not `next()`, which other users of a shared
        // group advance too): a command sent from a loop goes out on that loop's connection
        // when there is one (see `connection()`).
        let loops = Array(eventLoopGroup.makeIterator())
        self.slots = (0..<configuration.connectionCount).map { index in
            Slot(configuration: configuration, tls: tls, eventLoop: loops.isEmpty ? eventLoopGroup.next() : loops[index % loops.count], logger: logger)
        }
    }

    /// A client for a `redis://` or `rediss://` URL.
    public convenience init(url: String, logger: Logger) throws(RedisError) {
        try self.init(configuration: RedisConfiguration(url: url), logger: logger)
    }

    // MARK: Commands

    /// Sends one command and returns its reply; an error reply is thrown as ``RedisError``
    /// (``RedisError/Code/server``).
    @discardableResult
    public func send(_ command: RedisCommand) async throws(RedisError) -> RedisValue {
        let reply = try await pipeline([command])[0]
        if case .error(let error) = reply { throw error }
        return reply
    }

    /// Sends `name` with `arguments`: `try await redis.send("SET", key, value, "PX", 5000)`.
    @discardableResult
    public func send(_ name: String, _ arguments: any RedisArgument...) async throws(RedisError) -> RedisValue {
        try await send(RedisCommand(name, arguments))
    }

    /// Sends `commands` in one write on one connection and returns their replies in order;
    /// error replies are returned in place, so one failed command does not hide the others.
    public func pipeline(_ commands: [RedisCommand]) async throws(RedisError) -> [RedisValue] {
        guard !commands.isEmpty else { return [] }
        let connection = try await connection()
        return try await connection.send(commands, timeout: configuration.commandTimeout)
    }

    /// Runs `script` with `keys` and `arguments`: `EVALSHA` by its SHA-1, and `EVAL` with the
    /// source when the server does not have it cached (`NOSCRIPT`: a restarted or flushed
    /// Redis), which caches it again.
    @discardableResult
    public func evaluate(_ script: RedisScript, keys: [any RedisArgument] = [], arguments: [any RedisArgument] = []) async throws(RedisError) -> RedisValue {
        let tail: [any RedisArgument] = [keys.count as any RedisArgument] + keys + arguments
        do {
            return try await send(RedisCommand("EVALSHA", [script.sha1 as any RedisArgument] + tail))
        } catch where error.serverCode == "NOSCRIPT" {
            return try await send(RedisCommand("EVAL", [script.source as any RedisArgument] + tail))
        }
    }

    // MARK: Pub/sub

    /// Subscribes to `channels` on a connection of its own. The sequence yields each message,
    /// and ``RedisSubscription/Event/resubscribed`` after a reconnect: messages published
    /// while the connection was down are lost (pub/sub is at most once), so a cache listening
    /// for invalidations should drop everything it holds then. Iteration ends when the task
    /// iterating is cancelled or the client shuts down.
    public func subscribe(to channels: [String]) throws(RedisError) -> RedisSubscription {
        guard !channels.isEmpty else { throw RedisError(.invalidArgument, "subscribe needs at least one channel") }
        guard !closed.load(ordering: .acquiring) else { throw RedisError(.shutdown, "the Redis client is shut down") }
        let id = subscriptionIDs.wrappingAdd(1, ordering: .relaxed).newValue
        let subscription = RedisSubscription(configuration: configuration, tls: tls, channels: channels, eventLoop: group.next(), logger: logger) { [weak self] in
            self?.subscriptions.withLock { _ = $0.removeValue(forKey: id) }
        }
        subscriptions.withLock { $0[id] = subscription.task }
        if closed.load(ordering: .acquiring) { subscription.task.cancel() }
        return subscription
    }

    // MARK: Lifecycle

    /// Waits for graceful shutdown, then closes every connection.
    public func run() async throws {
        try? await gracefulShutdown()
        shutdown()
    }

    /// Closes every connection; later commands fail with ``RedisError/Code/shutdown``.
    public func shutdown() {
        closed.store(true, ordering: .releasing)
        for slot in slots { slot.close() }
        for task in subscriptions.withLock({ Array($0.values) }) { task.cancel() }
    }

    // MARK: Pool

    /// A ready connection: the next slot's, connecting it (once, however many tasks wait) when
    /// it has none. Slots waiting out a backoff are skipped; when every slot is, the command
    /// fails at once with ``RedisError/Code/unavailable``.
    private func connection() async throws(RedisError) -> RedisConnection {
        guard !closed.load(ordering: .acquiring) else { throw RedisError(.shutdown, "the Redis client is shut down") }
        // A caller running on the event loop of a connection (a server's request task that
        // prefers its channel's loop) uses that connection first: the write goes out and the
        // reply resumes the caller on the same thread, with no wake-up of another one.
        // Otherwise the slots take turns.
        let start = slots.firstIndex { $0.eventLoop.inEventLoop } ?? next.wrappingAdd(1, ordering: .relaxed).oldValue
        var lastError: RedisError?
        var waited = false
        for offset in 0..<slots.count {
            // At most one connect attempt is waited for: when Redis is unreachable a command
            // fails after one connect timeout, not one per slot.
            switch slots[((start &+ offset) & Int.max) % slots.count].decide(now: .now, mayConnect: !waited) {
            case .ready(let connection):
                return connection
            case .unavailable(let error):
                lastError = error
            case .skipped:
                continue
            case .wait(let attempt):
                waited = true
                do { return try await attempt.value } catch { lastError = error as? RedisError }
            }
        }
        if let lastError, lastError.code == .shutdown || lastError.code == .authenticationFailed { throw lastError }
        throw RedisError(.unavailable, "Redis at \(configuration.endpoint) cannot be reached; reconnecting in the background (\(lastError?.detail ?? "no connection"))")
    }

    /// One pooled connection and its reconnect state machine:
    /// idle -> connecting -> ready -> (connection lost) idle -> connecting ..., and
    /// connecting -> (failure n) backing off for min(initial * 2^(n-1), maximum) +/- 20 %
    /// -> connecting on the first use after that.
    private final class Slot: Sendable {
        enum Decision {
            case ready(RedisConnection)
            case unavailable(RedisError)
            /// Not connected, and this caller already waited for another slot's connect.
            case skipped
            case wait(Task<RedisConnection, any Error>)
        }

        private enum State {
            case idle(failures: Int)
            case connecting(Task<RedisConnection, any Error>)
            case ready(RedisConnection)
            case backingOff(until: ContinuousClock.Instant, failures: Int, lastError: RedisError)
            case closed
        }

        private let state = Mutex<State>(.idle(failures: 0))
        private let configuration: RedisConfiguration
        private let tls: NIOSSLContext?
        /// The loop its connections run on.
        let eventLoop: any EventLoop
        private let logger: Logger

        init(configuration: RedisConfiguration, tls: NIOSSLContext?, eventLoop: any EventLoop, logger: Logger) {
            self.configuration = configuration
            self.tls = tls
            self.eventLoop = eventLoop
            self.logger = logger
        }

        /// What a caller should do now; starts a connect when one is due and `mayConnect`.
        func decide(now: ContinuousClock.Instant, mayConnect: Bool) -> Decision {
            var stoppedAnswering = false
            defer {
                if stoppedAnswering { warnStoppedAnswering() }
            }
            return state.withLock { state -> Decision in
                var failures = 0
                switch state {
                case .ready(let connection):
                    // A timed-out connection is closing on its event loop; the caller that saw
                    // the timeout may already be back. Back off now rather than queue a command
                    // on it (it would wait out another timeout).
                    if connection.timedOut.load(ordering: .relaxed) {
                        stoppedAnswering = true
                        state = timedOutState()
                        if case .backingOff(_, _, let error) = state { return .unavailable(error) }
                    }
                    if connection.isActive { return .ready(connection) }
                case .connecting(let attempt):
                    if !mayConnect { return .skipped }
                    return .wait(attempt)
                case .backingOff(let until, let count, let error):
                    if now < until { return .unavailable(error) }
                    failures = count
                case .idle(let count):
                    failures = count
                case .closed:
                    return .unavailable(RedisError(.shutdown, "the Redis client is shut down"))
                }
                guard mayConnect else { return .skipped }
                let attempt = Task<RedisConnection, any Error> { try await self.connect(failures: failures) }
                state = .connecting(attempt)
                return .wait(attempt)
            }
        }

        private func connect(failures: Int) async throws(RedisError) -> RedisConnection {
            let connection: RedisConnection
            do {
                connection = try await RedisConnection.connect(configuration, tls: tls, on: eventLoop)
            } catch {
                let failures = failures + 1
                let backoff = configuration.reconnectBackoff(afterFailures: failures)
                let closed = state.withLock { state -> Bool in
                    if case .closed = state { return true }
                    state = .backingOff(until: .now + backoff, failures: failures, lastError: error)
                    return false
                }
                if !closed && failures == 1 {
                    logger.warning("Redis unreachable; commands fail fast while it reconnects with backoff", metadata: [
                        "redis.endpoint": "\(configuration.endpoint)", "error": "\(error)",
                    ])
                }
                throw error
            }
            let kept = state.withLock { state -> Bool in
                if case .closed = state { return false }
                state = .ready(connection)
                return true
            }
            guard kept else {
                connection.close()
                throw RedisError(.shutdown, "the Redis client is shut down")
            }
            if failures > 0 { logger.notice("Redis reachable again", metadata: ["redis.endpoint": "\(configuration.endpoint)"]) }
            connection.channel.closeFuture.whenComplete { [self] _ in
                let backedOff = state.withLock { state -> Bool in
                    guard case .ready(let current) = state, current === connection else { return false }
                    // A connection dropped after a timeout means a server that does not answer
                    // (frozen, or a black hole that still accepts TCP): back off as after a
                    // failed connect, so commands fail fast instead of each waiting a timeout.
                    if connection.timedOut.load(ordering: .relaxed) {
                        state = timedOutState()
                        return true
                    } else {
                        state = .idle(failures: 0)
                        return false
                    }
                }
                if backedOff { warnStoppedAnswering() }
            }
            return connection
        }

        /// Backing off after a connection that stopped answering.
        private func timedOutState() -> State {
            .backingOff(
                until: .now + configuration.reconnectInitialBackoff, failures: 1,
                lastError: RedisError(.timeout, "Redis did not answer within \(configuration.commandTimeout)")
            )
        }

        private func warnStoppedAnswering() {
            logger.warning("Redis stopped answering; commands fail fast while it reconnects with backoff", metadata: [
                "redis.endpoint": "\(configuration.endpoint)",
            ])
        }

        func close() {
            let previous = state.withLock { state -> State in
                defer { state = .closed }
                return state
            }
            switch previous {
            case .ready(let connection): connection.close()
            case .connecting(let attempt): Task { try? await attempt.value.close() }
            default: break
            }
        }
    }
}

/// A Lua script with its SHA-1, for ``RedisClient/evaluate(_:keys:arguments:)``.
public struct RedisScript: Sendable, Hashable {
    /// The Lua source.
    public let source: String
    /// The SHA-1 of the source, lower-case hex, as `SCRIPT LOAD` returns it.
    public let sha1: String

    /// A script from its source.
    public init(_ source: String) {
        self.source = source
        self.sha1 = Insecure.SHA1.hash(data: Array(source.utf8)).map { byte in
            let digits = Array("0123456789abcdef".utf8)
            return String(decoding: [digits[Int(byte >> 4)], digits[Int(byte & 0x0F)]], as: UTF8.self)
        }.joined()
    }
}
