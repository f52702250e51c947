public import Crypto
public import Foundation
public import RestartixKit

/// Authenticated encryption of a stream of any length in constant memory: Tink's AES-GCM-HKDF
/// streaming AEAD (the `AesGcmHkdfStreamingKey` construction, HKDF-SHA256 and 32-byte derived
/// keys), byte for byte, so a stream sealed here opens with Tink and the other way round (the
/// tests hold ciphertexts made by Tink itself). It is the online scheme of Hoang, Reyhanitabar,
/// Rogaway and Vizár (STREAM) over AES-256-GCM; the kit invents nothing here.
///
/// The format: a header — its length (one byte, 40), a random 32-byte salt and a random 7-byte
/// nonce prefix — then segments, each AES-256-GCM under a key derived for this stream alone
/// (HKDF-SHA256 of the key, the salt and the associated data) with the nonce
/// `prefix ‖ index (4 bytes, big-endian) ‖ last (1 byte: 1 on the final segment)`. Every
/// ciphertext segment is ``segmentSize`` bytes (the first one less the header) except the
/// final one, which is shorter or equal. So a changed byte, a segment dropped, repeated or
/// moved, a stream cut short or extended, and a segment spliced in from another stream or
/// another associated data each fail to open, and ``StreamDecryptor`` names which.
///
/// Segments go through the kit's OpenSSL EVP context (`GCMKey`) into buffers kept from segment
/// to segment (see Benchmarks/README.md, crypto-benchmark); swift-crypto's `HKDF` derives the
/// stream's key, and its `AES.GCM` only tells, after a failure, where a segment belongs.
public struct StreamingAEAD: Sendable {
    /// Tink's `AES256_GCM_HKDF_1MB` template: 1 MiB ciphertext segments.
    public static let defaultSegmentSize = 1 << 20
    /// Length of the header: its length byte, the salt and the nonce prefix.
    public static let headerSize = 1 + derivedKeySize + noncePrefixSize
    static let derivedKeySize = 32
    static let noncePrefixSize = 7
    static let tagSize = 16

    /// The ciphertext segment size (the header counts in the first segment).
    public let segmentSize: Int
    private let key: SymmetricKey

    /// A streaming AEAD under `key` (at least 32 bytes: the input of the derivation) with
    /// ciphertext segments of `segmentSize` bytes (more than ``headerSize`` + 16, at most
    /// 2^31 - 1, as Tink requires).
    public init(key: SymmetricKey, segmentSize: Int = defaultSegmentSize) throws(EncryptionError) {
        guard key.bitCount >= Self.derivedKeySize * 8 else {
            throw EncryptionError(.invalidInput, "a streaming key needs at least 32 bytes, this one has \(key.bitCount / 8)")
        }
        guard segmentSize > Self.headerSize + Self.tagSize, segmentSize <= Int(Int32.max) else {
            throw EncryptionError(.invalidInput, "a ciphertext segment size must be \(Self.headerSize + Self.tagSize + 1) to \(Int32.max) bytes, not \(segmentSize)")
        }
        self.key = key
        self.segmentSize = segmentSize
    }

    /// An encryptor for one stream bound to `associatedData` (which is authenticated, not
    /// stored: the decryptor must be given the same).
    public func makeEncryptor(associatedData: some DataProtocol = Data()) -> StreamEncryptor {
        var salt = [UInt8](repeating: 0, count: Self.derivedKeySize)
        var prefix = [UInt8](repeating: 0, count: Self.noncePrefixSize)
        var random = SystemRandomNumberGenerator()
        for index in salt.indices { salt[index] = random.next() }
        for index in prefix.indices { prefix[index] = random.next() }
        return StreamEncryptor(aead: self, associatedData: Data(associatedData), salt: salt, noncePrefix: prefix)
    }

    /// A decryptor for one stream sealed with `associatedData`.
    public func makeDecryptor(associatedData: some DataProtocol = Data()) -> StreamDecryptor {
        StreamDecryptor(aead: self, associatedData: Data(associatedData))
    }

