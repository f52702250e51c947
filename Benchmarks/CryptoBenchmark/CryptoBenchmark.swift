import BenchmarkSupport
import Crypto
import Foundation
import RestartixCrypto

/// Column cipher throughput on one core, beside `openssl speed -evp aes-256-gcm` run in the
/// same invocation at the same value size: `ColumnCipher.seal` against openssl's encryption
/// rate, `ColumnCipher.open` against its decryption rate (`-decrypt`), and a seal+open round
/// trip against an encryption+decryption round trip. Each kit operation also builds the header,
/// the associated data and the nonce, looks up the subkey and checks or computes the tag, which
/// openssl's loop does not (apps/speed.c streams one message through one context). Target
/// >= 0.6 at 256 B.
@main
struct CryptoBenchmark {
    static func main() throws {
        let seconds = Double(ProcessInfo.processInfo.environment["BENCH_SECONDS"] ?? "3") ?? 3
        Bench.say("crypto-benchmark: one core, \(seconds) s per cell; limits = openssl speed -evp aes-256-gcm -bytes N [-decrypt], same run")
        Bench.say("  size  openssl_enc_MB/s  kit_seal_MB/s  seal/openssl  openssl_dec_MB/s  kit_open_MB/s  open/openssl  round_trip/openssl")
        let cipher = ColumnCipher(keyring: Keyring.generate().keyring)
        for size in [256, 4096] {
            let encrypt = try opensslBytesPerSecond(size: size, seconds: seconds, decrypt: false)
            let decrypt = try opensslBytesPerSecond(size: size, seconds: seconds, decrypt: true)
            let plaintext = Data((0..<size).map { UInt8(truncatingIfNeeded: $0) })
            let place = ColumnPlace(table: "patients", column: "name", organizationID: UUID(), rowID: UUID())
            // Warm up (subkey derivation, context pools, allocator).
            for _ in 0..<1000 { _ = try cipher.open(try cipher.seal(plaintext, at: place), at: place) }
            let sealed = try cipher.seal(plaintext, at: place)
            let seals = try rate(seconds) { _ = try cipher.seal(plaintext, at: place) }
            let opens = try rate(seconds) {
                let opened = try cipher.open(sealed, at: place)
                precondition(opened.count == size)
            }
            let bytes = Double(size)
            let kitRoundTrip = 1 / (1 / seals + 1 / opens)
            let opensslRoundTrip = 1 / (bytes / encrypt + bytes / decrypt)
            Bench.say(String(
                format: "%6d %17.1f %14.1f %13.3f %17.1f %14.1f %13.3f %19.3f",
                size, encrypt / 1e6, seals * bytes / 1e6, seals * bytes / encrypt,
                decrypt / 1e6, opens * bytes / 1e6, opens * bytes / decrypt, kitRoundTrip / opensslRoundTrip
            ))
        }
        try streaming(seconds: seconds)
    }

    /// The streaming AEAD (backups) on one core: 64 MiB sealed and opened in 64 KiB pieces with
    /// 1 MiB segments, each call's output appended to one reused buffer as a writer would, beside openssl's AES-256-GCM rate on 1 MiB messages, same run. The kit also
    /// derives the stream's key, buffers segments and copies them out, which openssl's loop
    /// does not.
    static func streaming(seconds: Double) throws {
        let size = 1 << 20
        let encrypt = try opensslBytesPerSecond(size: size, seconds: seconds, decrypt: false)
        let decrypt = try opensslBytesPerSecond(size: size, seconds: seconds, decrypt: true)
        let aead = try StreamingAEAD(key: SymmetricKey(size: .bits256))
        let piece = [UInt8](repeating: 7, count: 64 << 10), pieces = 1024
        // Timed: sealing, its output handed on (counted) as a writer would, not kept.
        let sealStart = DispatchTime.now().uptimeNanoseconds
        let encryptor = aead.makeEncryptor(associatedData: Data("benchmark".utf8))
        var sealed = 0, chunk: [UInt8] = []
        for _ in 0..<pieces {
            chunk.removeAll(keepingCapacity: true)
            try encryptor.update(piece, appendingTo: &chunk)
            sealed += chunk.count
        }
        sealed += try encryptor.finish().count
        let sealSeconds = Double(DispatchTime.now().uptimeNanoseconds - sealStart) / 1e9
        precondition(sealed == aead.ciphertextSize(forPlaintextSize: piece.count * pieces))
        // Untimed: a ciphertext to open.
        var ciphertext: [UInt8] = []
        ciphertext.reserveCapacity(sealed)
        let again = aead.makeEncryptor(associatedData: Data("benchmark".utf8))
        for _ in 0..<pieces { ciphertext += try again.update(piece) }
        ciphertext += try again.finish()
        let openStart = DispatchTime.now().uptimeNanoseconds
        var decryptor = aead.makeDecryptor(associatedData: Data("benchmark".utf8))
        var opened = 0
        var offset = 0
        while offset < ciphertext.count {
            let end = min(ciphertext.count, offset + piece.count)
            chunk.removeAll(keepingCapacity: true)
            try decryptor.update(ciphertext[offset..<end], appendingTo: &chunk)
            opened += chunk.count
            offset = end
        }
        opened += try decryptor.finish().count
        let openSeconds = Double(DispatchTime.now().uptimeNanoseconds - openStart) / 1e9
        precondition(opened == piece.count * pieces)
        let bytes = Double(piece.count * pieces)
        Bench.say("streaming AEAD, 64 MiB in 64 KiB pieces, 1 MiB segments; limit = openssl speed -evp aes-256-gcm -bytes 1048576 [-decrypt]")
        Bench.say("  openssl_enc_MB/s  kit_seal_MB/s  seal/openssl  openssl_dec_MB/s  kit_open_MB/s  open/openssl")
        Bench.say(String(
            format: "%18.1f %14.1f %13.3f %17.1f %14.1f %13.3f",
            encrypt / 1e6, bytes / sealSeconds / 1e6, bytes / sealSeconds / encrypt, decrypt / 1e6, bytes / openSeconds / 1e6, bytes / openSeconds / decrypt
        ))
    }

    /// Operations per second of `body`, run for `seconds`.
    static func rate(_ seconds: Double, _ body: () throws -> Void) rethrows -> Double {
        var operations = 0
        let start = DispatchTime.now().uptimeNanoseconds
        let deadline = start + UInt64(seconds * 1e9)
        var now = start
        while now < deadline {
            for _ in 0..<256 { try body() }
            operations += 256
            now = DispatchTime.now().uptimeNanoseconds
        }
        return Double(operations) / (Double(now - start) / 1e9)
    }

    /// openssl's single-core AES-256-GCM rate in bytes per second at `size`.
    static func opensslBytesPerSecond(size: Int, seconds: Double, decrypt: Bool) throws -> Double {
        let arguments = ["speed"] + (decrypt ? ["-decrypt"] : []) + ["-evp", "aes-256-gcm", "-bytes", "\(size)", "-seconds", "\(Int(seconds.rounded(.up)))"]
        let output = try Bench.run("/usr/bin/openssl", arguments)
        for line in output.split(separator: "\n") where line.uppercased().hasPrefix("AES-256-GCM") {
            if let field = line.split(separator: " ").last, field.hasSuffix("k"), let thousands = Double(field.dropLast()) {
                return thousands * 1000
            }
        }
        Bench.fail("could not read openssl speed output:\n\(output)")
    }
}
