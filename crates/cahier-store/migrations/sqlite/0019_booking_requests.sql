-- Issue #5: bookings made on a field replica are requests, confirmed or refused by the lab
-- server at sync (docs/SYNC.md, "Booking requests"). A slot is exclusive in real time, so only
-- the server may hold one: a replica never writes a confirmed booking of its own.

-- Replica side: each booking asked for on this device. Ids start at 1,000,000,000 (seeded
-- below) so that API v2 event ids of requests never collide with the server's bookings, which
-- a replica mirrors in `bookings` under their server ids. The resource and experiment are named
-- by UUID, not by foreign key: a request outlives the local copy of its resource (access
-- withdrawn meanwhile), and is then refused by the server with its reason, never dropped.
CREATE TABLE booking_requests (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    -- Random (v4) id sent to the server: its idempotency key.
    uuid            TEXT NOT NULL UNIQUE,
    resource_uuid   TEXT NOT NULL,
    user_id         INTEGER NOT NULL,
    start_ms        INTEGER NOT NULL,
    end_ms          INTEGER NOT NULL,
    title           TEXT NOT NULL,
    experiment_uuid TEXT,
    -- The device's clock when the request was made or last changed: recorded, never trusted.
    device_at       INTEGER NOT NULL,
    -- pending (not yet answered) | confirmed (booked by the server) | refused (with reason)
    -- | dismissed (a refusal the user has read). Pending requests removed by the user are
    -- deleted: they never left the device.
    state           TEXT NOT NULL CHECK (state IN ('pending', 'confirmed', 'refused', 'dismissed')),
    -- The server's reason and its code (overlap, forbidden, invalid, not_found, conflict).
    reason          TEXT,
    reason_code     TEXT,
    -- The server's booking (confirmed).
    booking_id      INTEGER,
    -- When the answer arrived (device clock).
    decided_at      INTEGER,
    -- When a sync last sent it (device clock). A request sent but not answered (the answer
    -- was cut off) may already be booked at the lab: it cannot be changed or withdrawn until
    -- the next sync brings the server's recorded answer.
    sent_at         INTEGER,
    CHECK (end_ms > start_ms)
);
CREATE INDEX booking_requests_by_resource ON booking_requests(resource_uuid, start_ms);
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'booking_requests', 999999999
    WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'booking_requests');

-- A replica made before this migration kept bookings in its own `bookings` table, which were
-- never sent: they become requests, to be decided at the next sync.
INSERT INTO booking_requests (uuid, resource_uuid, user_id, start_ms, end_ms, title,
                              experiment_uuid, device_at, state)
    SELECT lower(hex(randomblob(16))), e.uuid, b.user_id, b.start_ms, b.end_ms, b.title,
           (SELECT x.uuid FROM entities x WHERE x.id = b.experiment_id), b.created_at, 'pending'
    FROM bookings b JOIN entities e ON e.id = b.entity_id
    WHERE b.state IN ('confirmed', 'pending')
      AND EXISTS (SELECT 1 FROM replica_state WHERE key = 'device');
DELETE FROM bookings WHERE EXISTS (SELECT 1 FROM replica_state WHERE key = 'device');

-- Server side: the outcome of every request a device sent, by request id, written in the
-- transaction that decides it. A request sent again (a sync cut off after the server answered)
-- gets the same outcome and never books twice.
CREATE TABLE booking_request_outcomes (
    request_uuid TEXT PRIMARY KEY,
    device_id    INTEGER NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    -- booked | refused
    outcome      TEXT NOT NULL CHECK (outcome IN ('booked', 'refused')),
    booking_id   INTEGER REFERENCES bookings(id),
    reason       TEXT,
    reason_code  TEXT,
    -- The device's clock when the request was made (shown, never trusted).
    device_at    INTEGER,
    received_at  INTEGER NOT NULL
);