    /// The whole ciphertext's size for a plaintext of `plaintextSize` bytes.
    public func ciphertextSize(forPlaintextSize plaintextSize: Int) -> Int {
        let first = firstPlaintextSize, other = segmentSize - Self.tagSize
        let segments = plaintextSize <= first ? 1 : 1 + (plaintextSize - first + other - 1) / other
        return Self.headerSize + plaintextSize + segments * Self.tagSize
    }

    var firstPlaintextSize: Int { segmentSize - Self.headerSize - Self.tagSize }

    func derivedKey(salt: [UInt8], associatedData: Data) -> SymmetricKey {
        HKDF<SHA256>.deriveKey(inputKeyMaterial: key, salt: salt, info: associatedData, outputByteCount: Self.derivedKeySize)
    }

    static func nonceBytes(prefix: [UInt8], index: UInt32, last: Bool) -> [UInt8] {
        prefix + [UInt8(truncatingIfNeeded: index >> 24), UInt8(truncatingIfNeeded: index >> 16), UInt8(truncatingIfNeeded: index >> 8), UInt8(truncatingIfNeeded: index), last ? 1 : 0]
    }

    static func nonce(prefix: [UInt8], index: UInt32, last: Bool) -> AES.GCM.Nonce {
        try! AES.GCM.Nonce(data: nonceBytes(prefix: prefix, index: index, last: last))  // 12 bytes: cannot fail
    }
}

/// Seals one stream: feed plaintext to ``update(_:)`` in pieces of any size and write out what
/// each call returns, then what ``finish()`` returns. Holds one segment of plaintext (and the
/// piece being fed).
///
/// A class, and not `Sendable`: a copy of a sealing state would seal other bytes under the same
/// key and nonces, which breaks AES-GCM; this way there is one state, used by one task.
public final class StreamEncryptor {
    private let aead: StreamingAEAD
    private let gcm: GCMKey
    private let noncePrefix: [UInt8]
    private var header: [UInt8]?
    private var pending: [UInt8] = []
    /// Nonce, ciphertext and tag of the segment being sealed (kept for its capacity).
    private var scratch: [UInt8] = []
    private var index: UInt32 = 0
    private var finished = false

    /// An encryptor with the given salt and nonce prefix (``StreamingAEAD/makeEncryptor(associatedData:)``
    /// draws them; known-answer tests give Tink's).
    init(aead: StreamingAEAD, associatedData: Data, salt: [UInt8], noncePrefix: [UInt8]) {
        self.aead = aead
        self.gcm = GCMKey(aead.derivedKey(salt: salt, associatedData: associatedData))
        self.noncePrefix = noncePrefix
        self.header = [UInt8(StreamingAEAD.headerSize)] + salt + noncePrefix
        pending.reserveCapacity(aead.firstPlaintextSize)
    }

    /// Takes the next piece of plaintext; returns the ciphertext that is ready (the header on
    /// the first call, then every segment that is complete and known not to be the last).
    public func update(_ plaintext: some DataProtocol) throws(EncryptionError) -> [UInt8] {
        var out: [UInt8] = []
        try update(plaintext, appendingTo: &out)
        return out
    }

