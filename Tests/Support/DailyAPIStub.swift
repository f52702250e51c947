public import Foundation
import Synchronization

/// A local Daily REST API for the tests (no local Daily exists): the room and meeting-token
/// endpoints the platform uses, answering as Daily documents them
/// (https://docs.daily.co/reference/rest-api) and refusing, as Daily would, every request that
/// breaks the documented rules — a missing or wrong `Authorization: Bearer` key, a body that is
/// not JSON, a room name outside `A-Za-z0-9_-` (1-128), an unknown privacy, a time that is not
/// an integer of Unix seconds or an `exp` in the past, a second room of one name. It keeps the
/// rooms and tokens it made, so a test can count them, and fails the next requests on demand.
public final class DailyAPIStub: Sendable {
    /// A room the stub made.
    public struct Room: Sendable, Hashable {
        public let name: String
        public let privacy: String
        public let notBefore: Int?
        public let expiresAt: Int
    }

    /// A token the stub issued.
    public struct Token: Sendable, Hashable {
        public let room: String
        public let userName: String?
        public let userID: String?
        public let isOwner: Bool
        public let notBefore: Int?
        public let expiresAt: Int
    }

    struct State {
        var rooms: [String: Room] = [:]
        var tokens: [Token] = []
        /// Requests refused so far for breaking the documented rules, with why.
        var violations: [String] = []
        /// The next requests answered with this status (an outage), counting down.
        var failing: (status: Int, remaining: Int)?
    }

    /// The API key requests must carry.
    public let apiKey: String
    private let state = Mutex(State())
    private let server = Mutex<StubHTTPServer?>(nil)

    /// The base URL to configure (`http://127.0.0.1:<port>`; Daily's is `https://api.daily.co/v1`).
    public var baseURL: String { server.withLock { $0!.baseURL } }
    public var rooms: [String: Room] { state.withLock { $0.rooms } }
    public var tokens: [Token] { state.withLock { $0.tokens } }
    /// The requests refused for breaking a documented rule (a client bug, unless a test meant it).
    public var violations: [String] { state.withLock { $0.violations } }

    private init(apiKey: String) { self.apiKey = apiKey }

    /// Starts a stub accepting `apiKey`.
    public static func start(apiKey: String = "daily-test-key-0123456789") async throws -> DailyAPIStub {
        let stub = DailyAPIStub(apiKey: apiKey)
        let server = try await StubHTTPServer.start { [stub] request in stub.answer(request) }
        stub.server.withLock { $0 = server }
        return stub
    }

    public func stop() { server.withLock { $0?.stop() } }

    /// Answers the next `count` requests with `status` (Daily down or limiting).
    public func fail(next count: Int, status: Int = 503) {
        state.withLock { $0.failing = (status, count) }
    }

