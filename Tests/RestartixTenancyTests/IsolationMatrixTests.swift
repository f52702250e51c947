import Foundation
import RestartixKit
import RestartixTenancy
import Testing

/// Every tenant table x {select, insert, update, delete} x {own clinic, other clinic, no
/// context, patient-self, patient-other}, generated from the table list and the access rules,
/// each cell asserting its exact outcome. Own-clinic cells succeed, so a policy that denies
/// everything fails here as surely as one that leaks.
@Suite("Tenant isolation matrix", .timeLimit(.minutes(3)))
struct IsolationMatrixTests {
    enum Principal: String, CaseIterable, Sendable {
        case ownClinic, otherClinic, noContext, patientSelf, patientOther
    }

    enum Outcome: Equatable, CustomStringConvertible {
        case rows(Int)
        case inserted
        case affected(Int)
        case rowLevelSecurityDenied
        case privilegeDenied
        case failed(String)

        var description: String {
            switch self {
            case .rows(let n): "rows(\(n))"
            case .inserted: "inserted"
            case .affected(let n): "affected(\(n))"
            case .rowLevelSecurityDenied: "denied by row-level security"
            case .privilegeDenied: "denied by privileges"
            case .failed(let text): "failed: \(text)"
            }
        }
    }

    /// The rule the database must implement, stated once.
    static func expected(_ table: MatrixTable, _ operation: MatrixTable.Operation, _ principal: Principal) -> Outcome {
        guard table.granted.contains(operation) else { return .privilegeDenied }
        // The fixture's impersonation session names every fixture patient, and the app role may
        // not delete a patient from under one (the cascade would erase the session).
        if table.name == "patients", operation == .delete, principal == .ownClinic { return .privilegeDenied }
        let allowed = switch principal {
        case .ownClinic: !table.managersOnly.contains(operation)
        case .otherClinic, .noContext: false
        case .patientSelf: table.patientOwn.contains(operation) || table.patientClinicWide.contains(operation)
        case .patientOther: table.patientClinicWide.contains(operation)
        }
        return switch operation {
        case .select: .rows(allowed ? 1 : 0)
        case .insert: allowed ? .inserted : .rowLevelSecurityDenied
        case .update, .delete: .affected(allowed ? 1 : 0)
        }
    }

    @Test("every table, operation and principal has its exact outcome", arguments: TenancyBackend.all)
    func matrix(backend: TenancyBackend) async throws {
        let databases = try await backend.open()
        let fixture = try await TenancyFixture.make(admin: databases.admin)
        do {
            try await Self.assertMatrix(fixture: fixture, app: databases.app, raw: databases.raw, label: "\(backend)")
        } catch {
            try? await fixture.remove(admin: databases.admin)
            await databases.close()
            throw error
        }
        try await fixture.remove(admin: databases.admin)
        await databases.close()
    }

    /// Every cell against `fixture`'s rows (also run on a restored backup by the restore drill);
    /// each cell rolls back.
    static func assertMatrix(fixture: TenancyFixture, app: TenantDatabase, raw: Database, label: String) async throws {
        var cells = 0
        for table in MatrixTable.all {
            for operation in MatrixTable.Operation.allCases {
                for principal in Principal.allCases {
                    let actual = try await IsolationMatrixTests().observe(table, operation, principal, fixture: fixture, app: app, raw: raw)
                    let expected = Self.expected(table, operation, principal)
                    #expect(actual == expected, "\(label) \(table) \(operation) as \(principal)")
                    cells += 1
                }
            }
        }
        #expect(cells == MatrixTable.all.count * 4 * Principal.allCases.count)
        // The rows are all still there: every cell rolled back.
        let remaining = try await app.query(fixture.context(staffOf: fixture.a), "SELECT count(*) AS n FROM patients")
        #expect(try remaining.first?.decode("n", as: Int.self) == 2)
    }

    func observe(
        _ table: MatrixTable,
        _ operation: MatrixTable.Operation,
        _ principal: Principal,
        fixture: TenancyFixture,
        app: TenantDatabase,
        raw: Database
    ) async throws -> Outcome {
        let ids = fixture.rows[table.name]!
        let (context, target, organization, tie): (TenantContext?, UUID, UUID, TenancyFixture.Patient) = switch principal {
        case .ownClinic: (fixture.context(staffOf: fixture.a), ids.a2, fixture.a.id, fixture.a2)
        case .otherClinic: (fixture.context(staffOf: fixture.a), ids.b, fixture.b.id, fixture.b1)
        case .noContext: (nil, ids.a1, fixture.a.id, fixture.a1)
        case .patientSelf: (fixture.context(patient: fixture.a1, in: fixture.a), ids.a1, fixture.a.id, fixture.a1)
        case .patientOther: (fixture.context(patient: fixture.a1, in: fixture.a), ids.a2, fixture.a.id, fixture.a2)
        }
        let statement: SQLQuery = switch operation {
        case .select:
            "SELECT count(*) AS n FROM \(identifier: table.name) WHERE id = \(target)"
        case .insert:
            table.insert(id: UUIDv7.generate(), organization: organization, tie: tie, fixture: fixture, fresh: true, actor: context?.userID)
        case .update:
            "UPDATE \(identifier: table.name) SET \(identifier: table.updateColumn ?? table.tenantColumn) = \(identifier: table.updateColumn ?? table.tenantColumn) WHERE id = \(target)"
        case .delete:
            "DELETE FROM \(identifier: table.name) WHERE id = \(target)"
        }
        var outcome: Outcome = .failed("not run")
        do {
            if let context {
                try await app.withTenant(context) { tx in
                    outcome = await Self.run(statement, operation, on: tx)
                    throw Rollback()
                }
            } else {
                try await raw.transaction { tx in
                    outcome = await Self.run(statement, operation, on: tx)
                    throw Rollback()
                }
            }
        } catch is Rollback {}
        return outcome
    }

    static func run<E: SQLExecutor & ~Copyable>(
        _ statement: SQLQuery,
        _ operation: MatrixTable.Operation,
        on executor: borrowing E
    ) async -> Outcome {
        do {
            let result = try await executor.run(statement)
            switch operation {
            case .select: return .rows(try result.rows.first?.decode("n", as: Int.self) ?? -1)
            case .insert: return result.affectedRows == 1 ? .inserted : .failed("inserted \(result.affectedRows) rows")
            case .update, .delete: return .affected(result.affectedRows)
            }
        } catch let error as DatabaseError {
            switch error.code {
            case .rowLevelSecurityViolation: return .rowLevelSecurityDenied
            case .insufficientPrivilege: return .privilegeDenied
            default: return .failed("\(error.code) \(error.serverMessage ?? "")")
            }
        } catch {
            return .failed("\(error)")
        }
    }
}
