import Foundation
import RestartixKit
import RestartixProviders
import RestartixTestSupport
import Testing

/// DailyClient against the local Daily stub, which refuses what Daily's documentation refuses:
/// rooms and tokens as documented, a retried create that finds its room, and every failure typed
/// (transient or refused) without the key.
@Suite("Daily client", .timeLimit(.minutes(3)))
struct DailyClientTests {
    static func client(_ stub: DailyAPIStub, key: String? = nil, timeout: Duration = .seconds(5)) -> DailyClient {
        DailyClient(settings: APIKeySettings(baseURL: URL(string: stub.baseURL)!, apiKey: key ?? stub.apiKey), timeout: timeout)
    }

    @Test("a private room that expires after the appointment, and owner and guest tokens for it, as the documentation asks")
    func roomsAndTokens() async throws {
        let stub = try await DailyAPIStub.start()
        defer { stub.stop() }
        let daily = Self.client(stub)
        let start = Date().addingTimeInterval(3600).rounded, end = start.addingTimeInterval(1800)
        let room = try await daily.createRoom(name: "rx-0193b000-appointment_1", notBefore: start.addingTimeInterval(-600), expiresAt: end.addingTimeInterval(900))
        #expect(room.name == "rx-0193b000-appointment_1" && room.url == "https://restartix-test.daily.co/rx-0193b000-appointment_1")
        let made = try #require(stub.rooms[room.name])
        #expect(made.privacy == "private" && made.notBefore == Int(start.timeIntervalSince1970) - 600 && made.expiresAt == Int(end.timeIntervalSince1970) + 900)
        let owner = try await daily.meetingToken(room: room.name, userName: "Dr. Ana Pop", isOwner: true, expiresAt: end)
        let guest = try await daily.meetingToken(room: room.name, userName: "Maria I.", expiresAt: end)
        #expect(!owner.isEmpty && owner != guest)
        #expect(stub.tokens.map(\.isOwner) == [true, false] && stub.tokens.map(\.userName) == ["Dr. Ana Pop", "Maria I."])
        #expect(stub.tokens.allSatisfy { $0.room == room.name && $0.expiresAt == Int(end.timeIntervalSince1970) })
        #expect(stub.violations.isEmpty, "\(stub.violations)")
    }

    @Test("a create retried after its answer was lost returns the room it made: one room")
    func idempotentCreate() async throws {
        let stub = try await DailyAPIStub.start()
        defer { stub.stop() }
        let daily = Self.client(stub)
        let expires = Date().addingTimeInterval(7200)
        let first = try await daily.createRoom(name: "rx-retried", expiresAt: expires)
        let again = try await daily.createRoom(name: "rx-retried", expiresAt: expires)
        #expect(first == again && stub.rooms.count == 1)
    }

    @Test("failures are typed: an outage or a rate limit is transient, a bad key or argument is refused; the key never shows")
    func failures() async throws {
        let stub = try await DailyAPIStub.start()
        let expires = Date().addingTimeInterval(3600)
        for status in [500, 503, 429] {
            stub.fail(next: 1, status: status)
            let error = await #expect(throws: ProviderError.self) { try await Self.client(stub).createRoom(name: "rx-outage", expiresAt: expires) }
            #expect(error?.code == .unavailable && error?.isTransient == true && error?.detail.contains("HTTP \(status)") == true, "\(String(describing: error))")
        }
        let wrongKey = "wrong-daily-key-should-never-show"
        let refused = await #expect(throws: ProviderError.self) { try await Self.client(stub, key: wrongKey).createRoom(name: "rx-bad-key", expiresAt: expires) }
        #expect(refused?.code == .providerRefused && refused?.isTransient == false && refused?.httpStatus == 502)
        #expect(refused?.detail.contains("authentication-error") == true && refused?.description.contains(wrongKey) == false)
        // An expiry in the past is Daily's to refuse (the stub does, as documented).
        let past = await #expect(throws: ProviderError.self) { try await Self.client(stub).createRoom(name: "rx-past", expiresAt: Date().addingTimeInterval(-60)) }
        #expect(past?.code == .providerRefused && past?.detail.contains("invalid-request-error") == true)
        // A name Daily cannot take is refused here, before any request.
        let before = stub.violations.count
        let named = await #expect(throws: ProviderError.self) { try await Self.client(stub).createRoom(name: "rx/../rooms", expiresAt: expires) }
        #expect(named?.code == .invalidArgument && stub.violations.count == before)
        #expect(stub.rooms.isEmpty)
        // Daily unreachable (or not answering in time): transient.
        stub.stop()
        try await Task.sleep(for: .milliseconds(100))
        let down = await #expect(throws: ProviderError.self) { try await Self.client(stub, timeout: .seconds(1)).meetingToken(room: "rx-any", expiresAt: expires) }
        #expect(down?.code == .unavailable && down?.detail.contains("could not be reached") == true, "\(String(describing: down))")
    }
}

extension Date {
    /// Whole seconds (Daily's times are).
    var rounded: Date { Date(timeIntervalSince1970: timeIntervalSince1970.rounded(.down)) }
}
