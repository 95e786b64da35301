-- Files the lab is known to hold, by SHA-256 (docs/SYNC.md, "Files known to be on the
-- server"): uploaded by this replica, answered present by `HEAD /blobs`, downloaded from the
-- lab, or listed in the `uploads` rows of an entry the lab sent (the lab lists only files it
-- holds: every path that adds an attachment there stores or checks the file first, and its
-- sweep keeps every file an `uploads` row names). A push asks `HEAD` only for the files of its
-- entries that are not listed here, instead of one per file at every push. A cache, never a
-- proof: emptied when the lab turns out restored from an older backup, and a hash leaves it
-- when the lab refuses a push whose files it was thought to hold (the file is then checked and
-- sent again). Only a replica fills it; a lab server's stays empty.
CREATE TABLE replica_known_blobs (sha256 TEXT PRIMARY KEY) WITHOUT ROWID;
