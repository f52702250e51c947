import Foundation
import Hummingbird
import RestartixCrypto
import ServiceSupport

/// The Telemetry API's request context: the request's id and, on the session routes once the
/// token middleware has run, the session the patient's token grants.
struct TelemetryRequestContext: IdentifiedRequestContext {
    var coreContext: CoreRequestContextStorage
    var requestID = ""
    /// The verified session token's claims (session, clinic, patient); nil on public routes.
    var session: SessionTokens.Session?
    let peerAddress: String?
    var clientAddress: String?
    let principal = RequestPrincipal()

    init(source: Source) {
        coreContext = .init(source: source)
        peerAddress = source.channel.remoteAddress?.ipAddress
    }

    /// The largest body of any route: a JSON batch (``SessionRoutes/maximumJSONBatch``). A
    /// larger one is refused with 413 before it is read whole.
    var maxUploadSize: Int { SessionRoutes.maximumJSONBatch }

    /// JSON bodies whose decoding failure names the field and the rule (400 `request.invalidField`).
    var requestDecoder: JSONBodyDecoder { JSONBodyDecoder() }

    /// JSON answers with sorted keys.
    var responseEncoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }
}
