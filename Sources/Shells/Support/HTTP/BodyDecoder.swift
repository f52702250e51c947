public import Foundation
public import Hummingbird
import RestartixKit

/// JSON request bodies whose decoding failure is a 400 `request.invalidField` that names the
/// field and the rule: `reason is required`, `duration_seconds must be an integer`,
/// `patient_id must not be null`, `the body is not JSON`. Never the value. Hummingbird's own
/// `JSONDecoder` conformance answers every failure with one anonymous 400; this one is the same
/// decoder with the failure translated, so a client learns what to fix.
///
/// A context adopts it with `var requestDecoder: JSONBodyDecoder { JSONBodyDecoder() }`.
/// Optional fields keep Swift's rule (absent or `null` is `nil`); a body type whose document
/// forbids `null` decodes with ``JSONBodyDecoder/optional(_:_:in:)``.
public struct JSONBodyDecoder: RequestDecoder {
    public init() {}

    public func decode<T: Decodable>(_ type: T.Type, from request: Request, context: some RequestContext) async throws -> T {
        let buffer = try await request.body.collect(upTo: context.maxUploadSize)
        do {
            return try JSONDecoder().decode(T.self, from: Data(buffer.readableBytesView))
        } catch let error as DecodingError {
            throw RequestError(.invalidField, Self.detail(error))
        }
    }

    /// A present key decoded as `T`; `nil` only when the key is absent (`null` is refused with
    /// "must not be null": the document's optional fields are absent or of their type).
    public static func optional<T: Decodable, Key: CodingKey>(_ type: T.Type, _ key: Key, in container: KeyedDecodingContainer<Key>) throws -> T? {
        guard container.contains(key) else { return nil }
        return try container.decode(T.self, forKey: key)
    }

    /// The failure as "field rule": the path of the field from the decoder's coding path, the
    /// rule from the failure's kind.
    static func detail(_ error: DecodingError) -> String {
        switch error {
        case .keyNotFound(let key, let context):
            return "\(path(context.codingPath + [key])) is required"
        case .valueNotFound(_, let context):
            return context.codingPath.isEmpty ? "the body must not be null" : "\(path(context.codingPath)) must not be null"
        case .typeMismatch(let type, let context):
            return context.codingPath.isEmpty ? "the body must be \(kind(type))" : "\(path(context.codingPath)) must be \(kind(type))"
        case .dataCorrupted(let context):
            return context.codingPath.isEmpty ? "the body is not JSON" : "\(path(context.codingPath)) is not a valid value"
        @unknown default:
            return "the body is not of the documented shape (see /openapi.json)"
        }
    }

    /// `items[2].name`. A field is named only when its key is one of a body type's own
    /// `CodingKeys`; a key the client chose (a dictionary's: a secret's name, an e-mail) is
    /// `[key]`, since it can hold data.
    static func path(_ keys: [any CodingKey]) -> String {
        var text = ""
        for key in keys {
            if isDeclared(key) {
                text += text.isEmpty ? key.stringValue : ".\(key.stringValue)"
            } else if let index = key.intValue {
                text += "[\(index)]"
            } else {
                text += "[key]"
            }
        }
        return text.isEmpty ? "the body" : text
    }

    /// A key of a Codable type's own (`CodingKeys`, synthesized or written), not one the
    /// decoder made for an array index or a dictionary's key.
    static func isDeclared(_ key: any CodingKey) -> Bool {
        String(reflecting: type(of: key)).hasSuffix(".CodingKeys")
    }

    /// What JSON value `type` wants, in words.
    static func kind(_ type: Any.Type) -> String {
        switch type {
        case is String.Type, is Substring.Type, is UUID.Type: "a string"
        case is Bool.Type: "true or false"
        case is Int.Type, is Int64.Type, is Int32.Type, is UInt.Type, is UInt64.Type, is UInt32.Type: "an integer"
        case is Double.Type, is Float.Type, is Decimal.Type: "a number"
        case is [String: Any].Type, is [String: String].Type: "an object"
        default:
            String(describing: type).hasPrefix("Array<") ? "an array" : (String(describing: type).hasPrefix("Dictionary<") ? "an object" : "of the documented type")
        }
    }
}
