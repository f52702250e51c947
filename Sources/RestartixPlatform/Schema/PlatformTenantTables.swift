public import RestartixTenancy

extension PlatformSchema {
    /// The platform's tenant tables and what the app role's principals may do on each: the
    /// registry the SQLite authorizer's grants, the boot check, the sealed-column list and the
    /// tenancy tests' isolation matrix are derived from (see ``TenantTables``).
    ///
    /// The migrations state the same rules in SQL (Postgres policies and grants, the generated
    /// SQLite views and triggers); the boot check refuses a database whose tenant tables or
    /// app-role grants differ from this list, so a table added in one place and not the other
    /// cannot go unnoticed. Adding a tenant table: Documentation/Guides/AddingAMigration.md.
    public static let tenantTables: TenantTables = {
        let all = Set(TenantTable.Command.allCases)
        let managed: Set<TenantTable.Command> = [.insert, .update, .delete]
        // Checked by the test suite; a failure here is a build defect.
        return try! TenantTables([
            TenantTable("organizations", tenantColumn: "id", app: [.select], patientClinicWide: [.select]),
            TenantTable("organization_domains", updatableColumns: ["is_primary"], managersOnly: managed),
            TenantTable(
                "memberships", updatableColumns: ["role"], managersOnly: managed, patientOwn: [.select], ownership: .userColumn("user_id")
            ),
            TenantTable(
                "patients", patientOwn: [.select, .update], ownership: .userColumn("user_id"), sealedColumns: PatientStore.sealedColumns
            ),
            TenantTable("audit_log", app: [.select, .insert], patientClinicWide: [.insert]),
            TenantTable("usage_records", app: [.select, .insert]),
            TenantTable(
                "usage_quotas", app: [.select, .update],
                updatableColumns: ["current_units", "period_start_at", "period_end_at", "updated_at"]
            ),
            TenantTable("usage_summaries", app: [.select]),
            TenantTable("break_glass_sessions", app: [.select]),
            TenantTable("patient_impersonation_sessions", app: [.select]),
            TenantTable("pose_session_metrics", app: all, patientOwn: [.select, .insert], ownership: .definedBySchema),
            TenantTable("pose_rep_metrics", app: all, patientOwn: [.select, .insert], ownership: .definedBySchema),
            TenantTable("media_session_metrics", app: all, patientOwn: [.select, .insert], ownership: .definedBySchema),
            TenantTable("media_buffering_events", app: all, patientOwn: [.select, .insert], ownership: .definedBySchema),
            // Booked and canceled, never deleted by the app (migration 11: fences, the patient's
            // own account checked against its record).
            TenantTable(
                "appointments", app: [.select, .insert, .update],
                updatableColumns: ["status", "booked_slot", "canceled_at", "updated_at"],
                patientOwn: [.select, .insert, .update], ownership: .userColumn("patient_user_id")
            ),
            // Started by the patient, recorded once (migration 12).
            TenantTable(
                "telemetry_sessions", app: [.select, .insert, .update], updatableColumns: ["aggregated_at", "exercise", "rep_count", "media_count"],
                patientOwn: [.select, .insert, .update], ownership: .userColumn("patient_user_id")
            ),
            TenantTable(
                "patient_exercise_logs", app: [.select, .insert, .update],
                updatableColumns: ["done_count", "last_session_id", "last_done_at", "updated_at"],
                patientOwn: [.select, .insert, .update], ownership: .userColumn("patient_user_id")
            ),
            // Written by the database with each booking, settled by the platform (migration 14):
            // the app role only reads them.
            TenantTable("appointment_followups", app: [.select]),
            // Uploads the Core API signed (migration 16): asked for and completed, never deleted
            // by the app; a patient's own through its account.
            TenantTable(
                "files", app: [.select, .insert, .update], updatableColumns: ["state", "uploaded_at"],
                patientOwn: [.select, .insert, .update], ownership: .userColumn("patient_user_id")
            ),
        ], alsoReadable: ["users"])
    }()
}
