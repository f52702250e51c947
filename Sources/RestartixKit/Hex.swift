/// Lower-case hexadecimal text of bytes: digests in manifests, metadata and SigV4's strings.
/// One table walk (`String(format: "%02x")` per byte goes through Foundation's formatter).
package enum Hex {
    package static func lower(_ bytes: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789abcdef".unicodeScalars)
        var out = ""
        for byte in bytes {
            out.unicodeScalars.append(digits[Int(byte >> 4)])
            out.unicodeScalars.append(digits[Int(byte & 0x0F)])
        }
        return out
    }
}