    func answer(_ request: StubHTTPServer.Request) -> StubHTTPServer.Reply {
        state.withLock { state in
            if let failing = state.failing, failing.remaining > 0 {
                state.failing = (failing.status, failing.remaining - 1)
                return .json(#"{"error":"server-error","info":"injected outage"}"#, status: failing.status)
            }
            func refuse(_ why: String, status: Int = 400, error: String = "invalid-request-error") -> StubHTTPServer.Reply {
                state.violations.append("\(request.method) \(request.path): \(why)")
                return .json(#"{"error":"\#(error)","info":"\#(why)"}"#, status: status)
            }
            guard let authorization = request.headers["authorization"], authorization.hasPrefix("Bearer ") else {
                return refuse("no Authorization: Bearer header", error: "authorization-header-error")
            }
            guard authorization.dropFirst(7) == apiKey else { return refuse("the API key is not valid", status: 401, error: "authentication-error") }
            let path = request.path.split(separator: "?", maxSplits: 1).first.map(String.init) ?? request.path
            func object() -> [String: JSONValue]? {
                guard request.headers["content-type"]?.hasPrefix("application/json") == true,
                    case .object(let object)? = try? JSONDecoder().decode(JSONValue.self, from: request.body)
                else { return nil }
                return object
            }
            // Unix seconds as JSON integers (a fraction, a string or a boolean is not one):
            // .none when present and not one, .some(nil) when absent.
            func seconds(_ value: JSONValue?) -> Int?? {
                guard let value else { return .some(nil) }
                guard case .integer(let seconds) = value else { return .none }
                return .some(seconds)
            }
            let now = Int(Date().timeIntervalSince1970)
            switch (request.method, path) {
            case ("POST", "/rooms"):
                guard let body = object() else { return refuse("the body is not a JSON object", error: "json-parsing-error") }
                guard Set(body.keys).isSubset(of: ["name", "privacy", "properties"]) else { return refuse("unknown top-level parameter") }
                guard case .string(let name)? = body["name"], DailyAPIStub.isRoomName(name) else { return refuse("name must be 1-128 of A-Z, a-z, 0-9, - and _") }
                var privacy = "public"
                if let given = body["privacy"] {
                    guard case .string(let text) = given, ["public", "private"].contains(text) else { return refuse("privacy must be public or private") }
                    privacy = text
                }
                guard case .object(let properties)? = body["properties"] ?? .object([:]) else { return refuse("properties must be an object") }
                guard case .some(let exp?) = seconds(properties["exp"]), exp > now else { return refuse("properties.exp must be a future Unix time in whole seconds") }
                guard case .some(let nbf) = seconds(properties["nbf"]) else { return refuse("properties.nbf must be a Unix time in whole seconds") }
                guard state.rooms[name] == nil else { return .json(#"{"error":"invalid-request-error","info":"a room named \#(name) already exists"}"#, status: 400) }
                let room = Room(name: name, privacy: privacy, notBefore: nbf, expiresAt: exp)
                state.rooms[name] = room
                return .json(DailyAPIStub.json(room))
            case ("GET", let path) where path.hasPrefix("/rooms/"):
                let name = String(path.dropFirst("/rooms/".count))
                guard let room = state.rooms[name] else { return .json(#"{"error":"not-found","info":"room \#(name) was not found"}"#, status: 404) }
                return .json(DailyAPIStub.json(room))
            case ("POST", "/meeting-tokens"):
                guard let body = object(), case .object(let properties)? = body["properties"] else {
                    return refuse("the body must be a JSON object with properties", error: "json-parsing-error")
                }
                guard case .string(let room)? = properties["room_name"], DailyAPIStub.isRoomName(room) else {
                    return refuse("properties.room_name should always be set to control access to a meeting")
                }
                guard case .some(let exp?) = seconds(properties["exp"]), exp > now else { return refuse("properties.exp must be a future Unix time in whole seconds") }
                guard case .some(let nbf) = seconds(properties["nbf"]) else { return refuse("properties.nbf must be a Unix time in whole seconds") }
                var isOwner = false
                if let owner = properties["is_owner"] {
                    guard case .boolean(let flag) = owner else { return refuse("properties.is_owner must be a boolean") }
                    isOwner = flag
                }
                var userName: String?
                if let name = properties["user_name"] {
                    guard case .string(let text) = name else { return refuse("properties.user_name must be a string") }
                    userName = text
                }
                var userID: String?
                if let id = properties["user_id"] {
                    // Daily: "user_id: the user's ID for this meeting session", at most 36 characters.
                    guard case .string(let text) = id, (1...36).contains(text.count) else { return refuse("properties.user_id must be a string of at most 36 characters") }
                    userID = text
                }
                let token = Token(room: room, userName: userName, userID: userID, isOwner: isOwner, notBefore: nbf, expiresAt: exp)
                state.tokens.append(token)
                return .json(#"{"token":"eyJhbGciOiJIUzI1NiJ9.\#(state.tokens.count).stub"}"#)
            default:
                return .json(#"{"error":"not-found","info":"no such endpoint"}"#, status: 404)
            }
        }
    }

    static func isRoomName(_ name: String) -> Bool {
        (1...128).contains(name.utf8.count)
            && name.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x41...0x5A).contains($0) || (0x61...0x7A).contains($0) || $0 == 0x2D || $0 == 0x5F }
    }

    static func json(_ room: Room) -> String {
        let nbf = room.notBefore.map { #","nbf":\#($0)"# } ?? ""
        return #"{"id":"\#(UUID().uuidString.lowercased())","name":"\#(room.name)","api_created":true,"privacy":"\#(room.privacy)","url":"https://restartix-test.daily.co/\#(room.name)","created_at":"2026-12-05T10:00:00.000Z","config":{"exp":\#(room.expiresAt)\#(nbf)}}"#
    }
}

/// A JSON value with its kind kept (JSONSerialization does not tell an integer from a
/// boolean on every platform), for checking request bodies against a documented shape.
enum JSONValue: Decodable, Sendable {
    case null, boolean(Bool), integer(Int), number(Double), string(String), array([JSONValue]), object([String: JSONValue])

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() { self = .null }
        else if let value = try? container.decode(Bool.self) { self = .boolean(value) }
        else if let value = try? container.decode(Int.self) { self = .integer(value) }
        else if let value = try? container.decode(Double.self) { self = .number(value) }
        else if let value = try? container.decode(String.self) { self = .string(value) }
        else if let value = try? container.decode([JSONValue].self) { self = .array(value) }
        else { self = .object(try container.decode([String: JSONValue].self)) }
    }
}