    /// ``update(_:)`` appending to `out`: a caller that empties and reuses one buffer keeps
    /// memory flat (a fresh megabyte per segment costs page faults, more than the AES does).
    public func update(_ plaintext: some DataProtocol, appendingTo out: inout [UInt8]) throws(EncryptionError) {
        guard !finished else { throw EncryptionError(.invalidInput, "the stream was already finished") }
        if let header { out += header }
        header = nil
        for region in plaintext.regions {
            // Through the region's bytes: generic slicing of a `DataProtocol` from another
            // module copies a byte at a time.
            let failure = region.withUnsafeBytes { bytes -> EncryptionError? in
                var offset = 0
                while offset < bytes.count {
                    // A full segment is sealed only once more plaintext follows: until then it
                    // may be the last one, which carries the final flag.
                    if pending.count == capacity {
                        do throws(EncryptionError) { try seal(last: false, appendingTo: &out) } catch { return error }
                    }
                    let take = min(capacity - pending.count, bytes.count - offset)
                    pending.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + take)]))
                    offset += take
                }
                return nil
            }
            if let failure {
                finished = true  // the stream is broken: no more segments under its nonces
                throw failure
            }
        }
    }

    /// Seals what is left as the final segment (an empty stream is one empty final segment)
    /// and returns it; the encryptor takes nothing after this.
    public func finish() throws(EncryptionError) -> [UInt8] {
        var out: [UInt8] = []
        try finish(appendingTo: &out)
        return out
    }

    /// ``finish()`` appending to `out`.
    public func finish(appendingTo out: inout [UInt8]) throws(EncryptionError) {
        guard !finished else { throw EncryptionError(.invalidInput, "the stream was already finished") }
        if let header { out += header }
        header = nil
        finished = true
        try seal(last: true, appendingTo: &out)
    }

    private var capacity: Int { index == 0 ? aead.firstPlaintextSize : aead.segmentSize - StreamingAEAD.tagSize }

    private func seal(last: Bool, appendingTo out: inout [UInt8]) throws(EncryptionError) {
        guard index < UInt32.max || last else {
            throw EncryptionError(.invalidInput, "a stream holds at most 2^32 segments")
        }
        // Through the kit's EVP context (`GCMKey`) into a buffer kept from segment to segment:
        // swift-crypto's `AES.GCM` returns fresh `Data` to copy out of, a megabyte at a time.
        let nonce = StreamingAEAD.nonceBytes(prefix: noncePrefix, index: index, last: last)
        scratch.removeAll(keepingCapacity: true)
        scratch.append(contentsOf: repeatElement(0, count: 12 + pending.count + StreamingAEAD.tagSize))
        let ok = pending.withUnsafeBytes { plaintext in
            nonce.withUnsafeBytes { nonce in
                scratch.withUnsafeMutableBytes { gcm.seal(plaintext, aad: UnsafeRawBufferPointer(start: nil, count: 0), nonce: nonce, into: $0) }
            }
        }
        guard ok else { throw EncryptionError(.invalidInput, "AES-GCM refused a segment of \(pending.count) bytes") }
        pending.removeAll(keepingCapacity: true)
        index &+= 1
        out += scratch[12...]
    }
}

/// Opens one stream: feed ciphertext to ``update(_:)`` in pieces of any size and use what each
/// call returns — plaintext of segments already authenticated, in order — then call
/// ``finish()``, which authenticates the final segment. Nothing is returned before its segment
/// has been checked, and the stream is only whole once ``finish()`` returns: a consumer that
/// must not act on a stream cut short (a restore) keeps what it writes provisional until then.
///
/// Errors name what was found (codes of ``EncryptionError``): `invalidHeader`, `truncated` (the
/// stream ends without its final segment), `trailingData` (whole segments after the final one),
/// `segmentMissing` (segments skipped), `segmentsReordered` (moved or repeated), and
/// `authenticationFailed` (a changed byte, another key or another associated data). Segments
/// are told apart by where they open, so moves and drops are named only where segments keep
/// their size: the first segment is shorter (the header precedes it), and bytes that do not
/// make whole segments (a few appended, a move involving the first segment) show as
/// `authenticationFailed`. A container that records its length and parts (the backup
/// manifest) names those exactly. After an error the decryptor takes nothing more.
public struct StreamDecryptor: Sendable {
    private let aead: StreamingAEAD
    private let associatedData: Data
    private var key: SymmetricKey?
    private var gcm: GCMKey?
    /// Nonce, ciphertext and tag of the segment being opened (kept for its capacity).
    private var scratch: [UInt8] = []
    private var noncePrefix: [UInt8] = []
    private var buffer: [UInt8] = []
    private var index: UInt32 = 0
    private var failed = false
    private var sawFinal = false
    /// A segment that opened under a later index than the one due: decided at the next segment.
    private var misplaced: (expected: UInt32, found: UInt32)?
    /// How far around the expected index a segment that does not open is tried, to tell a
    /// missing or moved segment from a changed one (only on failure).
    static let probeWindow: UInt32 = 64

    init(aead: StreamingAEAD, associatedData: Data) {
        self.aead = aead
        self.associatedData = associatedData
    }

