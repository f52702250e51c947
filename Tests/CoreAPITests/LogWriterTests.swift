import Foundation
import ServiceSupport
import Synchronization
import Testing

/// The log writer: lines from many threads come out whole and in each thread's order, and a
/// stream that does not drain never blocks whoever logs (lines past the buffer are dropped
/// and counted in a warning line).
@Suite("Log writer", .timeLimit(.minutes(1)))
struct LogWriterTests {
    /// Reads `fd` on a thread of its own until `done` says the text is complete.
    final class Reader: @unchecked Sendable {
        private let text = Mutex("")
        private let finished = DispatchSemaphore(value: 0)

        init(fd: Int32, done: @escaping @Sendable (String) -> Bool) {
            Thread { [self] in
                var buffer = [UInt8](repeating: 0, count: 65536)
                while true {
                    let count = read(fd, &buffer, buffer.count)
                    guard count > 0 else { break }
                    let complete = text.withLock { text in
                        text += String(decoding: buffer[0..<count], as: UTF8.self)
                        return done(text)
                    }
                    if complete { break }
                }
                finished.signal()
            }.start()
        }

        func wait() async -> String {
            await withCheckedContinuation { continuation in
                DispatchQueue.global().async { [self] in
                    finished.wait()
                    continuation.resume()
                }
            }
            return text.withLock { $0 }
        }
    }

    @Test("lines appended from several threads come out whole, each thread's in order")
    func order() async throws {
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        defer { close(fds[0]); close(fds[1]) }
        let writer = LogWriter(fileDescriptor: fds[1])
        let threads = 4, lines = 500
        let reader = Reader(fd: fds[0]) { $0.split(separator: "\n").count >= threads * lines }
        await withTaskGroup(of: Void.self) { group in
            for thread in 0..<threads {
                group.addTask {
                    for line in 0..<lines { writer.append(Array("{\"t\":\(thread),\"n\":\(line)}\n".utf8)) }
                }
            }
        }
        writer.flush()
        let text = await reader.wait()
        var next = [Int](repeating: 0, count: threads)
        for line in text.split(separator: "\n") {
            let numbers = line.split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) }
            guard numbers.count == 2 else { Issue.record("a torn line: \(line)"); continue }
            #expect(numbers[1] == next[numbers[0]], "thread \(numbers[0])'s lines in order")
            next[numbers[0]] = numbers[1] + 1
        }
        #expect(next == [Int](repeating: lines, count: threads))
    }

    @Test("a stream nobody reads never blocks the caller; lines past the buffer are dropped and counted")
    func stalled() async throws {
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        defer { close(fds[0]); close(fds[1]) }
        let writer = LogWriter(fileDescriptor: fds[1], capacity: 256 << 10)
        // Far more than the pipe (64 KiB) and the buffer (256 KiB) hold: the writer's thread
        // blocks in write(2) with nobody reading, and appending would block forever if it
        // wrote itself (the suite's time limit would end the test).
        let line = Array((String(repeating: "x", count: 99) + "\n").utf8)
        for _ in 0..<5000 { writer.append(line) }
        let reader = Reader(fd: fds[0]) { $0.contains("log lines dropped") }
        writer.flush()
        let text = await reader.wait()
        let warning = text.split(separator: "\n").first { $0.contains("log lines dropped") }
        let dropped = warning.flatMap { $0.split(separator: "\"message\":\"").last?.split(separator: " ").first.flatMap { Int($0) } }
        let kept = text.split(separator: "\n").filter { $0.hasPrefix("xxx") }.count
        #expect(warning?.contains("\"level\":\"warning\"") == true)
        #expect((dropped ?? 0) > 0)
        #expect(kept + (dropped ?? 0) == 5000, "every line written or counted")
        #expect(kept < 5000)
    }
}
