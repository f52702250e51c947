public import HummingbirdCore
public import Logging
public import NIOCore

extension HTTP1Channel.Configuration {
    /// The services' HTTP/1.1 settings: a connection idle for 75 s is closed (Hummingbird's
    /// default keeps it for ever, so idle or abandoned connections pile up). Longer than a load
    /// balancer's usual idle timeout (60 s on AWS), so the balancer, not the service, closes a
    /// kept-alive connection it might still reuse.
    public static var services: Self { .init(idleTimeout: .seconds(75)) }
}

extension HTTPServerBuilder {
    /// HTTP/1.1, as `.http1(configuration:)`, with each connection's task preferring its
    /// channel's event loop as its executor (``EventLoopBoundChannel``).
    public static func http1OnEventLoop(configuration: HTTP1Channel.Configuration = .services) -> HTTPServerBuilder {
        .init { responder in
            EventLoopBoundChannel(HTTP1Channel(responder: responder, configuration: configuration))
        }
    }
}

/// A server child channel whose connection task runs on the connection's own event loop.
///
/// Hummingbird reads a connection's requests and writes its responses from a task on Swift's
/// global executor: every request part read and every response part written is a hand-off
/// between that task's thread and the channel's event loop, and each hand-off is a thread
/// wake-up (the patient-read benchmark measured them as the largest share of a request's
/// cost). Here the connection's task prefers the event loop (`withTaskExecutorPreference`),
/// so reading the request, the handler and writing the response run where the channel's I/O
/// already is; only waits on other components (a database or Redis reply) come back to it.
///
/// Nothing in a handler may block the thread: every blocking call in the kit (SQLite,
/// libpq's connect, the JSON log's writes: ``LogWriter``) runs on a thread of its own. Tasks
/// a handler starts with `Task {}` run on the global executor as before, unless they ask for
/// ``EventLoopTaskExecutor/connection``.
public struct EventLoopBoundChannel<Base: ServerChildChannel>: ServerChildChannel {
    public typealias Value = Base.Value

    let base: Base

    public init(_ base: Base) { self.base = base }

    public func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        base.setup(channel: channel, logger: logger)
    }

    public func handle(value: Value, logger: Logger) async {
        let executor = EventLoopTaskExecutor(value.channel.eventLoop)
        await EventLoopTaskExecutor.$connection.withValue(executor) {
            await withTaskExecutorPreference(executor) {
                await base.handle(value: value, logger: logger)
            }
        }
    }
}

/// A NIO event loop as a `TaskExecutor` (swift-nio 2.101 makes an event loop a
/// `SerialExecutor`, for actors, but not a `TaskExecutor`, for a task's preference).
///
/// Like NIO's own executor, it hands each job to `EventLoop.execute`: the loop must outlive
/// every task that prefers it (a job enqueued on a loop that has shut down is dropped, and its
/// task never resumes). NIO's shared singleton group, Hummingbird's default, never shuts down.
public final class EventLoopTaskExecutor: TaskExecutor, Sendable {
    /// The loop jobs run on.
    public let eventLoop: any EventLoop

    public init(_ eventLoop: any EventLoop) { self.eventLoop = eventLoop }

    /// The executor of the connection whose request the current task serves, under
    /// ``EventLoopBoundChannel``: set for the connection's task, and (as every task-local) seen
    /// by the tasks it starts; `nil` outside a connection's work. A task a request starts
    /// unstructured (which inherits no executor preference) passes it to
    /// `Task(executorPreference:)` to stay on the connection's loop, as
    /// ``RequestTimeoutMiddleware`` does.
    @TaskLocal public static var connection: EventLoopTaskExecutor?

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        eventLoop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}
