import RestartixKit
import Logging
import NIOCore
import NIOSSL

/// Messages on subscribed channels, from a connection of the subscription's own that
/// reconnects (and subscribes again) by itself. Made by ``RedisClient/subscribe(to:)``.
///
/// Pub/sub is at most once: what is published while the connection is down is lost, and the
/// sequence says so with ``Event/resubscribed`` after each reconnect. Messages wait in a buffer
/// of 10,000; past that the oldest are dropped, so a consumer must keep up. One consumer
/// only: iterate it from one task. The subscription ends when that task stops iterating (or
/// is cancelled), when ``cancel()`` is called, or when the client shuts down.
public struct RedisSubscription: AsyncSequence, Sendable {
    /// What the subscription delivers.
    public enum Event: Sendable, Hashable {
        /// A message published on `channel`.
        case message(channel: String, payload: [UInt8])
        /// The connection was lost and is back, subscribed again; messages in between are lost.
        case resubscribed
    }

    public typealias Element = Event

    private let stream: AsyncStream<Event>
    let task: Task<Void, Never>

    init(
        configuration: RedisConfiguration, tls: NIOSSLContext?, channels: [String], eventLoop: any EventLoop, logger: Logger,
        onEnd: @escaping @Sendable () -> Void
    ) {
        let (stream, continuation) = AsyncStream.makeStream(of: Event.self, bufferingPolicy: .bufferingNewest(10_000))
        self.stream = stream
        let task = Task {
            await Self.maintain(configuration: configuration, tls: tls, channels: channels, eventLoop: eventLoop, logger: logger, continuation: continuation)
            continuation.finish()
            onEnd()
        }
        self.task = task
        continuation.onTermination = { _ in task.cancel() }
    }

    /// The iterator of the one consumer.
    public func makeAsyncIterator() -> AsyncStream<Event>.Iterator { stream.makeAsyncIterator() }

    /// Ends the subscription and closes its connection.
    public func cancel() { task.cancel() }

    /// Connects, subscribes, delivers, and on a lost connection waits out a backoff and does it
    /// again, until cancelled.
    private static func maintain(
        configuration: RedisConfiguration, tls: NIOSSLContext?, channels: [String], eventLoop: any EventLoop, logger: Logger,
        continuation: AsyncStream<Event>.Continuation
    ) async {
        var subscribedBefore = false
        var failures = 0
        while !Task.isCancelled {
            do {
                let connection = try await RedisConnection.connect(configuration, tls: tls, on: eventLoop) { value in
                    // ["message", channel, payload]; the subscribe confirmation answers the command.
                    guard let parts = value.array, parts.count == 3, parts[0].string == "message",
                        let channel = parts[1].string, let payload = parts[2].bytes
                    else { return }
                    continuation.yield(.message(channel: channel, payload: payload))
                }
                // One SUBSCRIBE for every channel: its first confirmation answers the command, the
                // others (and every message) arrive as pushes.
                let replies = try await connection.send([RedisCommand("SUBSCRIBE", channels)], timeout: configuration.commandTimeout)
                if let error = replies.lazy.compactMap({ reply -> RedisError? in if case .error(let error) = reply { return error } else { return nil } }).first {
                    connection.close()
                    throw error
                }
                if subscribedBefore {
                    continuation.yield(.resubscribed)
                    logger.notice("Redis subscription restored; messages published meanwhile were lost", metadata: ["redis.endpoint": "\(configuration.endpoint)"])
                }
                subscribedBefore = true
                failures = 0
                await withTaskCancellationHandler {
                    try? await connection.channel.closeFuture.get()
                } onCancel: {
                    connection.close()
                }
            } catch {
                failures += 1
                if failures == 1 {
                    logger.warning("Redis subscription lost; reconnecting with backoff", metadata: ["redis.endpoint": "\(configuration.endpoint)", "error": "\(error)"])
                }
            }
            guard !Task.isCancelled else { return }
            try? await Task.sleep(for: configuration.reconnectBackoff(afterFailures: failures))
        }
    }
}