    /// Takes the next piece of ciphertext; returns the plaintext of the segments it completed
    /// (all but a segment that may still be the final one).
    public mutating func update(_ ciphertext: some DataProtocol) throws(EncryptionError) -> [UInt8] {
        var out: [UInt8] = []
        try update(ciphertext, appendingTo: &out)
        return out
    }

    /// ``update(_:)`` appending to `out` (reuse one buffer to keep memory flat).
    public mutating func update(_ ciphertext: some DataProtocol, appendingTo out: inout [UInt8]) throws(EncryptionError) {
        guard !failed else { throw EncryptionError(.invalidInput, "the stream already failed to open") }
        if sawFinal, !ciphertext.isEmpty { _ = try fail(.trailingData, "bytes follow the stream's final segment") }
        buffer.append(contentsOf: ciphertext)
        if gcm == nil {
            guard buffer.count >= StreamingAEAD.headerSize else { return }
            try readHeader()
        }
        // A segment is opened as non-final once a byte beyond it has arrived. Segments are read
        // at an offset and the buffer compacted once, not shifted once per segment.
        var consumed = 0
        while buffer.count - consumed > expectedSize {
            let size = expectedSize
            try openSegment(consumed..<(consumed + size), last: false, appendingTo: &out)
            consumed += size
        }
        buffer.removeFirst(consumed)
    }

    /// Authenticates the final segment (what is left) and returns its plaintext.
    public mutating func finish() throws(EncryptionError) -> [UInt8] {
        var out: [UInt8] = []
        try finish(appendingTo: &out)
        return out
    }

    /// ``finish()`` appending to `out`.
    public mutating func finish(appendingTo out: inout [UInt8]) throws(EncryptionError) {
        guard !failed else { throw EncryptionError(.invalidInput, "the stream already failed to open") }
        guard !sawFinal else { return }
        guard gcm != nil else {
            _ = try fail(.truncated, "the stream ends inside its header (\(buffer.count) of \(StreamingAEAD.headerSize) bytes)")
            return
        }
        guard buffer.count >= StreamingAEAD.tagSize else {
            _ = try fail(.truncated, "the stream ends \(buffer.count) bytes into segment \(index), shorter than a tag")
            return
        }
        try openSegment(0..<buffer.count, last: true, appendingTo: &out)
        buffer.removeAll()
        sawFinal = true
    }

    /// Opens the buffer's bytes `range` as the next segment onto `out`: through the
    /// kit's EVP context into buffers kept from segment to segment; on failure, nothing of the
    /// segment stays in `out` and ``open(_:last:)`` says why.
    private mutating func openSegment(_ range: Range<Int>, last: Bool, appendingTo out: inout [UInt8]) throws(EncryptionError) {
        guard let gcm else { return }
        if misplaced == nil {
            scratch.removeAll(keepingCapacity: true)
            scratch += StreamingAEAD.nonceBytes(prefix: noncePrefix, index: index, last: last)
            scratch += buffer[range]
            let start = out.count
            out.append(contentsOf: repeatElement(0, count: range.count - StreamingAEAD.tagSize))
            let opened = scratch.withUnsafeBytes { sealed in
                out.withUnsafeMutableBytes { gcm.open(sealed, aad: UnsafeRawBufferPointer(start: nil, count: 0), into: UnsafeMutableRawBufferPointer(rebasing: $0[start...])) }
            }
            if opened {
                index &+= 1
                return
            }
            out.removeSubrange(start...)
        }
        out += try open(Array(buffer[range]), last: last)
    }

    private var expectedSize: Int {
        index == 0 ? aead.segmentSize - StreamingAEAD.headerSize : aead.segmentSize
    }

    private mutating func readHeader() throws(EncryptionError) {
        guard buffer[0] == UInt8(StreamingAEAD.headerSize) else {
            _ = try fail(.invalidHeader, "the header's length byte is \(buffer[0]), not \(StreamingAEAD.headerSize)")
            return
        }
        let salt = Array(buffer[1...StreamingAEAD.derivedKeySize])
        noncePrefix = Array(buffer[(1 + StreamingAEAD.derivedKeySize)..<StreamingAEAD.headerSize])
        let derived = aead.derivedKey(salt: salt, associatedData: associatedData)
        key = derived
        gcm = GCMKey(derived)
        buffer.removeFirst(StreamingAEAD.headerSize)
    }

