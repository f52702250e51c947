import CLibCrypto
import Crypto
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// AES-256-GCM for one subkey through OpenSSL's EVP interface, keeping initialized contexts
/// (key schedule and GHASH tables) for reuse. swift-crypto builds a fresh AEAD context and reads
/// the kernel's random source for every value, which costs more than the encryption of a short
/// column value.
///
/// Each sealing context has its own ``NonceBatch``.
///
/// Contexts are not thread-safe, so each operation takes one from a small pool (or makes one)
/// and puts it back.
final class GCMKey: Sendable {
    private static let poolLimit = 16

    private let key: SymmetricKey
    private let sealers = Mutex<[Sealer]>([])
    private let openers = Mutex<[Context]>([])

    /// An owned `EVP_CIPHER_CTX` initialized with the subkey, freed (and cleansed by OpenSSL)
    /// with its box.
    class Context: @unchecked Sendable {
        let pointer: OpaquePointer
        init(_ pointer: OpaquePointer) { self.pointer = pointer }
        deinit { EVP_CIPHER_CTX_free(pointer) }
    }

    /// A sealing context and its nonces. Used by one thread at a time (it is out of the pool
    /// while in use).
    final class Sealer: Context, @unchecked Sendable {
        let nonces = NonceBatch()
    }

    init(_ key: SymmetricKey) {
        self.key = key
    }

    /// Writes nonce, ciphertext and tag of `plaintext` into `out` (12 + n + 16 bytes), using
    /// `nonce` when given (known-answer tests) or the next random one. `false` on failure.
    func seal(
        _ plaintext: UnsafeRawBufferPointer, aad: UnsafeRawBufferPointer, nonce fixed: UnsafeRawBufferPointer?,
        into out: UnsafeMutableRawBufferPointer
    ) -> Bool {
        guard out.count == 12 + plaintext.count + 16, plaintext.count <= Int(Int32.max),
            let base = out.baseAddress?.assumingMemoryBound(to: UInt8.self)
        else { return false }
        let sealer: Sealer? = take(sealers) { Sealer($0) } initialize: { EVP_EncryptInit_ex($0, EVP_aes_256_gcm(), nil, $1, nil) }
        guard let sealer else { return false }
        defer { give(sealer, to: sealers) }
        if let fixed {
            guard fixed.count == 12 else { return false }
            out.baseAddress!.copyMemory(from: fixed.baseAddress!, byteCount: 12)
        } else {
            guard sealer.nonces.draw(into: base) else { return false }
        }
        let ctx = sealer.pointer
        var length: Int32 = 0
        guard EVP_EncryptInit_ex(ctx, nil, nil, nil, base) == 1,
            EVP_EncryptUpdate(ctx, nil, &length, aad.baseAddress?.assumingMemoryBound(to: UInt8.self), Int32(aad.count)) == 1
        else { return false }
        let body = base + 12
        if let input = plaintext.baseAddress, plaintext.count > 0 {
            guard EVP_EncryptUpdate(ctx, body, &length, input.assumingMemoryBound(to: UInt8.self), Int32(plaintext.count)) == 1,
                Int(length) == plaintext.count
            else { return false }
        }
        var tail: Int32 = 0
        guard EVP_EncryptFinal_ex(ctx, body + plaintext.count, &tail) == 1, tail == 0 else { return false }
        return EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, body + plaintext.count) == 1
    }

    /// Decrypts `sealed` (nonce, ciphertext, tag) into `out` (its ciphertext's length) and
    /// checks the tag; `false` when it does not authenticate. `out` holds no plaintext then:
    /// it is zeroed before returning.
    func open(_ sealed: UnsafeRawBufferPointer, aad: UnsafeRawBufferPointer, into out: UnsafeMutableRawBufferPointer) -> Bool {
        guard sealed.count >= 28, out.count == sealed.count - 28, out.count <= Int(Int32.max),
            let base = sealed.baseAddress?.assumingMemoryBound(to: UInt8.self)
        else { return false }
        let count = out.count
        let opener: Context? = take(openers) { Context($0) } initialize: { EVP_DecryptInit_ex($0, EVP_aes_256_gcm(), nil, $1, nil) }
        guard let opener else { return false }
        defer { give(opener, to: openers) }
        let ctx = opener.pointer
        var length: Int32 = 0
        guard EVP_DecryptInit_ex(ctx, nil, nil, nil, base) == 1,
            EVP_DecryptUpdate(ctx, nil, &length, aad.baseAddress?.assumingMemoryBound(to: UInt8.self), Int32(aad.count)) == 1
        else { return false }
        if let output = out.baseAddress, count > 0 {
            guard EVP_DecryptUpdate(ctx, output.assumingMemoryBound(to: UInt8.self), &length, base + 12, Int32(count)) == 1, Int(length) == count else {
                out.initializeMemory(as: UInt8.self, repeating: 0)
                return false
            }
        }
        var scratch: (UInt64, UInt64) = (0, 0)
        let authentic = withUnsafeMutableBytes(of: &scratch) { final in
            EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, UnsafeMutableRawPointer(mutating: base + 12 + count)) == 1
                && EVP_DecryptFinal_ex(ctx, final.baseAddress!.assumingMemoryBound(to: UInt8.self), &length) == 1
        }
        if !authentic, count > 0 { out.initializeMemory(as: UInt8.self, repeating: 0) }
        return authentic
    }

    private func take<C: Context>(
        _ pool: borrowing Mutex<[C]>, make: (OpaquePointer) -> C, initialize: (OpaquePointer, UnsafePointer<UInt8>) -> Int32
    ) -> C? {
        if let context = pool.withLock({ $0.popLast() }) { return context }
        guard let pointer = EVP_CIPHER_CTX_new() else { return nil }
        let context = make(pointer)
        let ok = key.withUnsafeBytes { initialize(pointer, $0.baseAddress!.assumingMemoryBound(to: UInt8.self)) }
        return ok == 1 ? context : nil
    }

    private func give<C: Context>(_ context: C, to pool: borrowing Mutex<[C]>) {
        pool.withLock { if $0.count < Self.poolLimit { $0.append(context) } }
    }
}

