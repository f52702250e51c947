public import AsyncHTTPClient
public import Foundation
import NIOCore
import NIOHTTP1
public import RestartixKit

/// Daily's REST API (https://docs.daily.co/reference/rest-api), as video appointments use it: a
/// private room per appointment that expires after it, and a meeting token per participant
/// (without one nobody joins a private room).
///
/// Built from the `video` provider's settings (``ProviderSettings/daily(_:)``, resolved through
/// ``ProviderResolver`` on every use, so a rotated key is picked up). Errors are
/// ``ProviderError``s that never carry the key: `unavailable` (transient: unreachable, a
/// timeout, 429 or 5xx — retry later) or `providerRefused` (Daily refused the request: a bad key,
/// a bad argument — retrying the same request will not help).
///
/// ```swift
/// let daily = DailyClient(settings: api)
/// let room = try await daily.createRoom(name: "rx-\(appointment)", notBefore: start, expiresAt: end)
/// let token = try await daily.meetingToken(room: room.name, userName: "Dr. Pop", isOwner: true, expiresAt: end)
/// ```
public struct DailyClient: Sendable {
    /// A room as Daily answers it.
    public struct Room: Sendable, Hashable, Decodable {
        /// The room's name (its path in `url`).
        public let name: String
        /// Where participants join it.
        public let url: String
    }

    let settings: APIKeySettings
    let httpClient: HTTPClient
    let timeout: Duration

    /// A client for `settings` (base URL and key), each call bounded by `timeout`.
    public init(settings: APIKeySettings, httpClient: HTTPClient = .shared, timeout: Duration = .seconds(10)) {
        self.settings = settings
        self.httpClient = httpClient
        self.timeout = timeout
    }

    /// Whether `name` is a room name Daily takes: 1-128 of `A-Z`, `a-z`, `0-9`, `-` and `_`.
    public static func isValidRoomName(_ name: String) -> Bool {
        (1...128).contains(name.utf8.count)
            && name.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x41...0x5A).contains($0) || (0x61...0x7A).contains($0) || $0 == 0x2D || $0 == 0x5F }
    }

    /// Creates the private room `name`, open from `notBefore` (when given) and gone at
    /// `expiresAt` (participants are ejected then). Idempotent by name: when the room exists
    /// already — this call's own earlier attempt, say, whose answer was lost — it is fetched
    /// and returned.
    public func createRoom(name: String, notBefore: Date? = nil, expiresAt: Date) async throws(ProviderError) -> Room {
        guard Self.isValidRoomName(name) else { throw ProviderError(.invalidArgument, "a Daily room name is 1-128 of A-Z, a-z, 0-9, - and _") }
        struct Body: Encodable {
            struct Properties: Encodable {
                let nbf: Int?
                let exp: Int
                let eject_at_room_exp: Bool
            }
            let name: String
            let privacy: String
            let properties: Properties
        }
        let body = Body(
            name: name, privacy: "private",
            properties: .init(nbf: notBefore.map { Int($0.timeIntervalSince1970) }, exp: Int(expiresAt.timeIntervalSince1970), eject_at_room_exp: true)
        )
        let (status, data) = try await send("POST", "/rooms", body: body)
        if status == 200 { return try decode(Room.self, data) }
        // "a room named ... already exists": Daily's answer to a second create of the name.
        if status == 400, let problem = try? JSONDecoder().decode(Problem.self, from: data), problem.error == "invalid-request-error",
            problem.info?.contains("already exists") == true
        {
            let (found, existing) = try await send("GET", "/rooms/\(name)", body: Optional<Body>.none)
            if found == 200 { return try decode(Room.self, existing) }
            throw failure(found, existing)
        }
        throw failure(status, data)
    }

    /// A meeting token for `room`: the participant's name shown in the call, owner rights for
    /// the clinic's specialist, valid from `notBefore` until `expiresAt` (ejected then).
    public func meetingToken(
        room: String, userName: String? = nil, userID: String? = nil, isOwner: Bool = false, notBefore: Date? = nil, expiresAt: Date
    ) async throws(ProviderError) -> String {
        guard Self.isValidRoomName(room) else { throw ProviderError(.invalidArgument, "a Daily room name is 1-128 of A-Z, a-z, 0-9, - and _") }
        struct Body: Encodable {
            struct Properties: Encodable {
                let room_name: String
                let user_name: String?
                let user_id: String?
                let is_owner: Bool
                let nbf: Int?
                let exp: Int
                let eject_at_token_exp: Bool
            }
            let properties: Properties
        }
        let body = Body(properties: .init(
            room_name: room, user_name: userName, user_id: userID, is_owner: isOwner, nbf: notBefore.map { Int($0.timeIntervalSince1970) },
            exp: Int(expiresAt.timeIntervalSince1970), eject_at_token_exp: true
        ))
        let (status, data) = try await send("POST", "/meeting-tokens", body: body)
        guard status == 200 else { throw failure(status, data) }
        struct Token: Decodable { let token: String }
        return try decode(Token.self, data).token
    }

    /// Daily's error body: `error` a stable type, `info` for people.
    struct Problem: Decodable {
        let error: String?
        let info: String?
    }

    /// Sends one request; its status and body (at most 1 MiB).
    func send<Body: Encodable>(_ method: String, _ path: String, body: Body?) async throws(ProviderError) -> (Int, Data) {
        var request = HTTPClientRequest(url: settings.baseURL.absoluteString.trimmingSuffix("/") + path)
        request.method = HTTPMethod(rawValue: method)
        request.headers.add(name: "authorization", value: "Bearer \(settings.apiKey)")
        request.headers.add(name: "accept", value: "application/json")
        if let body {
            request.headers.add(name: "content-type", value: "application/json")
            do { request.body = .bytes(ByteBuffer(bytes: try JSONEncoder().encode(body))) } catch {
                throw ProviderError(.invalidArgument, "the Daily request could not be encoded")
            }
        }
        let host = settings.baseURL.host ?? "Daily"
        do {
            let response = try await httpClient.execute(request, timeout: TimeAmount(timeout))
            let bytes = try await response.body.collect(upTo: 1 << 20)
            return (Int(response.status.code), Data(bytes.readableBytesView))
        } catch {
            throw ProviderError(.unavailable, "Daily at \(host) could not be reached (\(ProviderHealthCheck.reason(error)))")
        }
    }

    /// The error for a non-200 answer: transient for 429 and 5xx, a refusal otherwise, naming
    /// Daily's error type (never its free text, which may quote the request).
    func failure(_ status: Int, _ data: Data) -> ProviderError {
        let type = (try? JSONDecoder().decode(Problem.self, from: data))?.error.map { " (\($0))" } ?? ""
        if status == 429 || status >= 500 {
            return ProviderError(.unavailable, "Daily answered HTTP \(status)\(type); retry later")
        }
        return ProviderError(.providerRefused, "Daily refused the request: HTTP \(status)\(type)")
    }

    func decode<T: Decodable>(_ type: T.Type, _ data: Data) throws(ProviderError) -> T {
        do { return try JSONDecoder().decode(type, from: data) } catch {
            throw ProviderError(.providerRefused, "Daily's answer is not the documented JSON")
        }
    }
}
