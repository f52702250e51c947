import Logging
import NIOCore

/// Messages on subscribed channels, from a connection of the subscription's own that
/// reconnects (and subscribes again) by itself. Made by ``RedisClient/subscribe(to:)``.
///
/// Pub/sub is at most once: what is published while the connection is down is lost, and the
/// sequence says so with ``Event/resubscribed`` after each reconnect. The subscription ends
/// when the iterating task is cancelled, the sequence is dropped, or the client shuts down.
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

    init(configuration: RedisConfiguration, channels: [String], eventLoop: any EventLoop, logger: Logger, onEnd: @escaping @Sendable () -> Void) {
        let (stream, continuation) = AsyncStream.makeStream(of: Event.self, bufferingPolicy: .bufferingNewest(10_000))
        self.stream = stream
        let task = Task {
            await Self.maintain(configuration: configuration, channels: channels, eventLoop: eventLoop, logger: logger, continuation: continuation)
            continuation.finish()
            onEnd()
        }
        self.task = task
        continuation.onTermination = { _ in task.cancel() }
    }

    public func makeAsyncIterator() -> AsyncStream<Event>.Iterator { stream.makeAsyncIterator() }

    /// Connects, subscribes, delivers, and on a lost connection waits out a backoff and does it
    /// again, until cancelled.
    private static func maintain(
        configuration: RedisConfiguration, channels: [String], eventLoop: any EventLoop, logger: Logger,
        continuation: AsyncStream<Event>.Continuation
    ) async {
        var subscribedBefore = false
        var failures = 0
        while !Task.isCancelled {
            do {
                let connection = try await RedisConnection.connect(configuration, on: eventLoop) { value in
                    // ["message", channel, payload]; subscribe confirmations are answered in order.
                    guard let parts = value.array, parts.count == 3, parts[0].string == "message",
                        let channel = parts[1].string, let payload = parts[2].bytes
                    else { return }
                    continuation.yield(.message(channel: channel, payload: payload))
                }
                let replies = try await connection.send(channels.map { RedisCommand("SUBSCRIBE", $0) }, timeout: configuration.commandTimeout)
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
            let base = Swift.min(configuration.reconnectInitialBackoff * (1 << Swift.min(Swift.max(failures, 1) - 1, 20)), configuration.reconnectMaximumBackoff)
            try? await Task.sleep(for: base * Double.random(in: 0.8...1.2))
        }
    }
}
