import CLibCrypto
import Crypto
import Foundation
import Synchronization

/// AES-256-GCM for one subkey through OpenSSL's EVP interface, keeping initialized contexts
/// (key schedule and GHASH tables) for reuse, and drawing nonces from OpenSSL's userspace DRBG
/// (fork-safe). swift-crypto builds a fresh AEAD context and reads the kernel's random source for
/// every value, which costs more than the encryption of a short column value.
///
/// Contexts are not thread-safe, so each operation takes one from a small pool (or makes one)
/// and puts it back.
final class GCMKey: Sendable {
    private let key: [UInt8]
    private let encryptors = Mutex<[Context]>([])
    private let decryptors = Mutex<[Context]>([])
    private static let poolLimit = 16

    /// An owned `EVP_CIPHER_CTX`, freed with its box.
    final class Context: @unchecked Sendable {
        let pointer: OpaquePointer
        init(_ pointer: OpaquePointer) { self.pointer = pointer }
        deinit { EVP_CIPHER_CTX_free(pointer) }
    }

    init(_ key: SymmetricKey) {
        self.key = key.withUnsafeBytes { Array($0) }
    }

    /// Writes nonce, ciphertext and tag of `plaintext` into `out` (12 + n + 16 bytes), using
    /// `nonce` when given (known-answer tests) or 12 fresh random bytes. `false` on failure.
    func seal(
        _ plaintext: UnsafeRawBufferPointer, aad: [UInt8], nonce fixed: [UInt8]?, into out: UnsafeMutableRawBufferPointer
    ) -> Bool {
        guard out.count == 12 + plaintext.count + 16, let base = out.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return false }
        if let fixed {
            guard fixed.count == 12 else { return false }
            fixed.withUnsafeBufferPointer { base.update(from: $0.baseAddress!, count: 12) }
        } else {
            guard RAND_bytes(base, 12) == 1 else { return false }
        }
        let context = take(encryptors) { ctx in EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), nil, self.key, nil) }
        guard let context else { return false }
        defer { give(context, to: encryptors) }
        let ctx = context.pointer
        var length: Int32 = 0
        guard EVP_EncryptInit_ex(ctx, nil, nil, nil, base) == 1 else { return false }
        guard aad.withUnsafeBufferPointer({ EVP_EncryptUpdate(ctx, nil, &length, $0.baseAddress, Int32($0.count)) }) == 1 else { return false }
        let body = base + 12
        if plaintext.count > 0 {
            guard EVP_EncryptUpdate(ctx, body, &length, plaintext.baseAddress!.assumingMemoryBound(to: UInt8.self), Int32(plaintext.count)) == 1,
                Int(length) == plaintext.count
            else { return false }
        }
        var tail: Int32 = 0
        guard EVP_EncryptFinal_ex(ctx, body + plaintext.count, &tail) == 1, tail == 0 else { return false }
        return EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, body + plaintext.count) == 1
    }

    /// The plaintext of `sealed` (nonce, ciphertext, tag), or `nil` when it does not authenticate.
    func open(_ sealed: UnsafeRawBufferPointer, aad: [UInt8]) -> Data? {
        guard sealed.count >= 28, let base = sealed.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return nil }
        let count = sealed.count - 28
        let context = take(decryptors) { ctx in EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), nil, self.key, nil) }
        guard let context else { return nil }
        defer { give(context, to: decryptors) }
        let ctx = context.pointer
        var length: Int32 = 0
        guard EVP_DecryptInit_ex(ctx, nil, nil, nil, base) == 1 else { return nil }
        guard aad.withUnsafeBufferPointer({ EVP_DecryptUpdate(ctx, nil, &length, $0.baseAddress, Int32($0.count)) }) == 1 else { return nil }
        var plaintext = Data(count: count)
        let ok = plaintext.withUnsafeMutableBytes { out -> Bool in
            if count > 0 {
                guard EVP_DecryptUpdate(ctx, out.baseAddress!.assumingMemoryBound(to: UInt8.self), &length, base + 12, Int32(count)) == 1 else { return false }
            }
            let tag = UnsafeMutableRawPointer(mutating: base + 12 + count)
            guard EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, tag) == 1 else { return false }
            var tail: Int32 = 0
            let scratch = UnsafeMutablePointer<UInt8>.allocate(capacity: 16)
            defer { scratch.deallocate() }
            return EVP_DecryptFinal_ex(ctx, scratch, &tail) == 1
        }
        return ok ? plaintext : nil
    }

    private func take(_ pool: borrowing Mutex<[Context]>, initialize: (OpaquePointer) -> Int32) -> Context? {
        if let context = pool.withLock({ $0.popLast() }) { return context }
        guard let pointer = EVP_CIPHER_CTX_new() else { return nil }
        let context = Context(pointer)
        guard initialize(pointer) == 1 else { return nil }
        return context
    }

    private func give(_ context: Context, to pool: borrowing Mutex<[Context]>) {
        pool.withLock { if $0.count < Self.poolLimit { $0.append(context) } }
    }
}