/// Random 96-bit nonces, drawn from OpenSSL's DRBG ``size`` at a time and handed out one per
/// call. A DRBG call costs about twice the encryption of a 256-byte value, so one call per
/// value would be the largest cost of a seal. The nonces are as random as per-value draws (the
/// same generator, 96 fresh bits each) and each is handed out once. After `fork()` the parent
/// keeps its batch and the child never uses its copy: a fork handler moves ``ForkGeneration``
/// on in the child, where a batch from an earlier generation is thrown away and drawn again
/// (OpenSSL reseeds its own generator in the child), so the two processes never share a nonce.
///
/// Not thread-safe: one owner at a time (a pooled sealing context).
final class NonceBatch: @unchecked Sendable {
    /// Nonces per DRBG call.
    static let size = 64

    /// The batch, then two counters: the next unused nonce and the batch's fork generation.
    /// Kept behind pointers rather than in stored `var`s, whose every access would pay a
    /// dynamic exclusivity check on the hot path.
    private let nonces = UnsafeMutablePointer<UInt8>.allocate(capacity: 12 * NonceBatch.size)
    private let state = UnsafeMutablePointer<Int>.allocate(capacity: 2)

    init() {
        state.initialize(to: Self.size)
        (state + 1).initialize(to: -1)
    }

    deinit {
        nonces.deallocate()
        state.deallocate()
    }

    /// Writes the next unused random nonce to `destination` (12 bytes); `false` when the DRBG
    /// fails.
    func draw(into destination: UnsafeMutablePointer<UInt8>) -> Bool {
        guard let current = ForkGeneration.current else { return RAND_bytes(destination, 12) == 1 }
        if state[0] == Self.size || state[1] != current {
            guard RAND_bytes(nonces, Int32(12 * Self.size)) == 1 else {
                state[0] = Self.size
                return false
            }
            state[0] = 0
            state[1] = current
        }
        destination.update(from: nonces + 12 * state[0], count: 12)
        state[0] += 1
        return true
    }
}

/// A count the child side of every `fork()` moves on, so state drawn from a random generator
/// before a fork (the sealers' nonce batches) is never reused in both processes.
enum ForkGeneration {
    private static let counter = Atomic<Int>(0)
    private static let registered: Bool = {
        _ = counter.load(ordering: .relaxed)  // initialized before the handler can run
        return pthread_atfork(nil, nil, { ForkGeneration.counter.add(1, ordering: .relaxed) }) == 0
    }()

    /// The current generation, or `nil` when the fork handler could not be registered (then
    /// every nonce is drawn on its own).
    static var current: Int? {
        guard registered else { return nil }
        return counter.load(ordering: .relaxed)
    }
}
