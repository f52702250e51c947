import ServiceSupport

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
          "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT", "description": "A Clerk session token, or in development a token of the local development issuer."},
          "serviceAccount": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT", "description": "A service-account token (HS256 under TELEMETRY_INTERNAL_SVC_ACCT_TOKEN, audience restartix-core-api), for the platform's own services."}
        },
        "schemas": {
          \#(ServiceOpenAPI.problemSchema),
          "Status": {
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"type": "string", "enum": ["ok", "ready", "unavailable"]}}
          },
          "SNSMessage": {
            "type": "object",
            "description": "An Amazon SNS HTTP(S) message; only its signature (SignatureVersion 1 or 2, by the certificate at SigningCertURL on the topic's regional SNS host) makes it one to act on.",
            "required": ["Type", "MessageId", "TopicArn", "Message", "Timestamp", "SignatureVersion", "Signature", "SigningCertURL"],
            "properties": {
              "Type": {"type": "string", "enum": ["Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"]},
              "MessageId": {"type": "string"},
              "TopicArn": {"type": "string"},
              "Subject": {"type": "string"},
              "Message": {"type": "string"},
              "Timestamp": {"type": "string"},
              "SignatureVersion": {"type": "string", "enum": ["1", "2"]},
              "Signature": {"type": "string"},
              "SigningCertURL": {"type": "string"},
              "SubscribeURL": {"type": "string"},
              "Token": {"type": "string"}
            }
          },
          "ServiceWhoAmI": {
            "type": "object",
            "required": ["service", "scopes", "expires_at"],
            "properties": {
              "service": {"type": "string", "description": "The calling service (the token's sub)."},
              "scopes": {"type": "array", "items": {"type": "string"}},
              "expires_at": {"type": "string", "format": "date-time"}
            }
          },
          "Me": {
            "type": "object",
            "required": ["organization_id", "user_id", "role"],
            "properties": {
              "organization_id": {"type": "string", "format": "uuid"},
              "user_id": {"type": "string", "format": "uuid"},
              "role": {"type": "string", "enum": ["owner", "admin", "specialist", "assistant", "patient"]}
            }
          },
          "Reason": {
            "type": "string",
            "description": "Why; recorded on the session and its audit row: 10 to 2000 characters besides the whitespace around them, no control characters but tabs and line breaks.",
            "minLength": 10,
            "maxLength": 2000,
            "allOf": [{"pattern": "^[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F]*$"}, {"pattern": "\\S[\\s\\S]{8,}\\S"}]
          },
          "OpenBreakGlass": {
            "type": "object",
            "required": ["reason"],
            "properties": {
              "reason": {"$ref": "#/components/schemas/Reason"},
              "duration_seconds": {"type": "integer", "minimum": 60, "maximum": 14400, "description": "Default: 3600."},
              "patient_id": false
            }
          },
          "OpenImpersonation": {
            "type": "object",
            "required": ["reason", "patient_id"],
            "properties": {
              "reason": {"$ref": "#/components/schemas/Reason"},
              "duration_seconds": {"type": "integer", "minimum": 60, "maximum": 14400, "description": "Default: 1800."},
              "patient_id": {"type": "string", "format": "uuid", "description": "The patient to act as, one of the clinic's (else 404)."}
            }
          },
          "ElevatedSession": {
            "type": "object",
            "required": ["id", "kind", "organization_id", "user_id", "expires_at"],
            "properties": {
              "id": {"type": "string", "format": "uuid"},
              "kind": {"type": "string", "enum": ["break_glass", "impersonation"]},
              "organization_id": {"type": "string", "format": "uuid"},
              "user_id": {"type": "string", "format": "uuid", "description": "Who opened it."},
              "patient_id": {"type": "string", "format": "uuid"},
              "reason": {"type": "string"},
              "opened_at": {"type": "string", "format": "date-time"},
              "expires_at": {"type": "string", "format": "date-time"}
            }
          },
          "ElevatedSessionList": {
            "type": "object",
            "required": ["sessions"],
            "properties": {"sessions": {"type": "array", "items": {"$ref": "#/components/schemas/ElevatedSession"}}}
          },
          "SessionClosed": {
            "type": "object",
            "required": ["closed"],
            "properties": {"closed": {"type": "boolean", "description": "false: it was closed already."}}
          },
          "ResolvedOrganization": {
            "type": "object",
            "required": ["organization_id", "slug", "name", "via"],
            "properties": {
              "organization_id": {"type": "string", "format": "uuid"},
              "slug": {"type": "string"},
              "name": {"type": "string"},
              "via": {"type": "string", "enum": ["subdomain", "custom"]},
              "surface": {"type": "string", "description": "For a subdomain: the platform suffix it was under."}
            }
          },
          "Usage": {
            "type": "object",
            "required": ["period_start", "period_end", "capabilities"],
            "properties": {
              "period_start": {"type": "string", "format": "date-time"},
              "period_end": {"type": "string", "format": "date-time"},
              "capabilities": {"type": "array", "items": {
                "type": "object",
                "required": ["capability", "used"],
                "properties": {
                  "capability": {"type": "string"},
                  "used": {"type": "integer", "minimum": 0},
                  "limit": {"type": "integer", "minimum": 0, "description": "Absent: unlimited."},
                  "remaining": {"type": "integer", "minimum": 0}
                }
              }}
            }
          },
          "WebhookReceipt": {
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"type": "string", "enum": ["applied", "duplicate", "stale", "ignored", "confirmed"]}}
          },
          "Provider": {
            "type": "object",
            "required": ["capability", "provider_kind", "config", "secrets", "status", "version", "updated_at"],
            "properties": {
              "capability": {"type": "string"},
              "organization_id": {"type": "string", "format": "uuid"},
              "provider_kind": {"type": "string"},
              "config": {"type": "object", "additionalProperties": {"type": "string"}},
              "secrets": {"type": "array", "items": {"type": "string"}, "description": "The names of the secrets set, never their values."},
              "status": {"type": "string", "enum": ["active", "degraded", "down"]},
              "version": {"type": "integer"},
              "last_checked_at": {"type": "string", "format": "date-time"},
              "last_error": {"type": "string"},
              "updated_at": {"type": "string", "format": "date-time"}
            }
          },
          "AuditEntry": {
            "type": "object",
            "required": ["id", "actor_kind", "action", "action_context", "metadata", "created_at"],
            "properties": {
              "id": {"type": "string", "format": "uuid"},
              "actor_user_id": {"type": "string", "format": "uuid"},
              "actor_kind": {"type": "string", "enum": ["user", "service", "system"]},
              "action": {"type": "string"},
              "action_context": {"type": "string", "enum": ["normal", "break_glass", "impersonation", "platform_admin", "system"]},
              "resource_type": {"type": "string"},
              "resource_id": {"type": "string", "format": "uuid"},
              "request_id": {"type": "string"},
              "client_address": {"type": "string", "description": "The client's IP address (IPv4 or IPv6), from trusted proxies' headers."},
              "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
              "created_at": {"type": "string", "format": "date-time"}
            }
          },
          "PatientName": {"type": "string", "minLength": 1, "maxLength": 200, "allOf": [{"pattern": "^[^\\u0000-\\u001F\\u007F-\\u009F]*$"}, {"pattern": "\\S"}], "description": "1 to 200 characters, not only spaces, no control characters."},
          "DateOfBirth": {"type": "string", "format": "date", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$", "description": "YYYY-MM-DD: a real date, not in the future."},
          "Email": {"type": "string", "maxLength": 254, "pattern": "^[^@\\s\\u0000-\\u001F\\u007F-\\u009F]+@[^@\\s\\u0000-\\u001F\\u007F-\\u009F]*\\.[^@\\s\\u0000-\\u001F\\u007F-\\u009F]*$", "description": "One @, something before it, a dot after it, no spaces."},
          "Phone": {"type": "string", "minLength": 3, "maxLength": 32, "pattern": "^\\+?[0-9 ().-]*[0-9][0-9 ().-]*$", "description": "Digits with an optional leading +, spaces, dashes, dots or parentheses."},
          "NewPatient": {
            "type": "object",
            "required": ["name"],
            "properties": {
              "name": {"$ref": "#/components/schemas/PatientName"},
              "date_of_birth": {"$ref": "#/components/schemas/DateOfBirth"},
              "email": {"$ref": "#/components/schemas/Email"},
              "phone": {"$ref": "#/components/schemas/Phone"},
              "user_id": {"type": "string", "format": "uuid", "description": "The patient's own user account: a patient member of the clinic without a record yet (400 otherwise; 409 if it has one)."}
            }
          },
          "PatientPatch": {
            "type": "object",
            "description": "A field absent stays as it is; null clears an optional one.",
            "properties": {
              "name": {"$ref": "#/components/schemas/PatientName"},
              "date_of_birth": {"anyOf": [{"$ref": "#/components/schemas/DateOfBirth"}, {"type": "null"}]},
              "email": {"anyOf": [{"$ref": "#/components/schemas/Email"}, {"type": "null"}]},
              "phone": {"anyOf": [{"$ref": "#/components/schemas/Phone"}, {"type": "null"}]}
            }
          },
          "PatientSearch": {
            "type": "object",
            "required": ["email"],
            "properties": {"email": {"$ref": "#/components/schemas/Email"}}
          },
          "Patient": {
            "type": "object",
            "required": ["id", "organization_id", "name", "created_at", "updated_at"],
            "properties": {
              "id": {"type": "string", "format": "uuid"},
              "organization_id": {"type": "string", "format": "uuid"},
              "user_id": {"type": "string", "format": "uuid"},
              "name": {"type": "string"},
              "date_of_birth": {"type": "string"},
              "email": {"type": "string"},
              "phone": {"type": "string"},
              "created_at": {"type": "string", "format": "date-time"},
              "updated_at": {"type": "string", "format": "date-time"}
            }
          },
          "PatientPage": {
            "type": "object",
            "required": ["patients"],
            "properties": {
              "patients": {"type": "array", "items": {"$ref": "#/components/schemas/Patient"}},
              "next": {"type": "string", "description": "Pass as after= for the next page; absent on the last."}
            }
          },
          "PatientList": {
            "type": "object",
            "required": ["patients"],
            "properties": {"patients": {"type": "array", "items": {"$ref": "#/components/schemas/Patient"}}}
          },
          "SlotStart": {"type": "string", "format": "date-time", "maxLength": 40, "description": "RFC 3339 with an offset; on the clinic's slot grid (30 minutes from UTC midnight), in the future, within a year."},
          "NewHold": {
            "type": "object",
            "required": ["patient_id", "specialist_id", "starts_at"],
            "properties": {
              "patient_id": {"type": "string", "format": "uuid", "description": "The patient the slot is held for (a patient: its own record)."},
              "specialist_id": {"type": "string", "format": "uuid", "description": "A staff member of the clinic."},
              "starts_at": {"$ref": "#/components/schemas/SlotStart"}
            }
          },
          "HoldReference": {
            "type": "object",
            "required": ["token", "fence", "store"],
            "properties": {
              "token": {"type": "string", "minLength": 1, "maxLength": 200},
              "fence": {"type": "integer", "description": "The hold's fencing token: a booking with a fence not greater than the slot's last booking's is refused."},
              "store": {"type": "string", "enum": ["redis", "database", "memory"]}
            }
          },
          "Hold": {
            "type": "object",
            "required": ["hold", "patient_id", "specialist_id", "starts_at", "ends_at", "expires_at"],
            "properties": {
              "hold": {"$ref": "#/components/schemas/HoldReference"},
              "patient_id": {"type": "string", "format": "uuid"},
              "specialist_id": {"type": "string", "format": "uuid"},
              "starts_at": {"type": "string", "format": "date-time"},
              "ends_at": {"type": "string", "format": "date-time"},
              "expires_at": {"type": "string", "format": "date-time", "description": "Book before then."}
            }
          },
          "NewAppointment": {
            "type": "object",
            "required": ["hold", "patient_id", "specialist_id", "starts_at", "kind"],
            "properties": {
              "hold": {"$ref": "#/components/schemas/HoldReference"},
              "patient_id": {"type": "string", "format": "uuid"},
              "specialist_id": {"type": "string", "format": "uuid"},
              "starts_at": {"$ref": "#/components/schemas/SlotStart"},
              "kind": {"type": "string", "enum": ["in_person", "video"]}
            }
          },
          "Appointment": {
            "type": "object",
            "required": ["id", "organization_id", "patient_id", "specialist_id", "starts_at", "ends_at", "kind", "status", "created_at", "updated_at"],
            "properties": {
              "id": {"type": "string", "format": "uuid"},
              "organization_id": {"type": "string", "format": "uuid"},
              "patient_id": {"type": "string", "format": "uuid"},
              "specialist_id": {"type": "string", "format": "uuid"},
              "starts_at": {"type": "string", "format": "date-time"},
              "ends_at": {"type": "string", "format": "date-time"},
              "kind": {"type": "string", "enum": ["in_person", "video"]},
              "status": {"type": "string", "enum": ["booked", "canceled"]},
              "created_at": {"type": "string", "format": "date-time"},
              "updated_at": {"type": "string", "format": "date-time"},
              "canceled_at": {"type": "string", "format": "date-time"}
            }
          },
          "VideoAccess": {
            "type": "object",
            "required": ["room_url", "token", "is_owner", "not_before", "expires_at"],
            "properties": {
              "room_url": {"type": "string", "description": "The appointment's Daily room."},
              "token": {"type": "string", "description": "The caller's own meeting token (a bearer secret)."},
              "is_owner": {"type": "boolean", "description": "Staff join as the room's owners."},
              "not_before": {"type": "string", "format": "date-time"},
              "expires_at": {"type": "string", "format": "date-time"}
            }
          },
          "Followup": {
            "type": "object",
            "required": ["kind", "state", "attempts", "updated_at"],
            "properties": {
              "kind": {"type": "string", "enum": ["confirmation_email", "video_room"]},
              "state": {"type": "string", "enum": ["pending", "done", "skipped", "failed"]},
              "attempts": {"type": "integer", "minimum": 0},
              "next_attempt_at": {"type": "string", "format": "date-time", "description": "When a pending one is tried again."},
              "last_error": {"type": "string", "description": "Why the last attempt failed, or why it was skipped."},
              "updated_at": {"type": "string", "format": "date-time"}
            }
          },
          "FollowupList": {
            "type": "object",
            "required": ["followups"],
            "properties": {"followups": {"type": "array", "items": {"$ref": "#/components/schemas/Followup"}}}
          },
          "AppointmentDay": {
            "type": "object",
            "required": ["date", "appointments"],
            "properties": {
              "date": {"type": "string", "format": "date"},
              "appointments": {"type": "array", "items": {"$ref": "#/components/schemas/Appointment"}}
            }
          },
          "AggregateRep": {
            "type": "object",
            "required": ["rep_index", "start_ms", "end_ms", "duration_ms", "min_angle_degrees", "max_angle_degrees", "rom_degrees", "partial_range", "too_fast"],
            "properties": {
              "rep_index": {"type": "integer", "minimum": 0, "description": "Its position in reps, from 0."},
              "start_ms": {"type": "integer", "minimum": 0},
              "end_ms": {"type": "integer", "minimum": 0, "description": "Not before start_ms."},
              "duration_ms": {"type": "integer", "minimum": 0, "description": "end_ms - start_ms."},
              "min_angle_degrees": {"type": "number", "minimum": -360, "maximum": 360},
              "max_angle_degrees": {"type": "number", "minimum": -360, "maximum": 360},
              "rom_degrees": {"type": "number", "minimum": 0, "maximum": 720},
              "concentric_ms": {"type": "integer", "minimum": 0},
              "eccentric_ms": {"type": "integer", "minimum": 0},
              "peak_velocity_dps": {"type": "number", "minimum": 0},
              "mean_visibility": {"type": "number", "minimum": 0, "maximum": 1},
              "partial_range": {"type": "boolean"},
              "too_fast": {"type": "boolean"}
            }
          },
          "AggregatePose": {
            "type": "object",
            "required": ["rep_count", "active_time_ms", "reps"],
            "properties": {
              "rep_count": {"type": "integer", "minimum": 0, "description": "The number of reps."},
              "mean_rom_degrees": {"type": "number", "minimum": 0, "maximum": 360},
              "min_rom_degrees": {"type": "number", "minimum": 0, "maximum": 360},
              "max_rom_degrees": {"type": "number", "minimum": 0, "maximum": 360},
              "mean_rep_duration_ms": {"type": "number", "minimum": 0},
              "tempo_cv": {"type": "number", "minimum": 0},
              "active_time_ms": {"type": "integer", "minimum": 0},
              "tracked_frame_ratio": {"type": "number", "minimum": 0, "maximum": 1},
              "mean_visibility": {"type": "number", "minimum": 0, "maximum": 1},
              "effective_fps": {"type": "number", "minimum": 0, "maximum": 1000},
              "reps": {"type": "array", "maxItems": 1500, "items": {"$ref": "#/components/schemas/AggregateRep"}}
            }
          },
          "AggregateMedia": {
            "type": "object",
            "required": ["video_id", "exit_before_start", "watch_time_ms", "playing_time_ms", "rebuffer_count", "rebuffer_duration_ms", "failure_count", "buffering_events"],
            "properties": {
              "video_id": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[^\\u0000-\\u001F\\u007F]*$"},
              "startup_time_ms": {"type": "integer", "minimum": 0},
              "exit_before_start": {"type": "boolean"},
              "watch_time_ms": {"type": "integer", "minimum": 0},
              "playing_time_ms": {"type": "integer", "minimum": 0},
              "rebuffer_count": {"type": "integer", "minimum": 0},
              "rebuffer_duration_ms": {"type": "integer", "minimum": 0},
              "rebuffer_percentage": {"type": "number", "minimum": 0, "maximum": 100},
              "rebuffer_frequency_per_minute": {"type": "number", "minimum": 0},
              "startup_score": {"type": "number", "minimum": 0, "maximum": 100},
              "smoothness_score": {"type": "number", "minimum": 0, "maximum": 100},
              "failure_count": {"type": "integer", "minimum": 0},
              "buffering_events": {"type": "array", "maxItems": 200, "items": {
                "type": "object",
                "required": ["started_at_ms", "duration_ms", "seek_induced"],
                "properties": {
                  "started_at_ms": {"type": "integer", "minimum": 0},
                  "duration_ms": {"type": "integer", "minimum": 0},
                  "seek_induced": {"type": "boolean"}
                }
              }}
            }
          },
          "SessionAggregates": {
            "type": "object",
            "required": ["organization_id", "patient_id", "exercise", "started_at", "ended_at", "media"],
            "properties": {
              "organization_id": {"type": "string", "format": "uuid", "description": "The session token's clinic."},
              "patient_id": {"type": "string", "format": "uuid", "description": "The session token's patient record."},
              "exercise": {"type": "string", "pattern": "^[a-z0-9_]{1,64}$"},
              "started_at": {"type": "string", "format": "date-time", "maxLength": 40},
              "ended_at": {"type": "string", "format": "date-time", "maxLength": 40, "description": "Not before started_at."},
              "pose": {"$ref": "#/components/schemas/AggregatePose"},
              "media": {"type": "array", "maxItems": 20, "items": {"$ref": "#/components/schemas/AggregateMedia"}}
            }
          },
          "RecordedAggregates": {
            "type": "object",
            "required": ["session_id", "organization_id", "patient_id", "status", "reps", "media_sessions", "exercise_done_count"],
            "properties": {
              "session_id": {"type": "string", "format": "uuid"},
              "organization_id": {"type": "string", "format": "uuid"},
              "patient_id": {"type": "string", "format": "uuid"},
              "status": {"type": "string", "enum": ["recorded", "duplicate"]},
              "reps": {"type": "integer"},
              "media_sessions": {"type": "integer"},
              "exercise_done_count": {"type": "integer", "description": "The patient's sessions done of this exercise (a session with at least one repetition counts)."}
            }
          },
          "TelemetrySession": {
            "type": "object",
            "required": ["token", "session_id", "organization_id", "patient_id", "expires_at"],
            "properties": {
              "token": {"type": "string", "description": "HS256, audience restartix-telemetry-api: what the Telemetry API accepts this session's frames and events with."},
              "session_id": {"type": "string", "format": "uuid"},
              "organization_id": {"type": "string", "format": "uuid"},
              "patient_id": {"type": "string", "format": "uuid", "description": "The patient record the session's metrics belong to."},
              "expires_at": {"type": "string", "format": "date-time"}
            }
          },
          "File": {
            "type": "object",
            "required": ["id", "organization_id", "owner_user_id", "surface", "content_type", "size_bytes", "state", "created_at"],
            "properties": {
              "id": {"type": "string", "format": "uuid"},
              "organization_id": {"type": "string", "format": "uuid"},
              "owner_user_id": {"type": "string", "format": "uuid", "description": "Who asked for the upload."},
              "patient_id": {"type": "string", "format": "uuid", "description": "The patient record the file belongs to, if any."},
              "surface": {"type": "string", "enum": ["patient-files", "signatures", "exercise-videos", "documents", "generated-pdfs"]},
              "content_type": {"type": "string"},
              "size_bytes": {"type": "integer", "minimum": 1},
              "state": {"type": "string", "enum": ["pending", "uploaded"]},
              "created_at": {"type": "string", "format": "date-time"},
              "uploaded_at": {"type": "string", "format": "date-time"}
            }
          },
          "Presigned": {
            "type": "object",
            "required": ["method", "url", "headers", "expires_at"],
            "properties": {
              "method": {"type": "string", "enum": ["GET", "PUT"]},
              "url": {"type": "string", "description": "A credential for one object until expires_at: use it, never log it."},
              "headers": {"type": "object", "additionalProperties": {"type": "string"}, "description": "Headers the request must carry with exactly these values (a PUT's content-type, content-length, if-none-match: * and any encryption header)."},
              "expires_at": {"type": "string", "format": "date-time"}
            }
          },
          "UploadRequest": {
            "description": "A surface, a media type on its allow-list and a size under its cap (422 file.typeNotAllowed, file.tooLarge otherwise); patient_id: for staff, the patient the file belongs to (a patient uploads to its own record, to patient-files and signatures only).",
            "oneOf": [
              {
                "type": "object",
                "required": ["surface", "content_type", "size_bytes"],
                "properties": {
                  "surface": {"const": "patient-files"},
                  "content_type": {"enum": ["application/pdf", "image/png", "image/jpeg", "image/heic"]},
                  "size_bytes": {"type": "integer", "minimum": 1, "maximum": 26214400},
                  "patient_id": {"type": "string", "format": "uuid"}
                }
              },
              {
                "type": "object",
                "required": ["surface", "content_type", "size_bytes"],
                "properties": {
                  "surface": {"const": "signatures"},
                  "content_type": {"enum": ["image/png"]},
                  "size_bytes": {"type": "integer", "minimum": 1, "maximum": 1048576},
                  "patient_id": {"type": "string", "format": "uuid"}
                }
              },
              {
                "type": "object",
                "required": ["surface", "content_type", "size_bytes"],
                "properties": {
                  "surface": {"const": "exercise-videos"},
                  "content_type": {"enum": ["video/mp4", "video/webm", "video/quicktime"]},
                  "size_bytes": {"type": "integer", "minimum": 1, "maximum": 524288000},
                  "patient_id": {"type": "string", "format": "uuid"}
                }
              },
              {
                "type": "object",
                "required": ["surface", "content_type", "size_bytes"],
                "properties": {
                  "surface": {"const": "documents"},
                  "content_type": {"enum": ["application/pdf", "image/png", "image/jpeg", "text/plain"]},
                  "size_bytes": {"type": "integer", "minimum": 1, "maximum": 26214400},
                  "patient_id": {"type": "string", "format": "uuid"}
                }
              },
              {
                "type": "object",
                "required": ["surface", "content_type", "size_bytes"],
                "properties": {
                  "surface": {"const": "generated-pdfs"},
                  "content_type": {"enum": ["application/pdf"]},
                  "size_bytes": {"type": "integer", "minimum": 1, "maximum": 26214400},
                  "patient_id": {"type": "string", "format": "uuid"}
                }
              }
            ]
          },
          "Upload": {
            "type": "object",
            "required": ["file", "upload"],
            "properties": {"file": {"$ref": "#/components/schemas/File"}, "upload": {"$ref": "#/components/schemas/Presigned"}}
          },
          "Download": {
            "type": "object",
            "required": ["file", "download"],
            "properties": {"file": {"$ref": "#/components/schemas/File"}, "download": {"$ref": "#/components/schemas/Presigned"}}
          },
          "TelemetrySessionMetrics": {
            "type": "object",
            "required": ["session_id", "patient_id", "exercise", "started_at", "ended_at", "pose"],
            "properties": {
              "session_id": {"type": "string", "format": "uuid"},
              "patient_id": {"type": "string", "format": "uuid"},
              "exercise": {"type": "string"},
              "started_at": {"type": "string", "format": "date-time"},
              "ended_at": {"type": "string", "format": "date-time"},
              "pose": {"$ref": "#/components/schemas/AggregatePose", "description": "The summary; its reps are listed when one session is read, empty in lists."}
            }
          },
          "TelemetrySessionList": {
            "type": "object",
            "required": ["sessions"],
            "properties": {"sessions": {"type": "array", "items": {"$ref": "#/components/schemas/TelemetrySessionMetrics"}}}
          },
          "AuditLogPage": {
            "type": "object",
            "required": ["entries"],
            "properties": {
              "entries": {"type": "array", "items": {"$ref": "#/components/schemas/AuditEntry"}},
              "next": {"type": ["string", "null"], "description": "Pass as after= for the next page; null on the last."}
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
        "/v1/break-glass-sessions": {
          "post": {
            "operationId": "openBreakGlass",
            "summary": "Open a break-glass session: emergency access to every record of the clinic, each transaction audited (the clinic's staff).",
            "security": [{"bearer": []}],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/OpenBreakGlass"}}}},
            "responses": {
              "201": {"description": "Opened.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ElevatedSession"}}}},
              "400": {"$ref": "#/components/responses/Problem"},
              "401": {"$ref": "#/components/responses/Problem"},
              "403": {"$ref": "#/components/responses/Problem"},
              "413": {"$ref": "#/components/responses/Problem"},
              "429": {"$ref": "#/components/responses/Problem"},
              "503": {"$ref": "#/components/responses/Problem"}
            }
          }
        },
        "/v1/break-glass-sessions/{id}": {
          "delete": {
            "operationId": "closeBreakGlass",
            "summary": "Close your own session early.",
            "security": [{"bearer": []}],
            "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}}],
            "responses": {
              "200": {"description": "Closed (or closed already).", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SessionClosed"}}}},
              "400": {"$ref": "#/components/responses/Problem"},
              "401": {"$ref": "#/components/responses/Problem"},
              "403": {"$ref": "#/components/responses/Problem"},
              "404": {"$ref": "#/components/responses/Problem"},
              "429": {"$ref": "#/components/responses/Problem"},
              "503": {"$ref": "#/components/responses/Problem"}
            }
          }
        },
        "/v1/impersonation-sessions": {
          "post": {
            "operationId": "openImpersonation",
            "summary": "Open an impersonation session: act as one patient of the clinic, each transaction audited (the clinic's staff).",
            "security": [{"bearer": []}],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/OpenImpersonation"}}}},
            "responses": {
              "201": {"description": "Opened.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ElevatedSession"}}}},
              "400": {"$ref": "#/components/responses/Problem"},
              "401": {"$ref": "#/components/responses/Problem"},
              "403": {"$ref": "#/components/responses/Problem"},
              "404": {"$ref": "#/components/responses/Problem"},
              "413": {"$ref": "#/components/responses/Problem"},
              "429": {"$ref": "#/components/responses/Problem"},
              "503": {"$ref": "#/components/responses/Problem"}
            }
          }
        },
        "/v1/impersonation-sessions/{id}": {
          "delete": {
            "operationId": "closeImpersonation",
            "summary": "Close your own session early.",
            "security": [{"bearer": []}],
            "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}}],
            "responses": {
              "200": {"description": "Closed (or closed already).", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SessionClosed"}}}},
              "400": {"$ref": "#/components/responses/Problem"},
              "401": {"$ref": "#/components/responses/Problem"},
              "403": {"$ref": "#/components/responses/Problem"},
              "404": {"$ref": "#/components/responses/Problem"},
              "429": {"$ref": "#/components/responses/Problem"},
              "503": {"$ref": "#/components/responses/Problem"}
            }
          }
        },
        "/v1/public/organizations/resolve": {
          "get": {
            "operationId": "resolveOrganization",
            "summary": "Which active clinic a web address belongs to: a platform subdomain ({slug}.clinic.restartix.pro) or a verified custom domain. No token.",
            "parameters": [
              {"name": "domain", "in": "query", "required": true, "schema": {"type": "string", "minLength": 3, "maxLength": 253, "pattern": "^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.)+[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.?(:[0-9]{1,5})?$"}, "description": "The host name the app was opened at (a port and a final dot are ignored; case does not matter)."}
            ],
            "responses": {
              "200": {"description": "The clinic.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ResolvedOrganization"}}}},
              "400": {"$ref": "#/components/responses/Problem"},
              "404": {"$ref": "#/components/responses/Problem"},
              "429": {"$ref": "#/components/responses/Problem"},
              "503": {"$ref": "#/components/responses/Problem"}
            }
          }
        },
        "/v1/webhooks/clerk": {
          "post": {
            "operationId": "clerkWebhook",
            "summary": "Clerk's user, organization and membership events, Svix-signed; applied exactly once per svix-id.",
            "parameters": [
              {"name": "svix-id", "in": "header", "required": true, "schema": {"type": "string", "maxLength": 255}},
              {"name": "svix-timestamp", "in": "header", "required": true, "schema": {"type": "string"}},
              {"name": "svix-signature", "in": "header", "required": true, "schema": {"type": "string"}}
            ],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["type", "data"], "properties": {"type": {"type": "string"}, "data": {"type": "object"}}}}}},
            "responses": {
              "200": {"description": "Applied, a duplicate, or a type not handled.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/WebhookReceipt"}}}},
              "401": {"$ref": "#/components/responses/Problem"},
              "413": {"$ref": "#/components/responses/Problem"},
              "422": {"$ref": "#/components/responses/Problem"},
              "429": {"$ref": "#/components/responses/Problem"},
              "503": {"$ref": "#/components/responses/Problem"}
            }
          }
        },
        "/v1/webhooks/ses": {
          "post": {
            "operationId": "sesWebhook",
            "summary": "SES bounce and complaint notifications through SNS (signature, certificate host and topic verified); subscription confirmations confirmed.",
            "requestBody": {"required": true, "description": "An SNS message as SNS posts it (Content-Type text/plain, the body a JSON document).", "content": {"text/plain": {"schema": {"type": "string", "contentMediaType": "application/json", "contentSchema": {"$ref": "#/components/schemas/SNSMessage"}}}, "application/json": {"schema": {"$ref": "#/components/schemas/SNSMessage"}}}},
            "responses": {
              "200": {"description": "Applied, a duplicate, ignored, or the subscription confirmed.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/WebhookReceipt"}}}},
              "400": {"$ref": "#/components/responses/Problem"},
              "401": {"$ref": "#/components/responses/Problem"},
              "403": {"$ref": "#/components/responses/Problem"},
              "413": {"$ref": "#/components/responses/Problem"},
              "429": {"$ref": "#/components/responses/Problem"},
              "502": {"$ref": "#/components/responses/Problem"},
              "503": {"$ref": "#/components/responses/Problem"}
            }
          }
        },
        "/v1/admin/platform-service-providers": {
          "get": {
            "operationId": "listProviders",
            "summary": "Every Cat A provider row (platform defaults and clinic overrides), secrets by name only (platform administrators).",
            "security": [{"bearer": []}],
            "responses": {
              "200": {"description": "The providers.", "content": {"application/json": {"schema": {"type": "object", "required": ["providers"], "properties": {"providers": {"type": "array", "items": {"$ref": "#/components/schemas/Provider"}}}}}}},
              "401": {"$ref": "#/components/responses/Problem"},
              "403": {"$ref": "#/components/responses/Problem"},
              "429": {"$ref": "#/components/responses/Problem"},
              "503": {"$ref": "#/components/responses/Problem"}
            }
          }
        },
        "/v1/admin/platform-service-providers/{capability}": {
          "patch": {
            "operationId": "rotateProvider",
            "summary": "Rotate a provider (platform administrators): fields left out keep their value; audited; every instance's resolver invalidated.",
            "security": [{"bearer": []}],
            "parameters": [
              {"name": "capability", "in": "path", "required": true, "schema": {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,31}$"}},
              {"name": "organization_id", "in": "query", "schema": {"type": "string", "format": "uuid"}, "description": "A clinic's override; absent: the platform default."},
              {"name": "If-Match", "in": "header", "required": true, "schema": {"type": "string", "pattern": "^(W/)?\"[0-9]{1,18}\"$"}, "description": "The provider's ETag (its version in quotes)."}
            ],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "properties": {
              "provider_kind": {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,31}$"},
              "config": {"type": "object", "additionalProperties": {"type": "string"}, "description": "Settings by name; each is checked against the provider's kind (422 names the one that fails)."},
              "secrets": {"type": "object", "additionalProperties": {"type": "string"}}
            }}}}},
            "responses": {
              "200": {"description": "Rotated; ETag is the new version.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Provider"}}}},
              "400": {"$ref": "#/components/responses/Problem"},
              "401": {"$ref": "#/components/responses/Problem"},
              "403": {"$ref": "#/components/responses/Problem"},
              "404": {"$ref": "#/components/responses/Problem"},
              "412": {"$ref": "#/components/responses/Problem"},
              "413": {"$ref": "#/components/responses/Problem"},
              "422": {"$ref": "#/components/responses/Problem"},
              "428": {"$ref": "#/components/responses/Problem"},
              "429": {"$ref": "#/components/responses/Problem"},
              "503": {"$ref": "#/components/responses/Problem"}
            }
          }
        },
        "/v1/elevated-sessions": {
          "get": {
            "operationId": "listElevatedSessions",
            "summary": "The clinic's open elevated sessions: all for owners and admins, your own for other staff.",
            "security": [{"bearer": []}],
            "responses": {
              "200": {"description": "Open sessions, newest first.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ElevatedSessionList"}}}},
              "401": {"$ref": "#/components/responses/Problem"},
              "403": {"$ref": "#/components/responses/Problem"},
              "429": {"$ref": "#/components/responses/Problem"},
              "503": {"$ref": "#/components/responses/Problem"}
            }
          }
        },
        "/v1/usage": {
          "get": {
            "operationId": "usage",
            "summary": "The clinic's usage this period (the calendar month, UTC) per capability, with its quota (owners and admins).",
            "security": [{"bearer": []}],
            "responses": {
              "200": {"description": "Usage.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Usage"}}}},
              "401": {"$ref": "#/components/responses/Problem"},
              "403": {"$ref": "#/components/responses/Problem"},
              "429": {"$ref": "#/components/responses/Problem"},
              "503": {"$ref": "#/components/responses/Problem"}
            }
          }
        },
        "/v1/audit-log": {
          "get": {
            "operationId": "auditLog",
            "summary": "The clinic's audit log, newest first, in keyset pages (owners and admins).",
            "security": [{"bearer": []}],
            "parameters": [
              {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}},
              {"name": "after", "in": "query", "schema": {"type": "string", "maxLength": 128}, "description": "The previous page's next."}
            ],
            "responses": {
              "200": {"description": "A page.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AuditLogPage"}}}},
              "400": {"$ref": "#/components/responses/Problem"},
              "401": {"$ref": "#/components/responses/Problem"},
              "403": {"$ref": "#/components/responses/Problem"},
              "429": {"$ref": "#/components/responses/Problem"},
              "503": {"$ref": "#/components/responses/Problem"}
            }
          }
        },
        "/v1/patients": {
          "get": {
            "operationId": "listPatients",
            "summary": "The clinic's patients in keyset pages, oldest first (a patient: only its own record).",
            "security": [{"bearer": []}],
            "parameters": [
              {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 50}},
              {"name": "after", "in": "query", "schema": {"type": "string", "format": "uuid"}, "description": "The previous page's next."}
            ],
            "responses": {
              "200": {"description": "A page.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PatientPage"}}}},
              "400": {"$ref": "#/components/responses/Problem"},
              "401": {"$ref": "#/components/responses/Problem"},
              "403": {"$ref": "#/components/responses/Problem"},
              "429": {"$ref": "#/components/responses/Problem"},
              "503": {"$ref": "#/components/responses/Problem"}
            }
          },
          "post": {
            "operationId": "createPatient",
            "summary": "Add a patient to the clinic (staff); the personal data is sealed, the change audited.",
            "security": [{"bearer": []}],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NewPatient"}}}},
            "responses": {
              "201": {"description": "Created.", "headers": {"Location": {"schema": {"type": "string"}}}, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Patient"}}}},
              "400": {"$ref": "#/components/responses/Problem"},
              "401": {"$ref": "#/components/responses/Problem"},
              "403": {"$ref": "#/components/responses/Problem"},
              "409": {"$ref": "#/components/responses/Problem"},
              "413": {"$ref": "#/components/responses/Problem"},
              "429": {"$ref": "#/components/responses/Problem"},
              "503": {"$ref": "#/components/responses/Problem"}
            }
          }
        },
        "/v1/patients/search": {
          "post": {
            "operationId": "searchPatients",
            "summary": "The clinic's patients with an e-mail address, found by its blind index (staff). The address travels in the body, never in a URL.",
            "security": [{"bearer": []}],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PatientSearch"}}}},
            "responses": {
              "200": {"description": "The patients found (none: an empty list).", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PatientList"}}}},
              "400": {"$ref": "#/components/responses/Problem"},
              "401": {"$ref": "#/components/responses/Problem"},
              "403": {"$ref": "#/components/responses/Problem"},
              "413": {"$ref": "#/components/responses/Problem"},
              "429": {"$ref": "#/components/responses/Problem"},
              "503": {"$ref": "#/components/responses/Problem"}
            }
          }
        },
        "/v1/patients/{id}": {
          "get": {
            "operationId": "getPatient",
            "summary": "One patient of the clinic (a patient: its own record; anyone else's is 404).",
            "security": [{"bearer": []}],
            "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}}],
            "responses": {
              "200": {"description": "The patient.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Patient"}}}},
              "400": {"$ref": "#/components/responses/Problem"},
              "401": {"$ref": "#/components/responses/Problem"},
              "403": {"$ref": "#/components/responses/Problem"},
              "404": {"$ref": "#/components/responses/Problem"},
              "429": {"$ref": "#/components/responses/Problem"},
              "503": {"$ref": "#/components/responses/Problem"}
            }
          },
          "patch": {
            "operationId": "updatePatient",
            "summary": "Change a patient's personal data (staff, or the patient itself); audited with the names of the fields changed.",
            "security": [{"bearer": []}],
            "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}}],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PatientPatch"}}}},
            "responses": {
              "200": {"description": "The patient as it is now.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Patient"}}}},
              "400": {"$ref": "#/components/responses/Problem"},
              "401": {"$ref": "#/components/responses/Problem"},
              "403": {"$ref": "#/components/responses/Problem"},
              "404": {"$ref": "#/components/responses/Problem"},
              "413": {"$ref": "#/components/responses/Problem"},
              "429": {"$ref": "#/components/responses/Problem"},
              "503": {"$ref": "#/components/responses/Problem"}
            }
          },
          "delete": {
            "operationId": "deletePatient",
            "summary": "Delete a patient (owners and admins): gone from every answer; the sealed row stays for the retention the clinic owes.",
            "security": [{"bearer": []}],
            "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}}],
            "responses": {
              "204": {"description": "Deleted."},
              "400": {"$ref": "#/components/responses/Problem"},
              "401": {"$ref": "#/components/responses/Problem"},
              "403": {"$ref": "#/components/responses/Problem"},
              "404": {"$ref": "#/components/responses/Problem"},
              "429": {"$ref": "#/components/responses/Problem"},
              "503": {"$ref": "#/components/responses/Problem"}
            }
          }
        },
        "/v1/appointments/holds": {
          "post": {
            "operationId": "holdSlot",
            "summary": "Hold a slot for a patient while the booking form is filled in (staff: any patient of the clinic; a patient: itself). 409 when it is booked or held.",
            "security": [{"bearer": []}],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NewHold"}}}},
            "responses": {
              "201": {"description": "Held.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Hold"}}}},
              "400": {"$ref": "#/components/responses/Problem"},
              "401": {"$ref": "#/components/responses/Problem"},
              "403": {"$ref": "#/components/responses/Problem"},
              "404": {"$ref": "#/components/responses/Problem"},
              "409": {"$ref": "#/components/responses/Problem"},
              "413": {"$ref": "#/components/responses/Problem"},
              "429": {"$ref": "#/components/responses/Problem"},
              "503": {"$ref": "#/components/responses/Problem"}
            }
          }
        },
        "/v1/appointments": {
          "get": {
            "operationId": "listAppointments",
            "summary": "The clinic's appointments starting on a UTC day, booked and canceled, by start (a patient: its own).",
            "security": [{"bearer": []}],
            "parameters": [
              {"name": "date", "in": "query", "required": true, "schema": {"type": "string", "format": "date", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"}},
              {"name": "specialist_id", "in": "query", "schema": {"type": "string", "format": "uuid"}}
            ],
            "responses": {
              "200": {"description": "The day's appointments.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AppointmentDay"}}}},
              "400": {"$ref": "#/components/responses/Problem"},
              "401": {"$ref": "#/components/responses/Problem"},
              "403": {"$ref": "#/components/responses/Problem"},
              "429": {"$ref": "#/components/responses/Problem"},
              "503": {"$ref": "#/components/responses/Problem"}
            }
          },
          "post": {
            "operationId": "bookAppointment",
            "summary": "Book a held slot with its hold (the same patient, specialist and start); audited. 409 when the hold lapsed or was superseded, or the slot is booked.",
            "security": [{"bearer": []}],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NewAppointment"}}}},
            "responses": {
              "201": {"description": "Booked.", "headers": {"Location": {"schema": {"type": "string"}}}, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Appointment"}}}},
              "400": {"$ref": "#/components/responses/Problem"},
              "401": {"$ref": "#/components/responses/Problem"},
              "403": {"$ref": "#/components/responses/Problem"},
              "404": {"$ref": "#/components/responses/Problem"},
              "409": {"$ref": "#/components/responses/Problem"},
              "413": {"$ref": "#/components/responses/Problem"},
              "429": {"$ref": "#/components/responses/Problem"},
              "503": {"$ref": "#/components/responses/Problem"}
            }
          }
        },
        "/v1/appointments/{id}": {
          "get": {
            "operationId": "getAppointment",
            "summary": "One appointment of the clinic (a patient: its own; anyone else's is 404).",
            "security": [{"bearer": []}],
            "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}}],
            "responses": {
              "200": {"description": "The appointment.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Appointment"}}}},
              "400": {"$ref": "#/components/responses/Problem"},
              "401": {"$ref": "#/components/responses/Problem"},
              "403": {"$ref": "#/components/responses/Problem"},
              "404": {"$ref": "#/components/responses/Problem"},
              "429": {"$ref": "#/components/responses/Problem"},
              "503": {"$ref": "#/components/responses/Problem"}
            }
          }
        },
        "/v1/appointments/{id}/cancel": {
          "post": {
            "operationId": "cancelAppointment",
            "summary": "Cancel a booked appointment (staff, or its patient); its slot is free again; audited. 409 when already canceled.",
            "security": [{"bearer": []}],
            "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}}],
            "responses": {
              "200": {"description": "The canceled appointment.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Appointment"}}}},
              "400": {"$ref": "#/components/responses/Problem"},
              "401": {"$ref": "#/components/responses/Problem"},
              "403": {"$ref": "#/components/responses/Problem"},
              "404": {"$ref": "#/components/responses/Problem"},
              "409": {"$ref": "#/components/responses/Problem"},
              "429": {"$ref": "#/components/responses/Problem"},
              "503": {"$ref": "#/components/responses/Problem"}
            }
          }
        },
        "/v1/appointments/{id}/video": {
          "get": {
            "operationId": "joinAppointmentVideo",
            "summary": "The video appointment's Daily room and a meeting token of the caller's own (its patient as a participant, staff as owners); a room not made yet is tried at once. Audited. 409 in person, canceled or over; 503 while the room cannot be made.",
            "security": [{"bearer": []}],
            "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}}],
            "responses": {
              "200": {"description": "Where and how to join (never cached).", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/VideoAccess"}}}},
              "400": {"$ref": "#/components/responses/Problem"},
              "401": {"$ref": "#/components/responses/Problem"},
              "403": {"$ref": "#/components/responses/Problem"},
              "404": {"$ref": "#/components/responses/Problem"},
              "409": {"$ref": "#/components/responses/Problem"},
              "429": {"$ref": "#/components/responses/Problem"},
              "502": {"$ref": "#/components/responses/Problem"},
              "503": {"$ref": "#/components/responses/Problem"}
            }
          }
        },
        "/v1/appointments/{id}/followups": {
          "get": {
            "operationId": "listAppointmentFollowups",
            "summary": "What the booking owes after it committed (the confirmation e-mail, the video room) and where each stands (staff only).",
            "security": [{"bearer": []}],
            "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}}],
            "responses": {
              "200": {"description": "The follow-ups, by kind.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/FollowupList"}}}},
              "400": {"$ref": "#/components/responses/Problem"},
              "401": {"$ref": "#/components/responses/Problem"},
              "403": {"$ref": "#/components/responses/Problem"},
              "404": {"$ref": "#/components/responses/Problem"},
              "429": {"$ref": "#/components/responses/Problem"},
              "503": {"$ref": "#/components/responses/Problem"}
            }
          }
        },
        "/v1/telemetry/session-tokens": {
          "post": {
            "operationId": "startTelemetrySession",
            "summary": "A patient starts a telemetry session: a new session id and a short-lived token bound to its clinic, its patient record and the session (patients only; audited).",
            "security": [{"bearer": []}],
            "responses": {
              "201": {"description": "Started.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TelemetrySession"}}}},
              "401": {"$ref": "#/components/responses/Problem"},
              "403": {"$ref": "#/components/responses/Problem"},
              "404": {"$ref": "#/components/responses/Problem"},
              "429": {"$ref": "#/components/responses/Problem"},
              "503": {"$ref": "#/components/responses/Problem"}
            }
          }
        },
        "/v1/files": {
          "post": {
            "operationId": "requestUpload",
            "summary": "Asks for an upload: the surface's MIME allow-list and size cap are checked before a URL is signed (PUT, 5 minutes; type and length signed into it). Patients upload to their own record (patient-files, signatures); audited.",
            "security": [{"bearer": []}],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/UploadRequest"}}}},
            "responses": {
              "201": {"description": "The pending file and its upload URL.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Upload"}}}},
              "400": {"$ref": "#/components/responses/Problem"},
              "401": {"$ref": "#/components/responses/Problem"},
              "403": {"$ref": "#/components/responses/Problem"},
              "404": {"$ref": "#/components/responses/Problem"},
              "422": {"$ref": "#/components/responses/Problem"},
              "429": {"$ref": "#/components/responses/Problem"},
              "503": {"$ref": "#/components/responses/Problem"}
            }
          }
        },
        "/v1/files/{id}": {
          "get": {
            "operationId": "getFile",
            "summary": "A file the caller may see (the clinic's staff, the patient it belongs to); 404 otherwise.",
            "security": [{"bearer": []}],
            "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}}],
            "responses": {
              "200": {"description": "The file.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/File"}}}},
              "400": {"$ref": "#/components/responses/Problem"},
              "401": {"$ref": "#/components/responses/Problem"},
              "403": {"$ref": "#/components/responses/Problem"},
              "404": {"$ref": "#/components/responses/Problem"},
              "429": {"$ref": "#/components/responses/Problem"},
              "503": {"$ref": "#/components/responses/Problem"}
            }
          }
        },
        "/v1/files/{id}/complete": {
          "post": {
            "operationId": "completeUpload",
            "summary": "After the browser's PUT: checks the object arrived with the signed size and type, then marks the file uploaded (409 while nothing arrived); audited.",
            "security": [{"bearer": []}],
            "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}}],
            "responses": {
              "200": {"description": "The uploaded file.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/File"}}}},
              "400": {"$ref": "#/components/responses/Problem"},
              "401": {"$ref": "#/components/responses/Problem"},
              "403": {"$ref": "#/components/responses/Problem"},
              "404": {"$ref": "#/components/responses/Problem"},
              "409": {"$ref": "#/components/responses/Problem"},
              "429": {"$ref": "#/components/responses/Problem"},
              "503": {"$ref": "#/components/responses/Problem"}
            }
          }
        },
        "/v1/files/{id}/download": {
          "get": {
            "operationId": "downloadFile",
            "summary": "A download URL (GET, 15 minutes) for an uploaded file the caller may see; audited.",
            "security": [{"bearer": []}],
            "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}}],
            "responses": {
              "200": {"description": "The file and its download URL.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Download"}}}},
              "400": {"$ref": "#/components/responses/Problem"},
              "401": {"$ref": "#/components/responses/Problem"},
              "403": {"$ref": "#/components/responses/Problem"},
              "404": {"$ref": "#/components/responses/Problem"},
              "409": {"$ref": "#/components/responses/Problem"},
              "429": {"$ref": "#/components/responses/Problem"},
              "503": {"$ref": "#/components/responses/Problem"}
            }
          }
        },
        "/v1/objects/{organization}/{surface}/{file}": {
          "parameters": [
            {"name": "organization", "in": "path", "required": true, "schema": {"type": "string"}},
            {"name": "surface", "in": "path", "required": true, "schema": {"type": "string"}},
            {"name": "file", "in": "path", "required": true, "schema": {"type": "string"}},
            {"name": "X-Restartix-Expires", "in": "query", "required": false, "schema": {"type": "string"}},
            {"name": "X-Restartix-Signature", "in": "query", "required": false, "schema": {"type": "string"}}
          ],
          "put": {
            "operationId": "putLocalObject",
            "summary": "The embedded default's uploads store (with an uploads bucket, S3 serves its own URLs): a presigned upload, checked by the store's verifier before a byte is read; exactly the signed type and length; an object stored once is not replaced (409).",
            "security": [],
            "requestBody": {"required": false, "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
            "responses": {
              "200": {"description": "Stored."},
              "400": {"$ref": "#/components/responses/Problem"},
              "403": {"$ref": "#/components/responses/Problem"},
              "409": {"$ref": "#/components/responses/Problem"},
              "501": {"$ref": "#/components/responses/Problem"},
              "503": {"$ref": "#/components/responses/Problem"}
            }
          },
          "get": {
            "operationId": "getLocalObject",
            "summary": "A presigned download from the embedded default's uploads store.",
            "security": [],
            "responses": {
              "200": {"description": "The object's bytes.", "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
              "400": {"$ref": "#/components/responses/Problem"},
              "403": {"$ref": "#/components/responses/Problem"},
              "404": {"$ref": "#/components/responses/Problem"},
              "501": {"$ref": "#/components/responses/Problem"},
              "503": {"$ref": "#/components/responses/Problem"}
            }
          }
        },
        "/v1/telemetry/sessions": {
          "get": {
            "operationId": "listTelemetrySessions",
            "summary": "The newest recorded telemetry sessions the caller may see (a patient its own, the clinic's staff the clinic's), of one patient when patient_id is given; without their repetitions.",
            "security": [{"bearer": []}],
            "parameters": [
              {"name": "patient_id", "in": "query", "required": false, "schema": {"type": "string", "format": "uuid"}},
              {"name": "limit", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 50}}
            ],
            "responses": {
              "200": {"description": "The sessions, newest first.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TelemetrySessionList"}}}},
              "400": {"$ref": "#/components/responses/Problem"},
              "401": {"$ref": "#/components/responses/Problem"},
              "403": {"$ref": "#/components/responses/Problem"},
              "422": {"$ref": "#/components/responses/Problem"},
              "429": {"$ref": "#/components/responses/Problem"},
              "503": {"$ref": "#/components/responses/Problem"}
            }
          }
        },
        "/v1/telemetry/sessions/{id}": {
          "get": {
            "operationId": "getTelemetrySession",
            "summary": "A recorded telemetry session's pose metrics and repetitions; 404 when the caller may not see it (another clinic's, another patient's for a patient).",
            "security": [{"bearer": []}],
            "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}}],
            "responses": {
              "200": {"description": "The session.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TelemetrySessionMetrics"}}}},
              "400": {"$ref": "#/components/responses/Problem"},
              "401": {"$ref": "#/components/responses/Problem"},
              "403": {"$ref": "#/components/responses/Problem"},
              "404": {"$ref": "#/components/responses/Problem"},
              "429": {"$ref": "#/components/responses/Problem"},
              "503": {"$ref": "#/components/responses/Problem"}
            }
          }
        },
        "/internal/v1/telemetry/sessions/{id}/aggregates": {
          "post": {
            "operationId": "recordTelemetryAggregates",
            "summary": "A finished telemetry session's aggregates, from the Telemetry API (scope telemetry:aggregates:write): written under the patient's tenant context with the exercise log and an audit row; idempotent by session (200 duplicate).",
            "security": [{"serviceAccount": []}],
            "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}, "description": "The session id its token names."}],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SessionAggregates"}}}},
            "responses": {
              "200": {"description": "Recorded before: nothing written.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RecordedAggregates"}}}},
              "201": {"description": "Recorded.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RecordedAggregates"}}}},
              "400": {"$ref": "#/components/responses/Problem"},
              "401": {"$ref": "#/components/responses/Problem"},
              "403": {"$ref": "#/components/responses/Problem"},
              "404": {"$ref": "#/components/responses/Problem"},
              "413": {"$ref": "#/components/responses/Problem"},
              "422": {"$ref": "#/components/responses/Problem"},
              "429": {"$ref": "#/components/responses/Problem"},
              "503": {"$ref": "#/components/responses/Problem"}
            }
          }
        },
        "/internal/v1/whoami": {
          "get": {
            "operationId": "serviceWhoAmI",
            "summary": "The calling service, as its service-account token says (a deploy check that the services' secrets agree).",
            "security": [{"serviceAccount": []}],
            "responses": {
              "200": {"description": "The calling service.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ServiceWhoAmI"}}}},
              "401": {"$ref": "#/components/responses/Problem"},
              "429": {"$ref": "#/components/responses/Problem"},
              "503": {"$ref": "#/components/responses/Problem"}
            }
          }
        },
        \#(ServiceOpenAPI.metricsAndDocumentPaths)
      }
    }
    """#
}
