import BenchmarkSupport
import Foundation
import RestartixCrypto

/// Column cipher seal + open throughput on one core, beside `openssl speed -evp aes-256-gcm`
/// run in the same invocation at the same value size. The figure is bytes of plaintext
/// processed per second by each AES-GCM operation (a seal or an open), as a ratio to openssl's
/// encryption rate: the kit adds the header, the associated data, the subkey lookup and
/// allocation for every value. Target >= 0.6 at 256 B.
@main
struct CryptoBenchmark {
    static func main() throws {
        let seconds = Double(ProcessInfo.processInfo.environment["BENCH_SECONDS"] ?? "3") ?? 3
        Bench.say("crypto-benchmark: one core, \(seconds) s per cell; limit = openssl speed -evp aes-256-gcm -bytes N, same run")
        Bench.say("  size  openssl_MB/s  kit_seal+open_MB/s  kit/openssl  kit_seals/s  kit_opens/s")
        let cipher = ColumnCipher(keyring: Keyring.generate().keyring)
        for size in [256, 4096] {
            let limit = try opensslBytesPerSecond(size: size, seconds: Int(seconds.rounded(.up)))
            let plaintext = Data((0..<size).map { UInt8(truncatingIfNeeded: $0) })
            let place = ColumnPlace(table: "patients", column: "name", organizationID: UUID(), rowID: UUID())
            // Warm up (subkey derivation, allocator).
            for _ in 0..<1000 { _ = try cipher.open(try cipher.seal(plaintext, at: place), at: place) }
            var seals = 0, opens = 0
            let start = DispatchTime.now().uptimeNanoseconds
            let deadline = start + UInt64(seconds * 1e9)
            var now = start
            while now < deadline {
                for _ in 0..<256 {
                    let sealed = try cipher.seal(plaintext, at: place)
                    seals += 1
                    let opened = try cipher.open(sealed, at: place)
                    opens += 1
                    precondition(opened.count == size)
                }
                now = DispatchTime.now().uptimeNanoseconds
            }
            let elapsed = Double(now - start) / 1e9
            let kit = Double((seals + opens) * size) / elapsed
            Bench.say(String(
                format: "%6d %13.1f %19.1f %12.3f %12.0f %12.0f",
                size, limit / 1e6, kit / 1e6, kit / limit, Double(seals) / elapsed, Double(opens) / elapsed
            ))
        }
    }

    /// openssl's single-core AES-256-GCM encryption rate in bytes per second at `size`.
    static func opensslBytesPerSecond(size: Int, seconds: Int) throws -> Double {
        let output = try Bench.run("/usr/bin/openssl", ["speed", "-evp", "aes-256-gcm", "-bytes", "\(size)", "-seconds", "\(seconds)"])
        for line in output.split(separator: "\n") where line.uppercased().hasPrefix("AES-256-GCM") {
            if let field = line.split(separator: " ").last, field.hasSuffix("k"), let thousands = Double(field.dropLast()) {
                return thousands * 1000
            }
        }
        Bench.fail("could not read openssl speed output:\n\(output)")
    }
}
