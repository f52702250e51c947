/// The Core API's contract: an OpenAPI 3.1 document, served at `GET /openapi.json`. The tests
/// hold the router to it (every route is in the document and every operation is routed) and
/// schemathesis checks live answers against it. Request and response bodies are Codable types
/// beside their routes; this document describes them.
///
/// (The document is written here rather than generated into server stubs by
/// swift-openapi-generator: the generator's build plugin would rebuild OpenAPIKit and Yams in
/// every CI run, and its handlers cannot see Hummingbird's request context, where the request
/// id and the principal live; the route/document test and schemathesis keep the two in step.)
enum OpenAPIDocument {
    static let json = #"""
    {
      "openapi": "3.1.0",
      "info": {
        "title": "RestartiX Core API",
        "version": "0.1.0",
        "description": "The Core API of the RestartiX platform. Errors are RFC 9457 problem+json with the error's code (`domain.code`) and the request's id; every response carries `X-Request-Id`."
      },
      "servers": [{"url": "http://127.0.0.1:8080"}],
      "components": {
        "securitySchemes": {
          "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT", "description": "A Clerk session token, or in development a token of the local development issuer."}
        },
        "schemas": {
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
          },
          "Status": {
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"type": "string", "enum": ["ok", "ready", "unavailable"]}}
          },
          "Me": {
            "type": "object",
            "required": ["organization_id", "user_id", "role"],
            "properties": {
              "organization_id": {"type": "string", "format": "uuid"},
              "user_id": {"type": "string", "format": "uuid"},
              "role": {"type": "string", "enum": ["owner", "admin", "specialist", "assistant", "patient"]}
            }
          }
        },
        "responses": {
          "Problem": {
            "description": "An error, as RFC 9457 problem details.",
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
          }
        }
      },
      "paths": {
        "/health": {
          "get": {
            "operationId": "health",
            "summary": "The process is up.",
            "responses": {
              "200": {"description": "Up.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Status"}}}}
            }
          }
        },
        "/ready": {
          "get": {
            "operationId": "ready",
            "summary": "The database answers and still keeps clinics apart (the tenancy boot check).",
            "responses": {
              "200": {"description": "Ready.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Status"}}}},
              "503": {"description": "Not ready (or maintenance mode, as a problem).", "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/Status"}},
                "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
              }}
            }
          }
        },
        "/v1/me": {
          "get": {
            "operationId": "me",
            "summary": "The tenant context the bearer token resolves to.",
            "security": [{"bearer": []}],
            "responses": {
              "200": {"description": "The principal.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Me"}}}},
              "401": {"$ref": "#/components/responses/Problem"},
              "403": {"$ref": "#/components/responses/Problem"},
              "429": {"$ref": "#/components/responses/Problem"},
              "503": {"$ref": "#/components/responses/Problem"}
            }
          }
        },
        "/metrics": {
          "get": {
            "operationId": "metrics",
            "summary": "Prometheus text exposition: request counts and latency by route and status, pool gauges per role, the library's counters.",
            "responses": {
              "200": {"description": "Metrics.", "content": {"text/plain": {"schema": {"type": "string"}}}},
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
      }
    }
    """#
}
