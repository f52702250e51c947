/// The parts both APIs' OpenAPI documents share, written once: the RFC 9457 problem schema
/// (``Problem``, what the shared edge answers every error with) and the `/metrics` and
/// `/openapi.json` operations (``addMetricsRoute(to:registry:access:)``). Each document puts
/// them in with string interpolation; they are JSON members, so each ends without a comma.
public enum ServiceOpenAPI {
    /// `"Problem": {...}`, for `components.schemas`.
    public static let problemSchema = #"""
          "Problem": {
            "type": "object",
            "required": ["type", "title", "status", "detail", "code"],
            "properties": {
              "type": {"type": "string", "description": "urn:restartix:problem:<code>"},
              "title": {"type": "string"},
              "status": {"type": "integer", "minimum": 400, "maximum": 599},
              "detail": {"type": "string", "description": "What went wrong: names fields and rules, never values."},
              "code": {"type": "string", "description": "domain.code, e.g. tenancy.notAMember"},
              "requestId": {"type": "string"}
            }
          }
    """#

    /// `"/metrics": {...}, "/openapi.json": {...}`, for `paths`; their problems refer to
    /// `#/components/responses/Problem`.
    public static let metricsAndDocumentPaths = #"""
        "/metrics": {
          "get": {
            "operationId": "metrics",
            "summary": "Prometheus text exposition: request counts and latency by route and status, and every counter and gauge the service's libraries emit. With METRICS_TOKEN set, only to a bearer of it (401 otherwise); without, to nobody in staging and production and only to this machine's loopback with no forwarding header in development and test (403 otherwise).",
            "responses": {
              "200": {"description": "Metrics.", "content": {"text/plain": {"schema": {"type": "string"}}}},
              "401": {"$ref": "#/components/responses/Problem"},
              "403": {"$ref": "#/components/responses/Problem"},
              "503": {"$ref": "#/components/responses/Problem"}
            }
          }
        },
        "/openapi.json": {
          "get": {
            "operationId": "openapi",
            "summary": "This document.",
            "responses": {
              "200": {"description": "The OpenAPI document.", "content": {"application/json": {"schema": {"type": "object"}}}},
              "503": {"$ref": "#/components/responses/Problem"}
            }
          }
        }
    """#
}
