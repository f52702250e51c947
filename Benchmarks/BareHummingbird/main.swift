// The yardstick of Benchmarks/service-footprint and of the telemetry ingest benchmark: a Hummingbird server with one route,
// `GET /health` answering `{"status":"ok"}` as the Core API's does, and nothing else — no
// middleware, no database, no logging per request. Built exactly as the Core API is
// (`swift build -c release --static-swift-stdlib`), so the difference between the two is what
// the Core API's own stack costs.
import Foundation
import Hummingbird

struct Health: ResponseEncodable {
    let status: String
}

let environment = ProcessInfo.processInfo.environment
let router = Router()
router.get("health") { _, _ in Health(status: "ok") }
// The telemetry ingest benchmark's limit: the body read whole (as the ingest route reads a
// batch), a few bytes answered (as its receipt is), nothing else.
router.put("echo") { request, _ -> Response in
    let body = try await request.body.collect(upTo: 4 << 20)
    return Response(status: .created, body: ResponseBody(byteBuffer: ByteBuffer(string: #"{"bytes":\#(body.readableBytes)}"#)))
}
let app = Application(
    router: router,
    configuration: .init(address: .hostname("127.0.0.1", port: Int(environment["PORT"] ?? "") ?? 8090), serverName: "bare-hummingbird")
)
try await app.runService()
