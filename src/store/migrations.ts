/**
 * One migration per schema version, each run in a transaction and recorded in
 * PRAGMA user_version. Never edit a migration that has shipped: add the next one.
 */
export const MIGRATIONS: string[] = [
  // 1: devices, lines, leases, events
  `
  CREATE TABLE devices (
    mac        TEXT PRIMARY KEY CHECK (length(mac) = 12 AND mac NOT GLOB '*[^0-9a-f]*'),
    tenant     TEXT NOT NULL,
    vendor     TEXT NOT NULL,
    model      TEXT NOT NULL,
    template   TEXT,
    state      TEXT NOT NULL DEFAULT 'provisioned' CHECK (state IN ('unprovisioned', 'provisioned', 'disabled')),
    label      TEXT NOT NULL DEFAULT '',
    source     TEXT NOT NULL DEFAULT 'cli',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    seen_at    INTEGER,
    last_ip    TEXT,
    rev        INTEGER NOT NULL DEFAULT 1
  );
  CREATE INDEX devices_tenant ON devices (tenant);
  CREATE INDEX devices_state ON devices (state);
  CREATE TABLE lines (
    mac        TEXT NOT NULL REFERENCES devices (mac) ON DELETE CASCADE,
    idx        INTEGER NOT NULL CHECK (idx >= 1),
    extension  TEXT NOT NULL,
    label      TEXT NOT NULL DEFAULT '',
    cid_source TEXT NOT NULL DEFAULT 'from',
    local_port TEXT NOT NULL DEFAULT '',
    srtp       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (mac, idx)
  );
  CREATE INDEX lines_extension ON lines (extension);
  CREATE TABLE leases (
    mac        TEXT PRIMARY KEY,
    ip         TEXT NOT NULL,
    interface  TEXT NOT NULL DEFAULT '',
    source     TEXT NOT NULL DEFAULT 'capture',
    expires_at INTEGER NOT NULL,
    seen_at    INTEGER NOT NULL
  );
  CREATE INDEX leases_ip ON leases (ip);
  CREATE TABLE events (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    at     INTEGER NOT NULL,
    kind   TEXT NOT NULL,
    mac    TEXT,
    detail TEXT NOT NULL DEFAULT ''
  );
  `,
  // 2: per-device HTTP credentials (one pair per device, made for existing devices too), and
  // bans of source addresses that survive a restart
  `
  CREATE TABLE credentials (
    mac        TEXT PRIMARY KEY REFERENCES devices (mac) ON DELETE CASCADE,
    username   TEXT NOT NULL UNIQUE,
    password   TEXT NOT NULL,
    created_at INTEGER NOT NULL
  );
  INSERT INTO credentials (mac, username, password, created_at)
    SELECT mac, 'aps' || mac, lower(hex(randomblob(12))), CAST(strftime('%s', 'now') AS INTEGER) * 1000 FROM devices;
  CREATE TABLE bans (
    ip         TEXT PRIMARY KEY,
    until      INTEGER NOT NULL,
    reason     TEXT NOT NULL,
    count      INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
  );
  `,
  // 3: what discovery saw (one row per MAC, updated), the built-in DHCP server's address
  // book, PIN attempts per device, and the per-device accounts of unprovisioned phones
  `
  CREATE TABLE sightings (
    mac          TEXT PRIMARY KEY,
    first_at     INTEGER NOT NULL,
    last_at      INTEGER NOT NULL,
    count        INTEGER NOT NULL DEFAULT 1,
    source       TEXT NOT NULL,
    msg_type     TEXT,
    vendor_class TEXT,
    param_list   TEXT,
    hostname     TEXT,
    client_id    TEXT,
    requested_ip TEXT,
    offered_ip   TEXT,
    acked_ip     TEXT,
    relay        TEXT,
    option82     TEXT,
    interface    TEXT,
    vendor       TEXT,
    model        TEXT,
    confidence   INTEGER NOT NULL DEFAULT 0,
    status       TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'ignored', 'device')),
    reason       TEXT NOT NULL DEFAULT ''
  );
  CREATE INDEX sightings_status ON sightings (status);
  CREATE TABLE dhcp_leases (
    ip           TEXT PRIMARY KEY,
    mac          TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('offered', 'bound', 'declined', 'released')),
    expires_at   INTEGER NOT NULL,
    client_id    TEXT,
    hostname     TEXT,
    vendor_class TEXT,
    updated_at   INTEGER NOT NULL
  );
  CREATE INDEX dhcp_leases_mac ON dhcp_leases (mac);
  CREATE TABLE pin_state (
    mac          TEXT PRIMARY KEY,
    failures     INTEGER NOT NULL DEFAULT 0,
    locked_until INTEGER NOT NULL DEFAULT 0,
    last_at      INTEGER NOT NULL
  );
  CREATE TABLE unprov_accounts (
    mac        TEXT PRIMARY KEY REFERENCES devices (mac) ON DELETE CASCADE,
    account    TEXT NOT NULL UNIQUE,
    secret     TEXT NOT NULL,
    created_at INTEGER NOT NULL
  );
  `,
  // 4: a device's unprov account exists from the moment the device does (rendering only reads it)
  `
  INSERT INTO unprov_accounts (mac, account, secret, created_at)
    SELECT d.mac, 'unprov-' || d.mac, lower(hex(randomblob(18))), d.created_at FROM devices d
    WHERE NOT EXISTS (SELECT 1 FROM unprov_accounts a WHERE a.mac = d.mac)
      AND NOT EXISTS (SELECT 1 FROM unprov_accounts a WHERE a.account = 'unprov-' || d.mac);
  `,
  // 5: every fetch that names a MAC (bounded per device and in time), and what the phone last said of itself
  `
  CREATE TABLE observations (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    mac         TEXT NOT NULL,
    ip          TEXT NOT NULL,
    proto       TEXT NOT NULL,
    file        TEXT NOT NULL,
    answer      TEXT NOT NULL,
    proof       TEXT NOT NULL DEFAULT '',
    user_agent  TEXT NOT NULL DEFAULT '',
    ua_vendor   TEXT,
    ua_model    TEXT,
    ua_firmware TEXT,
    ua_mac      TEXT
  );
  CREATE INDEX observations_mac ON observations (mac, id);
  CREATE INDEX observations_at ON observations (at);
  ALTER TABLE devices ADD COLUMN firmware TEXT;
  ALTER TABLE devices ADD COLUMN seen_proto TEXT;
  -- a DECT base of a multicell system that is served the configuration of another base (its primary)
  ALTER TABLE devices ADD COLUMN shares_with TEXT REFERENCES devices (mac) ON DELETE SET NULL;
  -- a phone without any line is in the unprovisioned stage (its own unprov account)
  UPDATE devices SET state = 'unprovisioned' WHERE state = 'provisioned' AND NOT EXISTS (SELECT 1 FROM lines l WHERE l.mac = devices.mac);
  `,
  // 6: the firmware catalogue (images in firmware_dir with vendor, models and version), per-device
  // firmware overrides (a rollout's wave, a rollback), and rollouts with their phones, wave by wave
  `
  CREATE TABLE firmware_images (
    file     TEXT PRIMARY KEY,
    vendor   TEXT NOT NULL,
    models   TEXT NOT NULL,
    version  TEXT NOT NULL,
    size     INTEGER NOT NULL,
    sha256   TEXT NOT NULL,
    added_at INTEGER NOT NULL
  );
  CREATE INDEX firmware_images_version ON firmware_images (vendor, version);
  CREATE TABLE firmware_overrides (
    mac     TEXT PRIMARY KEY REFERENCES devices (mac) ON DELETE CASCADE,
    version TEXT NOT NULL,
    rollout INTEGER,
    set_at  INTEGER NOT NULL
  );
  CREATE TABLE rollouts (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    version          TEXT NOT NULL,
    vendor           TEXT NOT NULL,
    models           TEXT NOT NULL,
    tenant           TEXT,
    waves            TEXT NOT NULL,
    window           TEXT NOT NULL DEFAULT '',
    max_failed       REAL NOT NULL,
    soak_ms          INTEGER NOT NULL,
    upgrade_limit_ms INTEGER,
    state            TEXT NOT NULL CHECK (state IN ('running', 'paused', 'halted', 'done', 'aborted', 'rolledback')),
    reason           TEXT NOT NULL DEFAULT '',
    wave             INTEGER NOT NULL DEFAULT 0,
    wave_started_at  INTEGER,
    wave_done_at     INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
  );
  CREATE TABLE rollout_devices (
    rollout      INTEGER NOT NULL REFERENCES rollouts (id) ON DELETE CASCADE,
    mac          TEXT NOT NULL,
    wave         INTEGER NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'upgraded', 'failed', 'rolledback')),
    from_version TEXT,
    started_at   INTEGER,
    notified_at  INTEGER,
    done_at      INTEGER,
    PRIMARY KEY (rollout, mac)
  );
  CREATE INDEX rollout_devices_wave ON rollout_devices (rollout, wave, state);
  `,
];
