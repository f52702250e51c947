import ServiceSupport

/// The Telemetry API's contract: an OpenAPI 3.1 document, served at `GET /openapi.json`. A test
/// holds the router to it (every route is in the document and every operation is routed) and
/// schemathesis (Scripts/api-conformance) checks live answers against it. Written by hand for
/// the Core API's reasons (OpenAPIDocument.swift there).
enum TelemetryOpenAPIDocument {
    static let json = #"""
    {
      "openapi": "3.1.0",
      "info": {
        "title": "RestartiX Telemetry API",
        "version": "0.1.0",
        "description": "Ingest of a patient's exercise sessions: pose frames and media events in numbered batches, finished through the metric kernels into aggregates delivered to the Core API and a replay blob in the telemetry bucket. Every session route takes the session token the Core API issued (POST /v1/telemetry/session-tokens there) for that session. Errors are RFC 9457 problem+json with the error's code (`domain.code`) and the request's id; every response carries `X-Request-Id`."
      },
      "servers": [{"url": "http://127.0.0.1:8081"}],
      "components": {
        "securitySchemes": {
          "sessionToken": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT", "description": "A telemetry session token (HS256, issuer restartix-core-api, audience restartix-telemetry-api), bound to one session, clinic and patient."}
        },
        "parameters": {
          "SessionID": {"name": "id", "in": "path", "required": true, "description": "The session the token was issued for (403 for any other).", "schema": {"type": "string", "format": "uuid"}}
        },
        "schemas": {
          \#(ServiceOpenAPI.problemSchema),
          "Status": {
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"type": "string", "enum": ["ok", "ready"]}}
          },
          "StartSession": {
            "type": "object",
            "required": ["exercise"],
            "properties": {
              "exercise": {"type": "string", "enum": ["knee_flexion", "elbow_flexion", "shoulder_abduction", "hip_flexion", "knee_extension", "knee-flexion", "elbow-flexion", "shoulder-abduction", "hip-flexion", "knee-extension"], "description": "The exercise's profile (either spelling)."}
            }
          },
          "SessionStatus": {
            "type": "object",
            "required": ["session_id", "state", "exercise", "batches", "frames", "next_sequence", "gaps"],
            "properties": {
              "session_id": {"type": "string", "format": "uuid"},
              "state": {"type": "string", "enum": ["open", "finishing", "pending", "delivered", "failed", "abandoned"], "description": "pending: finished, the aggregates wait for the Core API; failed: the Core API refused them for good (kept for an operator); abandoned: finished without a batch."},
              "exercise": {"type": "string"},
              "batches": {"type": "integer", "minimum": 0},
              "frames": {"type": "integer", "minimum": 0},
              "next_sequence": {"type": "integer", "minimum": 0, "description": "One past the highest batch number received: where a resuming client carries on."},
              "gaps": {"type": "array", "items": {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 2, "maxItems": 2}, "description": "Batch numbers below next_sequence never received, as [first, last] pairs."},
              "reps": {"type": ["integer", "null"], "minimum": 0, "description": "Once finished: the repetitions counted."},
              "dropped_frames": {"type": ["integer", "null"], "minimum": 0, "description": "Once finished: frames the kernels set aside."}
            }
          },
          "BatchReceipt": {
            "type": "object",
            "required": ["sequence", "duplicate", "session"],
            "properties": {
              "sequence": {"type": "integer", "minimum": 0},
              "duplicate": {"type": "boolean", "description": "The batch had been received before: nothing was stored again."},
              "session": {"$ref": "#/components/schemas/SessionStatus"}
            }
          },
          "Batch": {
            "type": "object",
            "description": "The JSON form of a batch (the binary form is a quarter of its size: RestartixTelemetry's TelemetryBatch). Frame times strictly increasing and event times not decreasing, seconds on the page's monotonic clock; the whole batch is refused at its first broken rule (422, naming the rule and the frame or event), nothing of it stored.",
            "properties": {
              "frames": {
                "type": "array", "maxItems": 600,
                "items": {
                  "type": "object",
                  "required": ["t", "landmarks"],
                  "properties": {
                    "t": {"type": "number", "minimum": -1000000000, "maximum": 1000000000},
                    "landmarks": {
                      "type": "array", "minItems": 33, "maxItems": 33,
                      "description": "33 pose landmarks, each [x, y, z, visibility] with visibility in [0, 1]; 32-bit floats (a number beyond their range is 400).",
                      "items": {"type": "array", "minItems": 4, "maxItems": 4, "items": {"type": "number", "minimum": -3.4028234663852886e38, "maximum": 3.4028234663852886e38}}
                    }
                  }
                }
              },
              "events": {
                "type": "array", "maxItems": 2000,
                "items": {
                  "type": "object",
                  "required": ["video_id", "type", "t"],
                  "properties": {
                    "video_id": {"type": "string", "minLength": 1, "maxLength": 200},
                    "type": {"type": "string", "enum": ["play", "playing", "pause", "seeking", "seeked", "waiting", "buffering", "timeupdate", "renditionchange", "error", "ended"]},
                    "t": {"type": "number", "minimum": -1000000000, "maximum": 1000000000},
                    "playhead": {"type": ["number", "null"], "minimum": 0, "maximum": 1000000000, "description": "null or absent: not known."},
                    "fatal": {"type": ["boolean", "null"], "description": "For an error: whether playback cannot go on (null or absent: false)."}
                  }
                }
              }
            }
          }
        },
        "responses": {
          "Problem": {"description": "A problem.", "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}},
          "RetryLater": {
            "description": "This instance is full (too many open sessions or batches at once) or shutting down: retry after Retry-After.",
            "headers": {"Retry-After": {"schema": {"type": "string"}}},
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
          }
        }
      },
      "paths": {
        "/v1/sessions/{id}/start": {
          "post": {
            "operationId": "startSession",
            "summary": "Starts the session (201), or resumes it (200) with what arrived so far. Another exercise than the session's is 422; a patient with as many open sessions as it may have is 429.",
            "security": [{"sessionToken": []}],
            "parameters": [{"$ref": "#/components/parameters/SessionID"}],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/StartSession"}}}},
            "responses": {
              "200": {"description": "Resumed.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SessionStatus"}}}},
              "201": {"description": "Started.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SessionStatus"}}}},
              "400": {"$ref": "#/components/responses/Problem"},
              "401": {"$ref": "#/components/responses/Problem"},
              "403": {"$ref": "#/components/responses/Problem"},
              "409": {"$ref": "#/components/responses/Problem"},
              "413": {"$ref": "#/components/responses/Problem"},
              "415": {"$ref": "#/components/responses/Problem"},
              "422": {"$ref": "#/components/responses/Problem"},
              "429": {"$ref": "#/components/responses/Problem"},
              "503": {"$ref": "#/components/responses/RetryLater"}
            }
          }
        },
        "/v1/sessions/{id}/batches/{sequence}": {
          "put": {
            "operationId": "putBatch",
            "summary": "Stores batch number `sequence` (201); the same batch again is 200 with duplicate true (nothing stored twice); another batch under a stored number is 409. Batches may come in any order; gaps are reported in the status. More of one session's batches at once than it may store is 429 (retry).",
            "security": [{"sessionToken": []}],
            "parameters": [
              {"$ref": "#/components/parameters/SessionID"},
              {"name": "sequence", "in": "path", "required": true, "description": "The batch's number, from 0 to 19999 (a session takes at most 20000 batches; beyond it 422).", "schema": {"type": "integer", "minimum": 0, "maximum": 19999}}
            ],
            "requestBody": {
              "required": true,
              "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/Batch"}},
                "application/vnd.restartix.telemetry-batch": {"schema": {"type": "string", "format": "binary"}}
              }
            },
            "responses": {
              "200": {"description": "A batch received before.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/BatchReceipt"}}}},
              "201": {"description": "Stored.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/BatchReceipt"}}}},
              "400": {"$ref": "#/components/responses/Problem"},
              "401": {"$ref": "#/components/responses/Problem"},
              "403": {"$ref": "#/components/responses/Problem"},
              "404": {"$ref": "#/components/responses/Problem"},
              "409": {"$ref": "#/components/responses/Problem"},
              "413": {"$ref": "#/components/responses/Problem"},
              "415": {"$ref": "#/components/responses/Problem"},
              "422": {"$ref": "#/components/responses/Problem"},
              "429": {"$ref": "#/components/responses/Problem"},
              "503": {"$ref": "#/components/responses/RetryLater"}
            }
          }
        },
        "/v1/sessions/{id}/finish": {
          "post": {
            "operationId": "finishSession",
            "summary": "Finishes the session: runs the kernels, stores the replay blob and delivers the aggregates to the Core API. The final status: delivered, or pending when the Core API could not be reached (delivered when it can be). Finishing again answers the same.",
            "security": [{"sessionToken": []}],
            "parameters": [{"$ref": "#/components/parameters/SessionID"}],
            "responses": {
              "200": {"description": "Finished.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SessionStatus"}}}},
              "401": {"$ref": "#/components/responses/Problem"},
              "403": {"$ref": "#/components/responses/Problem"},
              "404": {"$ref": "#/components/responses/Problem"},
              "409": {"$ref": "#/components/responses/Problem"},
              "503": {"$ref": "#/components/responses/RetryLater"}
            }
          }
        },
        "/v1/sessions/{id}": {
          "get": {
            "operationId": "getSession",
            "summary": "The session's status.",
            "security": [{"sessionToken": []}],
            "parameters": [{"$ref": "#/components/parameters/SessionID"}],
            "responses": {
              "200": {"description": "The status.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SessionStatus"}}}},
              "401": {"$ref": "#/components/responses/Problem"},
              "403": {"$ref": "#/components/responses/Problem"},
              "404": {"$ref": "#/components/responses/Problem"},
              "503": {"$ref": "#/components/responses/RetryLater"}
            }
          }
        },
        "/health": {
          "get": {
            "operationId": "health",
            "summary": "Liveness: the process answers.",
            "responses": {
              "200": {"description": "Alive.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Status"}}}},
              "503": {"$ref": "#/components/responses/Problem"}
            }
          }
        },
        "/ready": {
          "get": {
            "operationId": "ready",
            "summary": "Readiness: taking sessions, the spool readable and the object store answering.",
            "responses": {
              "200": {"description": "Ready.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Status"}}}},
              "503": {"$ref": "#/components/responses/RetryLater"}
            }
          }
        },
        \#(ServiceOpenAPI.metricsAndDocumentPaths)
      }
    }
    """#
}
