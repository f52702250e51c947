public import Foundation
public import Hummingbird
public import HTTPTypes
import Logging
public import RestartixKit

/// An error answer as RFC 9457 `application/problem+json`: the one body every error of the
/// services has. `code` is the error's `domain.code` (``RestartixError/identifier``),
/// `detail` its safe detail (kinds, fields and rules, never a value, a token or a patient's
/// data), `requestId` the request's id (also in the `X-Request-Id` header).
public struct Problem: Codable, Sendable, Equatable {
    /// A URI naming the problem kind: `urn:restartix:problem:<domain.code>`.
    public var type: String
    /// A short summary of the kind: the status's reason phrase.
    public var title: String
    /// The HTTP status.
    public var status: Int
    /// What went wrong, safely: never a value.
    public var detail: String
    /// The error's code, `domain.code` (`tenancy.notAMember`, `http.notFound`).
    public var code: String
    /// The request's id.
    public var requestId: String?

    /// The media type of a problem body.
    public static let mediaType = "application/problem+json"

    /// A problem with `status`, `code` and a safe `detail`.
    public init(status: Int, code: String, detail: String, requestId: String? = nil) {
        self.type = "urn:restartix:problem:\(code)"
        self.title = Self.reasonPhrase(status)
        self.status = status
        self.detail = detail
        self.code = code
        self.requestId = requestId
    }

    /// The problem for a kit error: its status, identifier and safe detail.
    public init(_ error: any RestartixError, requestId: String? = nil) {
        self.init(status: error.httpStatus, code: error.identifier, detail: error.safeDetail, requestId: requestId)
    }

    /// The problem for any error a handler or middleware threw: a kit error as itself; a
    /// Hummingbird HTTP error (404, 413, a body that does not decode) with its status and its
    /// status and a fixed detail (its message can quote a value); anything else a 500 that
    /// says nothing more (the log line has its type).
    public init(for error: any Error, requestId: String?) {
        switch error {
        case let error as any RestartixError:
            self.init(error, requestId: requestId)
        case let error as HTTPError:
            // Hummingbird's own messages can quote what was sent (a body that does not decode
            // names the invalid value): the detail says the rule, never the message.
            let detail = error.status == .badRequest
                ? "the request is not of the documented shape (see /openapi.json)"
                : Self.reasonPhrase(Int(error.status.code))
            self.init(status: Int(error.status.code), code: "http.\(Self.codeName(error.status))", detail: detail, requestId: requestId)
        case let error as any HTTPResponseError:
            self.init(status: Int(error.status.code), code: "http.\(Self.codeName(error.status))", detail: error.status.reasonPhrase, requestId: requestId)
        default:
            self.init(status: 500, code: "internal.unexpected", detail: "the request could not be completed", requestId: requestId)
        }
    }

    /// The reason phrase of `code` (`HTTPResponse.Status(code:)` alone carries none).
    public static func reasonPhrase(_ code: Int) -> String {
        let known: [HTTPResponse.Status] = [
            .badRequest, .unauthorized, .forbidden, .notFound, .methodNotAllowed, .notAcceptable, .requestTimeout, .conflict, .gone,
            .lengthRequired, .preconditionFailed, .contentTooLarge, .uriTooLong, .unsupportedMediaType, .unprocessableContent, .preconditionRequired,
            .tooManyRequests, .requestHeaderFieldsTooLarge, .internalServerError, .notImplemented, .badGateway, .serviceUnavailable, .gatewayTimeout,
        ]
        return known.first { Int($0.code) == code }?.reasonPhrase ?? "Error"
    }

    /// `http.notFound`, `http.contentTooLarge`: the status's reason phrase in lower camel case.
    public static func codeName(_ status: HTTPResponse.Status) -> String {
        let phrase = status.reasonPhrase.isEmpty ? reasonPhrase(Int(status.code)) : status.reasonPhrase
        let words = phrase.split(whereSeparator: { !$0.isLetter && !$0.isNumber }).map(String.init)
        guard let first = words.first else { return "status\(status.code)" }
        return first.lowercased() + words.dropFirst().map { $0.prefix(1).uppercased() + $0.dropFirst().lowercased() }.joined()
    }

    /// The response: the status, `Content-Type: application/problem+json`, the body, and
    /// whatever extra headers the caller adds (`Allow`, `Retry-After`).
    public func response(headers extra: HTTPFields = [:]) -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let body = (try? encoder.encode(self)) ?? Data(#"{"status":500}"#.utf8)
        var headers: HTTPFields = [.contentType: Self.mediaType]
        headers.append(contentsOf: extra)
        return Response(status: HTTPResponse.Status(code: status), headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: body)))
    }
}

/// An error whose answer carries headers besides the problem body (`Retry-After`,
/// `RateLimit-*`, `Allow`): the edge adds them to the problem response.
public protocol ProblemHeaders: Error {
    /// The headers of the answer.
    var problemHeaders: HTTPFields { get }
}

/// An error in the request itself, found at the edge: no credentials, a field that breaks its
/// rule. `detail` names the field and the rule, never the value.
public typealias RequestError = DomainError<RequestErrorDomain>

/// The `request` error domain.
public enum RequestErrorDomain: ErrorDomain {
    public static let name = "request"

    public static func httpStatus(for code: ErrorCode<RequestErrorDomain>) -> Int {
        switch code {
        case .missingToken: 401
        case .conflict: 409
        case .notFound: 404
        default: 400
        }
    }
}

extension ErrorCode where Domain == RequestErrorDomain {
    /// No usable `Authorization: Bearer` header (401).
    public static var missingToken: Self { Self("missingToken") }
    /// A header, path or query parameter, or a body field, breaks its rule (400).
    public static var invalidField: Self { Self("invalidField") }
    /// A well-formed request the current state refuses (409).
    public static var conflict: Self { Self("conflict") }
    /// Nothing is there (404).
    public static var notFound: Self { Self("notFound") }
}
