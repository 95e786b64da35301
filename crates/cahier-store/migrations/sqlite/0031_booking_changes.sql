-- Issue #5: a field replica also asks for changes of the lab's bookings (cancel, move, approve,
-- refuse), decided by the lab server at sync like new bookings (docs/SYNC.md, "Booking
-- requests"). A change is a row of `booking_requests` naming the server's booking it changes.

-- Replica side. `kind`: new (a booking asked for) | cancel | move | approve | refuse.
-- `target_booking_id`: the server's booking (its id in the mirror) a change names. For a move,
-- start_ms and end_ms are the times asked for; for the other changes, the booking's as it was
-- mirrored when asked (shown if the booking is gone by the time the answer arrives).
ALTER TABLE booking_requests ADD COLUMN kind TEXT NOT NULL DEFAULT 'new'
    CHECK (kind IN ('new', 'cancel', 'move', 'approve', 'refuse'));
ALTER TABLE booking_requests ADD COLUMN target_booking_id INTEGER;
CREATE INDEX booking_requests_by_target ON booking_requests(target_booking_id)
    WHERE target_booking_id IS NOT NULL;

-- Server side: which change an outcome decided (NULL: a new booking). `booking_id` is then the
-- booking changed, `outcome` 'booked' meaning the change was made.
ALTER TABLE booking_request_outcomes ADD COLUMN action TEXT;
