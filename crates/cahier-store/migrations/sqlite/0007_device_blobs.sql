-- Files a device proved it holds by uploading them whole (PUT /api/sync/v1/blobs/{sha256}).
-- A document pushed by that device may then attach them. Without this record, knowing a
-- file's hash would be enough to attach it to one's own entry and then download it, bypassing
-- the access rules of the entries that really hold it. (Number 6 is taken by another branch.)
CREATE TABLE device_blobs (
    device_id    INTEGER NOT NULL REFERENCES devices(id),
    sha256       TEXT NOT NULL,
    received_at  INTEGER NOT NULL,
    PRIMARY KEY (device_id, sha256)
) WITHOUT ROWID;
