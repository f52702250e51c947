import Foundation
import Hummingbird
import RestartixKit
import RestartixPlatform
import RestartixTenancy
import ServiceSupport

/// `POST /v1/patients`' body.
struct NewPatientRequest: Decodable, Sendable {
    let name: String
    let date_of_birth: String?
    let email: String?
    let phone: String?
    /// The patient's own user account (a patient member of the clinic), for patient-self access.
    let user_id: String?

    /// The optional fields may be absent, never `null` (the document's rule).
    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        name = try container.decode(String.self, forKey: .name)
        date_of_birth = try JSONBodyDecoder.optional(String.self, .date_of_birth, in: container)
        email = try JSONBodyDecoder.optional(String.self, .email, in: container)
        phone = try JSONBodyDecoder.optional(String.self, .phone, in: container)
        user_id = try JSONBodyDecoder.optional(String.self, .user_id, in: container)
    }

    enum CodingKeys: String, CodingKey { case name, date_of_birth, email, phone, user_id }
}

/// `PATCH /v1/patients/{id}`' body: a field absent stays as it is; `null` clears an optional
/// one (`name` cannot be cleared).
struct PatientPatchRequest: Decodable, Sendable {
    let change: PatientChange

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        func field(_ key: CodingKeys) throws -> PatientChange.Field<String> {
            guard container.contains(key) else { return .unchanged }
            if try container.decodeNil(forKey: key) { return .cleared }
            return .set(try container.decode(String.self, forKey: key))
        }
        change = PatientChange(
            name: try JSONBodyDecoder.optional(String.self, .name, in: container),
            dateOfBirth: try field(.date_of_birth), email: try field(.email), phone: try field(.phone)
        )
    }

    enum CodingKeys: String, CodingKey { case name, date_of_birth, email, phone }
}

/// `POST /v1/patients/search`' body (an e-mail address travels in a body, never in a URL that
/// proxies and browsers keep).
struct PatientSearchRequest: Decodable, Sendable {
    let email: String
}

/// A patient as the API shows it: the opened personal data, ids lower case, times ISO 8601.
struct PatientBody: ResponseCodable, Equatable {
    let id: String
    let organization_id: String
    let user_id: String?
    let name: String
    let date_of_birth: String?
    let email: String?
    let phone: String?
    let created_at: String
    let updated_at: String

    init(_ record: PatientRecord) {
        id = record.id.lowercasedString
        organization_id = record.organizationID.lowercasedString
        user_id = record.userID?.lowercasedString
        name = record.pii.name
        date_of_birth = record.pii.dateOfBirth
        email = record.pii.email
        phone = record.pii.phone
        created_at = APITime.string(record.createdAt)
        updated_at = APITime.string(record.updatedAt)
    }
}

/// `GET /v1/patients`' answer: a page and the cursor of the next (absent on the last page).
struct PatientPageBody: ResponseCodable, Equatable {
    let patients: [PatientBody]
    let next: String?
}

/// `POST /v1/patients/search`' answer.
struct PatientSearchBody: ResponseCodable, Equatable {
    let patients: [PatientBody]
}

/// The clinic's patients (the library's ``Patients``: every rule is there): create, read,
/// change, delete, list in keyset pages, find by e-mail. A patient principal sees and changes
/// only its own record; another clinic's patient is a 404 like one that never existed.
func addPatientRoutes(to group: RouterGroup<CoreRequestContext>, patients: Patients, membershipsChanged: @escaping @Sendable () -> Void = {}) {
    group.post("patients") { request, context -> EditedResponse<PatientBody> in
        let tenant = try context.requireTenant()
        let body = try await request.decode(as: NewPatientRequest.self, context: context)
        let userID = try body.user_id.map { try uuid($0, field: "user_id") }
        let record = try await patients.create(
            PatientPII(name: body.name, dateOfBirth: body.date_of_birth, email: body.email, phone: body.phone),
            userID: userID, as: tenant, requestID: context.requestID
        )
        var headers = HTTPFields()
        headers[.location] = "/v1/patients/\(record.id.lowercasedString)"
        return EditedResponse(status: .created, headers: headers, response: PatientBody(record))
    }
    group.get("patients") { request, context -> PatientPageBody in
        let tenant = try context.requireTenant()
        let limit = try pageLimit(request, maximum: Patients.maximumPageSize)
        var cursor: UUID?
        if let text = request.uri.queryParameters["after"] {
            guard let parsed = UUID(uuidString: String(text)) else {
                throw RequestError(.invalidField, "after must be the next cursor of a previous page")
            }
            cursor = parsed
        }
        let page = try await patients.list(after: cursor, limit: limit, as: tenant)
        return PatientPageBody(patients: page.patients.map(PatientBody.init), next: page.next?.lowercasedString)
    }
    group.post("patients/search") { request, context -> PatientSearchBody in
        let tenant = try context.requireTenant()
        let body = try await request.decode(as: PatientSearchRequest.self, context: context)
        return PatientSearchBody(patients: try await patients.find(email: body.email, as: tenant).map(PatientBody.init))
    }
    group.get("patients/{id}") { _, context -> PatientBody in
        let tenant = try context.requireTenant()
        return PatientBody(try await patients.get(try uuid(context.parameters.get("id"), field: "id"), as: tenant))
    }
    group.patch("patients/{id}") { request, context -> PatientBody in
        let tenant = try context.requireTenant()
        let id = try uuid(context.parameters.get("id"), field: "id")
        let body = try await request.decode(as: PatientPatchRequest.self, context: context)
        return PatientBody(try await patients.update(id, body.change, as: tenant, requestID: context.requestID))
    }
    group.delete("patients/{id}") { _, context -> Response in
        let tenant = try context.requireTenant()
        // A linked account lost its patient membership: no cached copy may outlive it.
        if try await patients.delete(try uuid(context.parameters.get("id"), field: "id"), as: tenant, requestID: context.requestID) != nil {
            membershipsChanged()
        }
        return Response(status: .noContent)
    }
}
