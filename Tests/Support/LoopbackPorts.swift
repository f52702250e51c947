public import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Free loopback ports for servers a test starts itself, chosen below the kernel's ephemeral
/// range (`net.ipv4.ip_local_port_range`, 32768 and up by default).
///
/// A port inside that range can be taken at any moment by an outgoing connection of the test
/// process (every pool, client and proxy opens some), so "free when checked" does not mean "free
/// when the server binds it" — or when a killed server is started again on the same port. A CI
/// run lost its fault drill that way: Postgres found 55534 taken by a client socket. Below the
/// ephemeral range only another listener can hold a port, and a bind check sees that.
public enum LoopbackPorts {
    /// The first port of the ephemeral range (32768 when /proc does not say).
    public static var ephemeralLowerBound: Int {
        let text = (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8)) ?? ""
        let first = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).first.flatMap { Int($0) }
        return first ?? 32768
    }

    /// `count` distinct ports that nothing on 127.0.0.1 listens on or has bound, each below
    /// the ephemeral range, never handed out before in this process: tests running at once get
    /// different ones even when none has bound its port yet (two picked at random once met,
    /// and one test froze the other's server). The walk starts at a random port, so test
    /// processes running side by side rarely meet either.
    public static func free(_ count: Int) throws -> [Int] {
        let upper = min(ephemeralLowerBound, 32768)
        let lower = 20000
        guard upper - lower > count * 4 else { throw POSIXError(.EADDRNOTAVAIL) }
        return try cursor.withLock { next in
            var chosen: [Int] = []
            var tried = 0
            while chosen.count < count {
                guard tried < upper - lower else { throw POSIXError(.EADDRINUSE) }
                tried += 1
                if next < lower || next >= upper { next = lower }
                let port = next
                next += 1
                if isFree(port) { chosen.append(port) }
            }
            return chosen
        }
    }

    /// The next port to try.
    private static let cursor = Mutex<Int>(Int.random(in: 20000..<32000))

    /// One free port (see ``free(_:)``).
    public static func free() throws -> Int { try free(1)[0] }

    /// Whether a socket can bind `port` on 127.0.0.1 (without SO_REUSEADDR, so a port held by
    /// a connection in TIME_WAIT counts as taken too).
    public static func isFree(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        return withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }
}
