-- The local replica. Ids are 16-byte UUIDs stored as BLOBs.
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;

-- One Automerge document per entity.
CREATE TABLE IF NOT EXISTS docs (
    id     BLOB PRIMARY KEY,
    kind   TEXT NOT NULL,
    epoch  INTEGER NOT NULL,
    bytes  BLOB NOT NULL,
    -- The materialized record (postcard), read by detail screens instead of loading the document.
    record BLOB NOT NULL,
    -- How many change chunks were appended to `bytes` since it was last saved whole.
    tail   INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

-- Local changes not yet acknowledged by the server, in the order they were made.
CREATE TABLE IF NOT EXISTS outbox (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    doc    BLOB NOT NULL,
    kind   TEXT NOT NULL,
    epoch  INTEGER NOT NULL,
    change BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_doc ON outbox(doc);

-- Documents that left the scope while they still had local changes to push.
CREATE TABLE IF NOT EXISTS evict_pending (id BLOB PRIMARY KEY) WITHOUT ROWID;

-- During a full resync: documents the server has not sent again yet.
CREATE TABLE IF NOT EXISTS resync_pending (id BLOB PRIMARY KEY) WITHOUT ROWID;

-- What the server lists on each document for people: open conflicts (`settled` 0, a dispatcher
-- decides) and values a field's policy settled against someone (`settled` 1, shown to whoever
-- lost until someone acknowledges it). `data` is the `FieldConflict` as JSON: typed values and
-- authors, never display text.
CREATE TABLE IF NOT EXISTS conflicts (
    doc     BLOB NOT NULL,
    field   TEXT NOT NULL,
    settled INTEGER NOT NULL,
    data    TEXT NOT NULL,
    PRIMARY KEY (doc, field)
) WITHOUT ROWID;

-- Edits the server refused, kept so the user sees what did not go through and can apply it
-- again: `reason` is the server's typed reason (JSON), `refused` the field changes the refused
-- edits made (JSON list of `FieldChange`: the note text, the values).
CREATE TABLE IF NOT EXISTS rejections (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    doc     BLOB NOT NULL,
    reason  TEXT NOT NULL,
    at      INTEGER NOT NULL,
    refused TEXT NOT NULL DEFAULT '[]'
);

-- Materialized tables for screens.
CREATE TABLE IF NOT EXISTS jobs (
    id         BLOB PRIMARY KEY,
    date       TEXT NOT NULL,
    start      TEXT,
    duration   INTEGER NOT NULL,
    status     TEXT NOT NULL,
    priority   TEXT NOT NULL,
    title      TEXT NOT NULL,
    technician BLOB,
    customer   BLOB NOT NULL,
    location   BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS jobs_date ON jobs(date, start);

-- Lead technician and assistants, for "my jobs of the day".
CREATE TABLE IF NOT EXISTS job_people (
    technician BLOB NOT NULL,
    date       TEXT NOT NULL,
    job        BLOB NOT NULL,
    PRIMARY KEY (technician, date, job)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS job_people_job ON job_people(job);

CREATE TABLE IF NOT EXISTS equipment (
    id       BLOB PRIMARY KEY,
    serial   TEXT NOT NULL,
    mac      TEXT,
    kind     TEXT NOT NULL,
    status   TEXT NOT NULL,
    location BLOB
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS equipment_serial ON equipment(serial);
CREATE INDEX IF NOT EXISTS equipment_mac ON equipment(mac);
CREATE INDEX IF NOT EXISTS equipment_location ON equipment(location);

CREATE TABLE IF NOT EXISTS customers (
    id   BLOB PRIMARY KEY,
    name TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS locations (
    id       BLOB PRIMARY KEY,
    customer BLOB NOT NULL,
    address  TEXT NOT NULL,
    city     TEXT NOT NULL DEFAULT ''
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS locations_customer ON locations(customer);

CREATE TABLE IF NOT EXISTS subscriptions (
    id       BLOB PRIMARY KEY,
    customer BLOB NOT NULL,
    location BLOB NOT NULL,
    plan     TEXT NOT NULL,
    status   TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS subscriptions_location ON subscriptions(location);

CREATE TABLE IF NOT EXISTS technicians (
    id   BLOB PRIMARY KEY,
    name TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS tags (
    id    BLOB PRIMARY KEY,
    label TEXT NOT NULL
) WITHOUT ROWID;

-- Customer names and addresses, accent-insensitive, prefix-searchable.
CREATE VIRTUAL TABLE IF NOT EXISTS search USING fts5(
    id UNINDEXED, kind UNINDEXED, text,
    tokenize = 'unicode61 remove_diacritics 2',
    prefix = '2 3'
);

-- Stable FTS rowid per document, so a row can be replaced without scanning the index.
CREATE TABLE IF NOT EXISTS search_ids (
    rid INTEGER PRIMARY KEY,
    id  BLOB NOT NULL UNIQUE
);

-- Photos taken on this device: the bytes stay in the photos folder until the server has them.
CREATE TABLE IF NOT EXISTS photo_uploads (
    sha256   TEXT PRIMARY KEY,
    job      BLOB NOT NULL,
    file     TEXT NOT NULL,
    uploaded INTEGER NOT NULL DEFAULT 0
);

-- The last reading of each customer's box (from the server's ACS view), shown with its age when
-- the server cannot be reached. A cache: typed JSON of `shared::network::Reading`.
CREATE TABLE IF NOT EXISTS network_readings (
    equipment TEXT PRIMARY KEY,
    reading   TEXT NOT NULL
) WITHOUT ROWID;
