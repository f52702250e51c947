import RestartixKit
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization

/// Commands written to a ``RedisChannelHandler``: their encoded bytes, one promise per reply.
struct RedisRequest {
    let bytes: ByteBuffer
    let promises: [EventLoopPromise<RedisValue>]
}

/// RESP over a channel: outbound requests are written and their promises queued in order;
/// inbound bytes go through hiredis's reader, and each reply completes the oldest promise.
/// On a subscriber connection, replies go to `onPush` instead.
final class RedisChannelHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = RedisRequest
    typealias OutboundOut = ByteBuffer

    private let reader = RESPReader()
    private var waiting = CircularBuffer<EventLoopPromise<RedisValue>>(initialCapacity: 64)
    private let onPush: (@Sendable (RedisValue) -> Void)?

    init(onPush: (@Sendable (RedisValue) -> Void)? = nil) {
        self.onPush = onPush
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let request = unwrapOutboundIn(data)
        waiting.append(contentsOf: request.promises)
        context.write(wrapOutboundOut(request.bytes), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        do {
            try reader.feed(unwrapInboundIn(data))
            while let value = try reader.next() {
                if let onPush, Self.isPush(value) {
                    onPush(value)
                } else if let promise = waiting.popFirst() {
                    promise.succeed(value)
                } else if let onPush {
                    onPush(value)
                } else {
                    throw RedisError(.protocolError, "the server sent a reply nobody asked for")
                }
            }
        } catch {
            failAll(error, context: context)
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(RedisError(.connectionClosed, "the connection to Redis closed before the reply came"), context: context)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let failure = error as? RedisError ?? RedisError(.connectionClosed, "the connection to Redis failed (\(type(of: error)))")
        failAll(failure, context: context)
        context.close(promise: nil)
    }

    /// A published message on a subscriber connection (never a reply to a command).
    private static func isPush(_ value: RedisValue) -> Bool {
        guard case .array(let parts) = value, let kind = parts.first?.string else { return false }
        return (kind == "message" && parts.count == 3) || (kind == "pmessage" && parts.count == 4)
    }

    private func failAll(_ error: any Error, context: ChannelHandlerContext) {
        while let promise = waiting.popFirst() { promise.fail(error) }
    }
}

/// One connection to Redis: TCP (or TLS), `AUTH` and `SELECT` done, commands pipelined.
final class RedisConnection: Sendable {
    let channel: any Channel
    /// Set when a command timed out and closed the connection: the server may be frozen or
    /// unreachable, so the pool backs off instead of reconnecting at once.
    let timedOut = Atomic<Bool>(false)
    /// A flush is queued on the event loop for writes made on it (see ``send(_:timeout:)``).
    private let flushQueued = Atomic<Bool>(false)

    private init(channel: any Channel) {
        self.channel = channel
    }

    /// The TLS context for `configuration`, made once per client (it loads the trust roots).
    static func tlsContext(_ configuration: RedisConfiguration) throws(RedisError) -> NIOSSLContext? {
        guard let tls = configuration.tls else { return nil }
        do { return try NIOSSLContext(configuration: tls) } catch {
            throw RedisError(.invalidConfiguration, "the TLS configuration cannot be used (\(type(of: error)))")
        }
    }

    /// Connects, does the TLS handshake when configured, authenticates and selects the
    /// database, all within the connect timeout.
    static func connect(
        _ configuration: RedisConfiguration, tls sslContext: NIOSSLContext?, on eventLoop: any EventLoop,
        onPush: (@Sendable (RedisValue) -> Void)? = nil
    ) async throws(RedisError) -> RedisConnection {
        let host = configuration.host
        // SNI names a host, never an address.
        let serverName = (try? SocketAddress(ipAddress: host, port: 0)) == nil ? host : nil
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(TimeAmount(configuration.connectTimeout))
            .channelOption(.socketOption(.so_keepalive), value: 1)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let sslContext {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: sslContext, serverHostname: serverName))
                    }
                    try channel.pipeline.syncOperations.addHandler(RedisChannelHandler(onPush: onPush))
                }
            }
        let channel: any Channel
        do {
            channel = try await bootstrap.connect(host: host, port: configuration.port).get()
        } catch {
            throw RedisError(.connectionFailed, "could not connect to Redis at \(configuration.endpoint) (\(Self.reason(error)))")
        }
        let connection = RedisConnection(channel: channel)
        var handshake: [RedisCommand] = []
        if let password = configuration.password {
            handshake.append(configuration.username.map { RedisCommand("AUTH", $0, password) } ?? RedisCommand("AUTH", password))
        }
        if configuration.database != 0 { handshake.append(RedisCommand("SELECT", configuration.database)) }
        guard !handshake.isEmpty else { return connection }
        do throws(RedisError) {
            let replies = try await connection.send(handshake, timeout: configuration.connectTimeout)
            for reply in replies {
                if case .error(let error) = reply {
                    if ["WRONGPASS", "NOAUTH", "NOPERM"].contains(error.serverCode) || error.serverMessage?.contains("AUTH") == true {
                        throw RedisError(.authenticationFailed, "Redis refused the credentials (\(error.serverCode ?? "ERR"))")
                    }
                    throw RedisError(.connectionFailed, "Redis refused the connection setup (\(error.serverCode ?? "ERR"))")
                }
            }
        } catch {
            connection.close()
            throw error
        }
        return connection
    }

    /// Sends `commands` in one write and waits for their replies, in order. An error reply is a
    /// value here. No answer within `timeout`: every waiting command fails with ``RedisError/Code/timeout``
    /// and the connection is closed (its replies can no longer be matched with certainty).
    func send(_ commands: [RedisCommand], timeout: Duration) async throws(RedisError) -> [RedisValue] {
        let eventLoop = channel.eventLoop
        let promises = commands.map { _ in eventLoop.makePromise(of: RedisValue.self) }
        var bytes: ByteBuffer
        if commands.count == 1 {
            bytes = commands[0].encoded
        } else {
            bytes = channel.allocator.buffer(capacity: commands.reduce(0) { $0 + $1.encoded.readableBytes })
            for command in commands { bytes.writeImmutableBuffer(command.encoded) }
        }
        let channel = self.channel
        let timer = eventLoop.scheduleTask(in: TimeAmount(timeout)) { [self] in
            timedOut.store(true, ordering: .relaxed)
            let error = RedisError(.timeout, "Redis did not answer within \(timeout)")
            for promise in promises { promise.fail(error) }
            channel.close(promise: nil)
        }
        // The last reply cancels the timer on the event loop, where the timer runs too: a reply
        // that arrived before the deadline can never be taken for a timeout (which would close a
        // healthy connection and back off from a server that answered).
        promises.last?.futureResult.whenComplete { _ in timer.cancel() }
        let written = eventLoop.makePromise(of: Void.self)
        if eventLoop.inEventLoop {
            // Sent from the loop's own thread (a request task that prefers it): written now,
            // flushed by a task queued behind the jobs already waiting on the loop, so the
            // commands of the requests the loop is serving in this pass go out in one write
            // and their replies come back in one read (fewer system calls here and in Redis).
            channel.write(RedisRequest(bytes: bytes, promises: promises), promise: written)
            if !flushQueued.exchange(true, ordering: .relaxed) {
                eventLoop.execute { [self] in
                    flushQueued.store(false, ordering: .relaxed)
                    channel.flush()
                }
            }
        } else {
            channel.writeAndFlush(RedisRequest(bytes: bytes, promises: promises), promise: written)
        }
        written.futureResult.whenFailure { error in
            let failure = error as? RedisError ?? RedisError(.connectionClosed, "the command could not be written (\(Self.reason(error)))")
            for promise in promises { promise.fail(failure) }
        }
        var replies: [RedisValue] = []
        replies.reserveCapacity(commands.count)
        do {
            for promise in promises { replies.append(try await promise.futureResult.get()) }
        } catch {
            timer.cancel()
            throw error as? RedisError ?? RedisError(.connectionClosed, "the connection failed (\(Self.reason(error)))")
        }
        timer.cancel()
        return replies
    }

    /// Whether the channel is still open.
    var isActive: Bool { channel.isActive }

    /// Closes the connection; waiting commands fail with ``RedisError/Code/connectionClosed``.
    func close() {
        channel.close(promise: nil)
    }

    /// A short, secret-free reason for a NIO or TLS error.
    static func reason(_ error: any Error) -> String {
        switch error {
        case let error as ChannelError: return "\(error)"
        case let error as IOError: return "\(error.description)"
        case let error as NIOSSLError: return "TLS: \(error)"
        case let error as BoringSSLError: return "TLS: \(error)"
        case let error as NIOConnectionError: return "\(error.dnsAAAAError == nil && error.dnsAError == nil ? "connection refused or unreachable" : "host not found")"
        default: return "\(type(of: error))"
        }
    }
}
