public import HTTPTypes
public import Hummingbird
import RestartixKit

/// The token of `Authorization: Bearer <token>`, or 401 `request.missingToken`.
public func bearerToken(_ request: Request) throws -> String {
    try bearerToken(request.headers)
}

/// The token of `Authorization: Bearer <token>` in `headers`, or 401 `request.missingToken`.
public func bearerToken(_ headers: HTTPFields) throws -> String {
    // The scheme is case-insensitive (RFC 9110 §11.1). By UTF-8 bytes: `String.count` would
    // walk every grapheme of the token, on every request.
    let scheme = "bearer ".utf8
    guard let header = headers[.authorization], header.utf8.count > scheme.count,
          header.utf8.prefix(scheme.count).elementsEqual(scheme, by: { $0 == $1 || ($1 >= 0x61 && $0 == $1 - 0x20) })
    else {
        throw RequestError(.missingToken, "send Authorization: Bearer <token>")
    }
    return String(Substring(header.utf8.dropFirst(scheme.count)))
}
