public import HTTPTypes
import Foundation
public import RestartixKit

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension HTTPField.Name {
    /// `CF-Connecting-IP`: the client's address as Cloudflare saw it.
    public static let cfConnectingIP = Self("CF-Connecting-IP")!
    /// `X-Forwarded-For`: the addresses a request passed through, client first.
    public static let xForwardedFor = Self("X-Forwarded-For")!
}

/// The proxies whose forwarding headers are believed (`TRUSTED_PROXY_CIDRS`): the load
/// balancer's and the CDN's address ranges. A request from anywhere else is its own client,
/// whatever it claims in `X-Forwarded-For` or `CF-Connecting-IP`.
///
/// Only list proxies that overwrite `CF-Connecting-IP` and append to `X-Forwarded-For` (a
/// load balancer reachable only through Cloudflare, for instance): a listed range that passes a
/// client's own headers through lets that client choose the address its audit rows carry.
public struct TrustedProxies: Sendable, CustomStringConvertible {
    struct Range: Sendable, Hashable {
        let bytes: [UInt8]
        let prefix: Int

        func contains(_ address: [UInt8]) -> Bool {
            guard address.count == bytes.count else { return false }
            var left = prefix
            for index in bytes.indices where left > 0 {
                let bits = min(8, left)
                let mask = UInt8(truncatingIfNeeded: 0xFF << (8 - bits))
                if address[index] & mask != bytes[index] & mask { return false }
                left -= bits
            }
            return true
        }
    }

    let ranges: [Range]
    /// The ranges as configured, normalized (`10.0.0.0/8`, `2001:db8::/32`).
    public let cidrs: [String]

    /// No proxy is trusted: every request's client is the connection's peer.
    public static let none = TrustedProxies(ranges: [], cidrs: [])

    init(ranges: [Range], cidrs: [String]) {
        self.ranges = ranges
        self.cidrs = cidrs
    }

    /// The ranges in `cidrs`: IPv4 or IPv6 addresses with an optional `/prefix` (a bare
    /// address is one host).
    /// - Throws: ``ConfigurationError`` naming the entry that is not a CIDR range.
    public init(cidrs: [String]) throws(ConfigurationError) {
        var ranges: [Range] = []
        var names: [String] = []
        for entry in cidrs.map({ $0.trimmingCharacters(in: .whitespaces) }) where !entry.isEmpty {
            let parts = entry.split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count <= 2, let bytes = IPAddress.parse(String(parts[0])) else {
                throw ConfigurationError(.invalidValue, "TRUSTED_PROXY_CIDRS: '\(entry)' is not an IPv4 or IPv6 address or CIDR range")
            }
            let maximum = bytes.count * 8
            let prefix = parts.count == 2 ? Int(parts[1]) : maximum
            guard let prefix, (0...maximum).contains(prefix) else {
                throw ConfigurationError(.invalidValue, "TRUSTED_PROXY_CIDRS: '\(entry)' needs a prefix length from 0 to \(maximum)")
            }
            ranges.append(Range(bytes: bytes, prefix: prefix))
            names.append("\(IPAddress.text(bytes))/\(prefix)")
        }
        self.init(ranges: ranges, cidrs: names)
    }

    /// Whether `address` (parsed) is in a trusted range.
    func contains(_ address: [UInt8]) -> Bool {
        ranges.contains { $0.contains(address) }
    }

    /// The client's address for a request that arrived from `peer` with `headers`, in its
    /// canonical text form; `nil` when the peer is unknown (an in-process test).
    ///
    /// A peer outside the trusted ranges is the client. From a trusted peer: a valid
    /// `CF-Connecting-IP`, else `X-Forwarded-For` read from the right, skipping trusted hops,
    /// to the first untrusted address (a hop that is not an address stops the walk at the last
    /// address known good). Only parsed addresses are returned, so a header can never put
    /// anything else into a log line or an audit row.
    public func clientAddress(peer: String?, headers: HTTPFields) -> String? {
        guard let peer, let peerBytes = IPAddress.parse(peer) else { return nil }
        guard contains(peerBytes) else { return IPAddress.text(peerBytes) }
        if let connecting = headers[.cfConnectingIP], let bytes = IPAddress.parse(connecting.trimmingCharacters(in: .whitespaces)) {
            return IPAddress.text(bytes)
        }
        var client = peerBytes
        let hops = headers[values: .xForwardedFor].flatMap { $0.split(separator: ",") }
        for hop in hops.reversed() {
            guard let bytes = IPAddress.parse(hop.trimmingCharacters(in: .whitespaces)) else { break }
            client = bytes
            if !contains(bytes) { break }
        }
        return IPAddress.text(client)
    }

    public var description: String { cidrs.isEmpty ? "none" : cidrs.joined(separator: ", ") }
}

extension TrustedProxies {
    /// What a per-address rate limit counts `address` (a ``clientAddress(peer:headers:)``
    /// answer) against: an IPv4 address itself, an IPv6 address's /64 network (one client
    /// holds a whole /64 and could otherwise spend a fresh budget per address).
    public static func rateLimitKey(_ address: String) -> String {
        guard let bytes = IPAddress.parse(address), bytes.count == 16 else { return address }
        return IPAddress.text(Array(bytes.prefix(8)) + [UInt8](repeating: 0, count: 8)) + "/64"
    }
}
