import RestartixAWS
import RestartixCrypto
import RestartixKit
import RestartixProviders
import RestartixRedis
import RestartixTelemetry
import RestartixTenancy
import Testing

/// Every module's public error has the one shape (RestartixError): a domain, a stable code
/// name, a safe detail, an HTTP status, and the same description format. (Scripts/check-architecture
/// fails the build of a library whose public error type does not conform.)
@Suite("One error shape")
struct ErrorShapeTests {
    /// One error of each type, each with something that must not surface.
    static let samples: [any RestartixError] = [
        DatabaseError(code: .uniqueViolation, sqlState: "23505", constraint: "patients_email_key", table: "patients", detail: nil,
                      serverMessage: "Key (email)=(jane@example.com) already exists."),
        RedisError(serverMessage: "ERR unknown command 'SET', with args beginning with: 'hold:secret-slot'"),
        AWSError(.service(type: "ThrottlingException", status: 400), "rate exceeded"),
        TenancyError(.notAMember, "the principal is not a member of the organization"),
        PrincipalError(.keysUnavailable, "the key set could not be fetched"),
        SignatureError(.insufficientScope, "the token does not grant the scope this endpoint requires"),
        EncryptionError(.keyringUnavailable, "ENCRYPTION_KEYS is not set"),
        ProviderError(.unavailable, "the registry could not be read"),
        UsageError(.quotaExceeded, "the quota for video is reached"),
        TelemetryError(.tooLarge, "the blob is over 64 MiB"),
    ]

    @Test("domains are distinct, descriptions are `domain.code: detail`, statuses are errors")
    func shape() {
        let domains = Self.samples.map { type(of: $0).domain }
        #expect(Set(domains).count == Self.samples.count, "\(domains)")
        for error in Self.samples {
            #expect(error.identifier == "\(type(of: error).domain).\(error.codeName)")
            #expect(error.description.hasPrefix(error.identifier + ": ") || error.description.hasPrefix(error.identifier + " "), "\(error)")
            #expect((400...599).contains(error.httpStatus), "\(error.identifier)")
            #expect(!error.codeName.isEmpty && !error.codeName.contains(" "), "\(error.identifier)")
            #expect(!error.safeDetail.isEmpty)
        }
    }

    @Test("the server's own words (which can quote data) reach neither the detail nor the description")
    func noServerText() {
        for error in Self.samples {
            for leak in ["jane@example.com", "secret-slot"] {
                #expect(!error.description.contains(leak), "\(error.identifier)")
                #expect(!error.safeDetail.contains(leak), "\(error.identifier)")
            }
        }
    }

    @Test("status and transience per code, as a service maps them")
    func statuses() {
        let expected: [(any RestartixError, Int, Bool)] = [
            (DatabaseError(code: .uniqueViolation), 409, false),
            (DatabaseError(code: .checkViolation), 422, false),
            (DatabaseError(code: .rowLevelSecurityViolation), 403, false),
            (DatabaseError(code: .poolTimeout), 503, true),
            (DatabaseError(code: .syntaxError), 500, false),
            (RedisError(.unavailable, "down"), 503, true),
            (RedisError(.invalidArgument, "empty key"), 500, false),
            (AWSError(.service(type: "ThrottlingException", status: 400), "slow down"), 502, true),
            (AWSError(.service(type: "AccessDeniedException", status: 400), "no"), 502, false),
            (AWSError(.unreachable, "timeout"), 503, true),
            (TenancyError(.invalidContext, "bad id"), 400, false),
            (TenancyError(.sessionNotOpen, "closed"), 403, false),
            (TenancyError(.unsafeDatabase, "no RLS"), 500, false),
            (PrincipalError(.unauthorizedParty, "azp"), 403, false),
            (PrincipalError(.keysUnavailable, "jwks"), 503, true),
            (SignatureError(.insufficientScope, "scope"), 403, false),
            (EncryptionError(.invalidInput, "too large"), 422, false),
            (EncryptionError(.authenticationFailed, "tampered"), 500, false),
            (ProviderError(.notFound, "none"), 404, false),
            (UsageError(.quotaExceeded, "quota"), 429, false),
            (TelemetryError(.wrongLandmarkCount, "frame 3"), 422, false),
        ]
        for (error, status, transient) in expected {
            #expect(error.httpStatus == status, "\(error.identifier)")
            #expect(error.isTransient == transient, "\(error.identifier)")
        }
    }
}
