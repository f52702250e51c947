import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTesting
import Logging
import NIOCore
import NIOPosix
import RestartixRedis
import RestartixTestSupport
import ServiceSupport
import Testing

/// Where a request's work runs: on its connection's event loop under `http1OnEventLoop()`,
/// the request timeout's handler task included, and Redis commands sent from a loop on that
/// loop's connection. Each test has its control (Hummingbird's default server, a caller on no
/// loop), so a test that cannot tell the two apart fails.
@Suite("Event-loop-bound requests", .timeLimit(.minutes(2)))
struct EventLoopServerTests {
    /// A server whose one route says whether the handler ran on an event loop before and after
    /// an `await` resumed from another thread, behind the request timeout middleware (whose
    /// handler task is unstructured).
    func placement(server: HTTPServerBuilder) async throws -> String {
        let router = Router()
        router.add(middleware: RequestTimeoutMiddleware(.seconds(30)))
        router.get("where") { _, _ -> String in
            let before = MultiThreadedEventLoopGroup.currentEventLoop != nil
            await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
                DispatchQueue.global().async { continuation.resume() }
            }
            let after = MultiThreadedEventLoopGroup.currentEventLoop != nil
            return "\(before) \(after)"
        }
        let app = Application(router: router, server: server, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        return try await app.test(.live) { client in
            try await client.execute(uri: "/where", method: .get) { String(buffer: $0.body) }
        }
    }

    @Test("under http1OnEventLoop() the handler runs on its connection's loop, also after a resume from another thread")
    func handlerOnLoop() async throws {
        #expect(try await placement(server: .http1OnEventLoop()) == "true true")
        // The control: Hummingbird's default server runs the handler on the global executor.
        #expect(try await placement(server: .http1()) == "false false")
    }

    @Test("a request's task sees its connection's executor, on the connection's own loop")
    func connectionExecutorIsScoped() async throws {
        let router = Router()
        router.get("executor") { _, _ -> String in
            guard let executor = EventLoopTaskExecutor.connection else { return "none" }
            return executor.eventLoop.inEventLoop ? "own loop" : "another loop"
        }
        let app = Application(router: router, server: .http1OnEventLoop(), configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        let answer = try await app.test(.live) { client in
            try await client.execute(uri: "/executor", method: .get) { String(buffer: $0.body) }
        }
        #expect(answer == "own loop")
    }

    @Test("a Redis command sent from an event loop goes out on that loop's connection; other callers take turns")
    func redisConnectionOfTheLoop() async throws {
        try await withPrivateRedis(loops: 2) { redis, group in
            try await connectionsOfTheLoops(redis, group)
        }
    }

    func connectionsOfTheLoops(_ redis: RedisClient, _ group: MultiThreadedEventLoopGroup) async throws {
        func clientIDs(on loop: (any EventLoop)?, count: Int) async throws -> [Int] {
            try await withTaskExecutorPreference(loop.map(EventLoopTaskExecutor.init)) {
                var ids: [Int] = []
                for _ in 0..<count {
                    guard case .integer(let id) = try await redis.send("CLIENT", "ID") else { throw RedisError(.protocolError, "CLIENT ID") }
                    ids.append(id)
                }
                return ids
            }
        }
        let loops = Array(group.makeIterator())
        let first = try await clientIDs(on: loops[0], count: 6)
        let second = try await clientIDs(on: loops[1], count: 6)
        #expect(Set(first).count == 1, "every command from the first loop on one connection")
        #expect(Set(second).count == 1, "every command from the second loop on one connection")
        #expect(Set(first) != Set(second), "each loop its own connection")
        // The control: a caller on no loop takes the connections in turn.
        let elsewhere = try await clientIDs(on: nil, count: 6)
        #expect(Set(elsewhere) == Set(first).union(second))
    }

    @Test("commands sent from a loop in one pass go out in one write: a server of its own reads them at once, with every reply in its place")
    func redisWritesCoalesce() async throws {
        try await withPrivateRedis(loops: 1) { redis, group in
            try await coalescedWrites(redis, group)
        }
    }

    func coalescedWrites(_ redis: RedisClient, _ group: MultiThreadedEventLoopGroup) async throws {
        func readsProcessed() async throws -> Int {
            guard let text = try await redis.send("INFO", "stats").string,
                  let line = text.split(whereSeparator: \.isNewline).first(where: { $0.hasPrefix("total_reads_processed:") }),
                  let count = Int(line.dropFirst("total_reads_processed:".count))
            else { throw RedisError(.protocolError, "INFO stats without total_reads_processed") }
            return count
        }
        _ = try await redis.send("PING")  // connected
        let before = try await readsProcessed()
        let replies = try await withTaskExecutorPreference(EventLoopTaskExecutor(group.next())) {
            try await withThrowingTaskGroup(of: (Int, RedisValue).self) { tasks in
                for index in 0..<16 { tasks.addTask { (index, try await redis.send("ECHO", "reply \(index)")) } }
                var replies: [Int: RedisValue] = [:]
                for try await (index, reply) in tasks { replies[index] = reply }
                return replies
            }
        }
        let reads = try await readsProcessed() - before
        for index in 0..<16 {
            #expect(replies[index]?.string == "reply \(index)", "reply \(index) in its place")
        }
        // The sixteen ECHOs and the second INFO: a read or two, not seventeen.
        #expect(reads <= 3, "Redis read the commands \(reads) times")
    }

    /// Runs `body` with a client of a Redis server of its own, one connection on each of
    /// `loops` event loops of a group of its own; an error is recorded; everything is shut
    /// down after.
    func withPrivateRedis(loops: Int, _ body: (RedisClient, MultiThreadedEventLoopGroup) async throws -> Void) async throws {
        guard RedisServer.available else { return }
        let server = try await RedisServer()
        defer { server.stop() }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: loops)
        var configuration = try RedisConfiguration(url: "redis://127.0.0.1:\(server.port)/0")
        configuration.connectionCount = loops
        let redis = try RedisClient(configuration: configuration, logger: Logger(label: "restartix.tests.redis"), eventLoopGroup: group)
        do {
            try await body(redis, group)
        } catch {
            Issue.record(error)
        }
        redis.shutdown()
        try await group.shutdownGracefully()
    }
}
