import Crypto
public import Foundation

extension AWSSigner {
    /// The payload marker of a chunked upload signed chunk by chunk.
    public static let streamingPayload = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"

    /// Signs a chunked upload (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD`, Amazon S3's "Transferring
    /// payload in multiple chunks"): the body streams in chunks whose sizes are fixed up front
    /// (every chunk `chunkSize` bytes but the last), each signed with the previous chunk's
    /// signature, the first with the request's own (the seed). No chunk needs the next one,
    /// and memory stays one chunk whatever the object's size.
    ///
    /// Returns every header to send (`content-encoding: aws-chunked`,
    /// `x-amz-decoded-content-length`, `content-length` of the framed body, the signed ones)
    /// and the ``ChunkedPayload`` that frames each chunk: send `chunk(_:)` of every chunk, then
    /// `finalChunk()`. `chunkSize` is at least 8 KiB, as S3 requires.
    public func signChunked(
        _ method: String, url: URL, headers: [(String, String)] = [], decodedContentLength: Int, chunkSize: Int = 64 * 1024, date: Date = Date()
    ) throws(AWSError) -> (headers: [(String, String)], payload: ChunkedPayload) {
        guard chunkSize >= 8 * 1024 else { throw AWSError(.configuration, "a signed chunk is at least 8 KiB") }
        guard decodedContentLength >= 0 else { throw AWSError(.configuration, "a content length is not negative") }
        let framed = Self.chunkedContentLength(decodedContentLength: decodedContentLength, chunkSize: chunkSize)
        let reserved: Set<String> = ["content-encoding", "content-length", "x-amz-decoded-content-length"]
        let given = headers.filter { !reserved.contains($0.0.lowercased()) }
        let all = sign(
            method, url: url,
            headers: given + [("content-encoding", "aws-chunked"), ("content-length", String(framed)), ("x-amz-decoded-content-length", String(decodedContentLength))],
            payloadHash: Self.streamingPayload, date: date
        )
        let authorization = all.first { $0.0 == "authorization" }?.1 ?? ""
        let seed = String(authorization.split(separator: "=").last ?? "")
        let amzDate = Self.amzDate(date)
        let day = String(amzDate.prefix(8))
        return (all, ChunkedPayload(
            signingKey: signingKey(day: day), amzDate: amzDate, scope: "\(day)/\(region)/\(service)/aws4_request", previous: seed,
            chunkSize: chunkSize, remaining: decodedContentLength
        ))
    }

    /// The `content-length` of a chunked upload of `decodedContentLength` bytes in chunks of
    /// `chunkSize`: each chunk's data, its hex size, `;chunk-signature=`, the signature and two
    /// line ends, and the final empty chunk.
    public static func chunkedContentLength(decodedContentLength: Int, chunkSize: Int) -> Int {
        func framing(_ size: Int) -> Int { String(size, radix: 16).utf8.count + ";chunk-signature=".utf8.count + 64 + 4 + size }
        let full = decodedContentLength / chunkSize, rest = decodedContentLength % chunkSize
        return full * framing(chunkSize) + (rest > 0 ? framing(rest) : 0) + framing(0)
    }

    /// The framing and signatures of one chunked upload, in order. Refuses a chunk of the wrong
    /// size (every chunk `chunkSize` but the last) or more data than announced: the
    /// `content-length` was signed.
    public struct ChunkedPayload: Sendable {
        let signingKey: SymmetricKey
        let amzDate: String
        let scope: String
        /// The signature of the last chunk framed (the seed before the first).
        public private(set) var previous: String
        let chunkSize: Int
        var remaining: Int

        /// The chunk `data`, framed and signed: `<hex size>;chunk-signature=<sig>\r\n<data>\r\n`.
        public mutating func chunk(_ data: some DataProtocol) throws(AWSError) -> Data {
            let size = data.count
            guard size > 0, size <= remaining, size == chunkSize || size == remaining else {
                throw AWSError(.configuration, "a chunk of \(size) bytes does not fit the announced length (chunks of \(chunkSize) bytes, \(remaining) left)")
            }
            remaining -= size
            return frame(Data(data))
        }

        /// The final, empty chunk, once every byte has been framed.
        public mutating func finalChunk() throws(AWSError) -> Data {
            guard remaining == 0 else { throw AWSError(.configuration, "\(remaining) announced bytes were not sent") }
            return frame(Data())
        }

        mutating func frame(_ data: Data) -> Data {
            let empty = AWSSigner.hex(SHA256.hash(data: Data()))
            let stringToSign = ["AWS4-HMAC-SHA256-PAYLOAD", amzDate, scope, previous, empty, AWSSigner.hex(SHA256.hash(data: data))].joined(separator: "\n")
            let signature = AWSSigner.hex(HMAC<SHA256>.authenticationCode(for: Data(stringToSign.utf8), using: signingKey))
            previous = signature
            var out = Data("\(String(data.count, radix: 16));chunk-signature=\(signature)\r\n".utf8)
            out.append(data)
            out.append(Data("\r\n".utf8))
            return out
        }
    }
}
