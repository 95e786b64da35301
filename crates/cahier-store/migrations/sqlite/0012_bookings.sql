-- Booking calendar for resources (issue #4). Bookings are authoritative records changed only
-- by the server (not Automerge documents): a slot is exclusive in real time, so the server
-- decides every booking inside one write transaction (`BEGIN IMMEDIATE`), which serialises
-- concurrent requests for one slot.

-- One row per resource that has booking rules; a resource without a row is not bookable.
-- NULL limits mean "no limit".
CREATE TABLE booking_rules (
    entity_id       INTEGER PRIMARY KEY REFERENCES entities(id) ON DELETE CASCADE,
    is_bookable     INTEGER NOT NULL DEFAULT 0,
    -- eLabFTW's book_can_overlap; off by default here (an instrument holds one booking).
    can_overlap     INTEGER NOT NULL DEFAULT 0,
    -- Longest booking, minutes (book_max_minutes).
    max_minutes     INTEGER CHECK (max_minutes IS NULL OR max_minutes > 0),
    -- Bookings not yet ended one user may hold on this resource (book_max_slots).
    max_slots       INTEGER CHECK (max_slots IS NULL OR max_slots > 0),
    -- How many days ahead a booking may start (booking_window_days).
    window_days     INTEGER CHECK (window_days IS NULL OR window_days > 0),
    -- Whether bookers may cancel their own bookings at all (book_is_cancellable).
    is_cancellable  INTEGER NOT NULL DEFAULT 1,
    -- Bookers cannot cancel within this many minutes of the start (book_cancel_minutes).
    cancel_minutes  INTEGER NOT NULL DEFAULT 0 CHECK (cancel_minutes >= 0),
    -- Bookings by others than the owner and team admins wait for their approval.
    needs_approval  INTEGER NOT NULL DEFAULT 0,
    updated_at      INTEGER NOT NULL,
    updated_by      INTEGER NOT NULL REFERENCES users(id)
);

-- Times are UTC milliseconds; a booking covers [start_ms, end_ms).
CREATE TABLE bookings (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    entity_id     INTEGER NOT NULL REFERENCES entities(id),
    user_id       INTEGER NOT NULL REFERENCES users(id),
    start_ms      INTEGER NOT NULL,
    end_ms        INTEGER NOT NULL,
    title         TEXT NOT NULL,
    experiment_id INTEGER REFERENCES entities(id),
    -- confirmed | pending (waits for approval) | cancelled | refused. Cancelled and refused
    -- rows are kept (who booked what stays traceable); they no longer hold the slot.
    state         TEXT NOT NULL CHECK (state IN ('confirmed', 'pending', 'cancelled', 'refused')),
    created_at    INTEGER NOT NULL,
    modified_at   INTEGER NOT NULL,
    -- Who approved, refused or cancelled it, and when.
    decided_by    INTEGER REFERENCES users(id),
    decided_at    INTEGER,
    CHECK (end_ms > start_ms)
);
CREATE INDEX bookings_by_resource ON bookings(entity_id, start_ms);
CREATE INDEX bookings_by_user ON bookings(user_id, start_ms);

-- The secret of each user's calendar feeds (iCal URLs opened without a session by calendar
-- applications). Kept in clear, unlike API keys: the URL is shown again on every calendar
-- page, and it only reads booking titles and times the user may already read. Regenerating
-- replaces it; revoking deletes it.
CREATE TABLE calendar_tokens (
    user_id    INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    token      TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);