    private mutating func open(_ segment: [UInt8], last: Bool) throws(EncryptionError) -> [UInt8] {
        guard let key else { return [] }
        if let misplaced {
            // The segment before this one belonged later in the stream. If this one follows it
            // there, the stream skipped ahead: segments are gone. If it is one of those skipped,
            // they were moved.
            func opens(_ index: UInt32) -> Bool {
                Self.open(segment, key: key, prefix: noncePrefix, index: index, last: false) != nil
                    || Self.open(segment, key: key, prefix: noncePrefix, index: index, last: true) != nil
            }
            let (next, overflow) = misplaced.found.addingReportingOverflow(1)
            if !overflow, opens(next) {
                return try fail(.segmentMissing, "segment \(misplaced.expected) is missing: segment \(misplaced.found) came in its place")
            }
            if (misplaced.expected..<misplaced.found).contains(where: opens) {
                return try fail(.segmentsReordered, "segment \(misplaced.found) came before segment \(misplaced.expected): segments are out of order")
            }
            return try fail(.segmentMissing, "segment \(misplaced.expected) is missing: segment \(misplaced.found) came in its place")
        }
        if let plaintext = Self.open(segment, key: key, prefix: noncePrefix, index: index, last: last) {
            index &+= 1
            return plaintext
        }
        // Say why: the segment is the final one too early or too late, or it belongs elsewhere
        // in the stream, or it does not open at all.
        if !last, Self.open(segment, key: key, prefix: noncePrefix, index: index, last: true) != nil {
            return try fail(.trailingData, "segment \(index) is the stream's final segment, and more bytes follow it")
        }
        if last, Self.open(segment, key: key, prefix: noncePrefix, index: index, last: false) != nil {
            return try fail(.truncated, "the stream ends after segment \(index), which is not its final segment")
        }
        for distance in 1...Self.probeWindow {
            for flag in [last, !last] {
                let (later, overflow) = index.addingReportingOverflow(distance)
                if !overflow, Self.open(segment, key: key, prefix: noncePrefix, index: later, last: flag) != nil {
                    // A drop or a swap: the next segment tells which.
                    if last { return try fail(.segmentMissing, "segment \(index) is missing: segment \(later) came in its place") }
                    misplaced = (expected: index, found: later)
                    return []
                }
                if distance <= index, Self.open(segment, key: key, prefix: noncePrefix, index: index - distance, last: flag) != nil {
                    return try fail(.segmentsReordered, "segment \(index - distance) came again, or out of order, where segment \(index) was due")
                }
            }
        }
        return try fail(.authenticationFailed, "segment \(index) does not authenticate: changed, or sealed under another key or associated data")
    }

    private static func open(_ segment: [UInt8], key: SymmetricKey, prefix: [UInt8], index: UInt32, last: Bool) -> [UInt8]? {
        guard segment.count >= StreamingAEAD.tagSize else { return nil }
        let split = segment.count - StreamingAEAD.tagSize
        guard let box = try? AES.GCM.SealedBox(
            nonce: StreamingAEAD.nonce(prefix: prefix, index: index, last: last), ciphertext: segment[..<split], tag: segment[split...]
        ) else { return nil }
        return (try? AES.GCM.open(box, using: key)).map { Array($0) }
    }

    private mutating func fail(_ code: ErrorCode<EncryptionErrorDomain>, _ detail: String) throws(EncryptionError) -> [UInt8] {
        failed = true
        buffer.removeAll()
        throw EncryptionError(code, detail)
    }
}

extension ErrorCode where Domain == EncryptionErrorDomain {
    /// A stream's header is not one this kit writes (its length byte).
    public static var invalidHeader: Self { Self("invalidHeader") }
    /// Bytes follow a stream's final segment.
    public static var trailingData: Self { Self("trailingData") }
    /// A stream's next segment is missing: a later one came in its place.
    public static var segmentMissing: Self { Self("segmentMissing") }
    /// A stream's segment came again or out of order.
    public static var segmentsReordered: Self { Self("segmentsReordered") }
}
