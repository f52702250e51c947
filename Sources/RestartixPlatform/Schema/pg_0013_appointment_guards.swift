// Migration 13 for PostgreSQL: two guards on appointments that migration 11 lacked, found by
// review from the app role's SQL.
//
// - A canceled appointment stays canceled: the app role may update `status`, and the booking
//   check allowed canceled -> booked, so an UPDATE could bring a booking back with no hold and
//   no fence (taking a slot someone else holds). A slot is booked again only by a new booking.
// - A fence may not run ahead of the database's clock by more than five minutes: fences are the
//   greater of the last + 1 and the hold store's clock in µs, so an honest one never does; one
//   written far ahead (the largest bigint) would have made every later booking of the slot
//   stale, for good (`appointments_fence_range_check`).

import RestartixKit

extension MigrationSet {
    static let postgresAppointmentGuards = Migration(version: 13, name: "appointment_guards", sql: #"""
        DO $do$
        BEGIN
            EXECUTE format($f$
                CREATE FUNCTION restartix_appointment_status_guard()
                RETURNS trigger
                LANGUAGE plpgsql
                SET search_path = %I, pg_temp
                AS $$
                BEGIN
                    IF OLD.status = 'canceled' AND NEW.status IS DISTINCT FROM 'canceled' THEN
                        RAISE EXCEPTION 'permission denied for table appointments: a canceled appointment stays canceled'
                            USING ERRCODE = '42501';
                    END IF;
                    RETURN NEW;
                END;
                $$
            $f$, current_schema());
            EXECUTE format($f$
                CREATE OR REPLACE FUNCTION restartix_appointment_fence()
                RETURNS trigger
                LANGUAGE plpgsql
                SECURITY DEFINER
                SET search_path = %I, pg_temp
                AS $$
                BEGIN
                    IF NEW.fence > (extract(epoch from clock_timestamp()) * 1000000)::bigint + 300000000 THEN
                        RAISE EXCEPTION 'new row for relation "appointments" violates check constraint "appointments_fence_range_check"'
                            USING ERRCODE = '23514', CONSTRAINT = 'appointments_fence_range_check', TABLE = 'appointments';
                    END IF;
                    INSERT INTO slot_fences AS f (organization_id, slot, fence)
                    VALUES (NEW.organization_id, NEW.slot, NEW.fence)
                    ON CONFLICT (organization_id, slot) DO UPDATE SET fence = excluded.fence
                    WHERE f.fence < excluded.fence;
                    IF NOT FOUND THEN
                        RAISE EXCEPTION 'new row for relation "appointments" violates check constraint "appointments_fence_order_check"'
                            USING ERRCODE = '23514', CONSTRAINT = 'appointments_fence_order_check', TABLE = 'appointments',
                                  DETAIL = 'a later hold of the slot has been booked with';
                    END IF;
                    RETURN NULL;
                END;
                $$
            $f$, current_schema());
        END;
        $do$;
        REVOKE EXECUTE ON FUNCTION restartix_appointment_status_guard() FROM PUBLIC;
        REVOKE EXECUTE ON FUNCTION restartix_appointment_fence() FROM PUBLIC;
        CREATE TRIGGER appointments_status_guard BEFORE UPDATE OF status ON appointments
            FOR EACH ROW EXECUTE FUNCTION restartix_appointment_status_guard();

        SELECT restartix_record_security_baseline();
        """#)
}
