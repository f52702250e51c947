import CompressNIO
import NIOCore
import RestartixCore

/// gzip, streamed, over compress-nio (zlib): what the audit archive writes its lines through.
/// compress-nio works on `ByteBuffer`s with an output buffer the caller sizes; these loop over
/// its `bufferOverflow` so callers hand in and get back plain byte arrays of any size.
package final class GzipCompressor {
    private let zlib: ZlibCompressor
    private var ended = false

    package init() throws(BackupError) {
        do { zlib = try ZlibCompressor(algorithm: .gzip) } catch {
            throw BackupError(.invalidInput, "zlib refused to start a gzip stream")
        }
    }

    /// Compresses `bytes` onto `out` (zlib may hold some back until ``finish(into:)``).
    package func compress(_ bytes: [UInt8], into out: inout [UInt8]) throws(BackupError) {
        var input = ByteBuffer(bytes: bytes)
        while input.readableBytes > 0 {
            var output = ByteBufferAllocator().buffer(capacity: 256 << 10)
            do { try zlib.deflate(from: &input, to: &output, flush: .no) } catch let error as CompressNIOError where error == .bufferOverflow {
                // The output filled: take it and go on with what is left of the input.
            } catch {
                throw BackupError(.invalidInput, "gzip compression failed")
            }
            out += output.readableBytesView
        }
    }

    /// Ends the stream: what zlib held back and the gzip trailer.
    package func finish(into out: inout [UInt8]) throws(BackupError) {
        guard !ended else { return }
        ended = true
        var empty = ByteBuffer()
        while true {
            var output = ByteBufferAllocator().buffer(capacity: 256 << 10)
            do {
                try zlib.deflate(from: &empty, to: &output, flush: .finish)
                out += output.readableBytesView
                return
            } catch let error as CompressNIOError where error == .bufferOverflow {
                out += output.readableBytesView
            } catch {
                throw BackupError(.invalidInput, "gzip compression failed")
            }
        }
    }
}

/// gzip, streamed back: one gzip member; bytes after its end are refused.
package final class GzipDecompressor {
    private let zlib: ZlibDecompressor

    package init() throws(BackupError) {
        do { zlib = try ZlibDecompressor(algorithm: .gzip) } catch {
            throw BackupError(.invalidInput, "zlib refused to start a gzip stream")
        }
    }

    /// Decompresses `bytes` onto `out`.
    package func decompress(_ bytes: [UInt8], into out: inout [UInt8]) throws(BackupError) {
        var input = ByteBuffer(bytes: bytes)
        while input.readableBytes > 0 {
            var output = ByteBufferAllocator().buffer(capacity: 1 << 20)
            do {
                try zlib.inflate(from: &input, to: &output)
                // A return with input left is the stream's end (zlib takes every byte it can
                // otherwise): what follows is not part of it.
                if input.readableBytes > 0 {
                    throw BackupError(.manifestMismatch, "bytes follow the end of the compressed stream")
                }
            } catch let error as CompressNIOError where error == .bufferOverflow || error == .inputBufferOverflow {
                // The output filled (go on with the rest), or zlib wants the next piece of input.
            } catch let error as BackupError {
                throw error
            } catch {
                throw BackupError(.manifestMismatch, "the compressed stream is corrupt")
            }
            out += output.readableBytesView
        }
    }
}
