import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A TCP forwarder to a real server that a test can cut and restore: `stop()` closes every
/// forwarded connection and the listening socket (clients see the server gone: connection
/// refused), `start()` listens on the same port again. Blocking sockets and a thread per
/// direction: a handful of connections in a test.
public final class TCPProxy: Sendable {
    public let port: UInt16
    private let upstream: (host: String, port: UInt16)
    private let state = Mutex<(listener: Int32, sockets: Set<Int32>)>((-1, []))

    public init(upstreamHost: String, upstreamPort: UInt16) throws {
        upstream = (upstreamHost, upstreamPort)
        let (fd, port) = try Self.listen(port: 0)
        self.port = port
        state.withLock { $0.listener = fd }
        acceptLoop(fd)
    }

    /// Cuts the link: no connection stays open, none is accepted.
    public func stop() {
        let (listener, sockets) = state.withLock { state in
            defer { state = (-1, []) }
            return state
        }
        if listener >= 0 { shutdown(listener, Int32(SHUT_RDWR)); close(listener) }
        for fd in sockets { shutdown(fd, Int32(SHUT_RDWR)) }
    }

    /// Restores the link on the same port.
    public func start() throws {
        let (fd, _) = try Self.listen(port: port)
        state.withLock { $0.listener = fd }
        acceptLoop(fd)
    }

    private static func listen(port: UInt16) throws -> (Int32, UInt16) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard bound == 0, Glibc.listen(fd, 64) == 0 else {
            close(fd)
            throw ProxyError(message: "cannot listen on 127.0.0.1:\(port) (errno \(errno))")
        }
        var actual = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &actual) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        return (fd, UInt16(bigEndian: actual.sin_port))
    }

    struct ProxyError: Error { let message: String }

    private func acceptLoop(_ listener: Int32) {
        let thread = Thread { [self] in
            while true {
                let client = accept(listener, nil, nil)
                guard client >= 0 else { return }
                let server = connectUpstream()
                guard server >= 0, track([client, server]) else {
                    close(client)
                    if server >= 0 { close(server) }
                    continue
                }
                let pair = Pair(client, server)
                pump(from: client, to: server, pair)
                pump(from: server, to: client, pair)
            }
        }
        thread.start()
    }

    /// Remembers live sockets; false when the proxy was stopped meanwhile.
    private func track(_ fds: [Int32]) -> Bool {
        state.withLock { state in
            guard state.listener >= 0 else { return false }
            state.sockets.formUnion(fds)
            return true
        }
    }

    private func connectUpstream() -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = upstream.port.bigEndian
        address.sin_addr.s_addr = inet_addr(upstream.host)
        let connected = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        if connected != 0 {
            close(fd)
            return -1
        }
        return fd
    }

    /// Two descriptors forwarded to each other; the second pump to finish closes both.
    private final class Pair: Sendable {
        let fds: (Int32, Int32)
        let finished = Atomic<Int>(0)
        init(_ a: Int32, _ b: Int32) { fds = (a, b) }
    }

    private func pump(from source: Int32, to sink: Int32, _ pair: Pair) {
        let thread = Thread { [self] in
            var buffer = [UInt8](repeating: 0, count: 64 * 1024)
            while true {
                let n = buffer.withUnsafeMutableBytes { read(source, $0.baseAddress, $0.count) }
                if n <= 0 { break }
                var offset = 0
                while offset < n {
                    let written = buffer.withUnsafeBytes { send(sink, $0.baseAddress! + offset, n - offset, Int32(MSG_NOSIGNAL)) }
                    if written <= 0 { break }
                    offset += written
                }
                if offset < n { break }
            }
            shutdown(source, Int32(SHUT_RDWR))
            shutdown(sink, Int32(SHUT_RDWR))
            if pair.finished.add(1, ordering: .acquiringAndReleasing).newValue == 2 {
                state.withLock { state in
                    state.sockets.remove(pair.fds.0)
                    state.sockets.remove(pair.fds.1)
                }
                close(pair.fds.0)
                close(pair.fds.1)
            }
        }
        thread.start()
    }
}
