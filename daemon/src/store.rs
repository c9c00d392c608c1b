//! The embedded ACID store: SQLite (rusqlite, bundled) in WAL mode with
//! `synchronous=FULL`, so a write the daemon acknowledged survives `kill -9`
//! and power loss. It holds signed envelopes (content encrypted), the
//! keystore record, the sealed device keys and a few counters — never a
//! plaintext secret.

use std::path::Path;

use coffer_crdt::replica::AuditRow;
use std::collections::BTreeMap;

use coffer_crdt::{DeviceId, Envelope, SpaceId};
use rusqlite::{params, Connection, OptionalExtension};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored record {key} is corrupt: {reason}")]
    Corrupt { key: String, reason: String },
}

pub struct Store {
    pub(crate) conn: Connection,
    /// Tests: the next batch write fails (as a full disk would).
    #[cfg(test)]
    fail_next: bool,
}

/// What kind of space a stored space is.
pub const SPACE_FOLDER: &str = "folder";
/// The team roster (at most one per device).
pub const SPACE_TEAM: &str = "team";

impl Store {
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // SQLite's default page cache is 2 MB, filled by the first read of
        // every envelope at start and then kept: the replica holds what it
        // needs in memory, and writes append. 512 KiB (a negative size is
        // in KiB) keeps 1.5 MB less in every daemon.
        conn.pragma_update(None, "cache_size", -512)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS kv (
                 key TEXT PRIMARY KEY,
                 value BLOB NOT NULL
             );
             CREATE TABLE IF NOT EXISTS spaces (
                 id BLOB PRIMARY KEY,
                 kind TEXT NOT NULL
             );
             CREATE TABLE IF NOT EXISTS envelopes (
                 seqno INTEGER PRIMARY KEY AUTOINCREMENT,
                 id BLOB NOT NULL UNIQUE,
                 space BLOB NOT NULL REFERENCES spaces(id),
                 author BLOB NOT NULL,
                 seq INTEGER NOT NULL,
                 bytes BLOB NOT NULL
             );
             CREATE INDEX IF NOT EXISTS envelopes_by_space ON envelopes(space, seqno);
             -- A folder's compacted document, sealed by the replica (issue 18):
             -- only ever a shortcut, rebuilt from the envelopes when unusable.
             CREATE TABLE IF NOT EXISTS snapshots (
                 space BLOB PRIMARY KEY REFERENCES spaces(id),
                 sealed BLOB NOT NULL
             );

             CREATE TABLE IF NOT EXISTS audit (
                 device BLOB NOT NULL,
                 seq INTEGER NOT NULL,
                 hash BLOB NOT NULL,
                 time INTEGER NOT NULL,
                 user TEXT NOT NULL,
                 kind INTEGER NOT NULL,
                 bytes BLOB NOT NULL,
                 PRIMARY KEY (device, seq, hash)
             );
             CREATE INDEX IF NOT EXISTS audit_by_time ON audit(time);
             CREATE INDEX IF NOT EXISTS audit_by_user ON audit(user, time);",
        )?;
        // A folder's team (NULL: a personal folder); added after the first release.
        let has_team: bool = conn.query_row(
            "SELECT COUNT(*) > 0 FROM pragma_table_info('spaces') WHERE name = 'team'",
            [],
            |r| r.get(0),
        )?;
        if !has_team {
            conn.execute_batch("ALTER TABLE spaces ADD COLUMN team BLOB")?;
        }
        Ok(Store {
            conn,
            #[cfg(test)]
            fail_next: false,
        })
    }

    pub fn get_kv(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT value FROM kv WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }

    pub fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        self.get_kv(key)?
            .map(|bytes| {
                serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                    key: key.into(),
                    reason: e.to_string(),
                })
            })
            .transpose()
    }

    pub fn put_kv(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT OR REPLACE INTO kv (key, value) VALUES (?1, ?2)",
            params![key, value],
        )?;
        Ok(())
    }

    pub fn put_json<T: serde::Serialize>(&self, key: &str, value: &T) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(value).expect("serialising plain data cannot fail");
        self.conn.execute(
            "INSERT OR REPLACE INTO kv (key, value) VALUES (?1, ?2)",
            params![key, bytes],
        )?;
        Ok(())
    }

    /// Every stored space: id, kind and team, in the order they were made.
    pub fn space_rows(&self) -> Result<Vec<(SpaceId, String, Option<SpaceId>)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, kind, team FROM spaces ORDER BY rowid")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<Vec<u8>>>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, kind, team) = row?;
            let team = team.map(|t| space_id(t, "spaces.team")).transpose()?;
            out.push((space_id(id, "spaces.id")?, kind, team));
        }
        Ok(out)
    }

    /// Writes kv records and envelopes of spaces (created if new, their
    /// team bound once known) in one transaction: all or nothing.
    pub fn write_batch(
        &mut self,
        kv: &[(&str, Vec<u8>)],
        spaces: &[(SpaceId, &str, Option<SpaceId>, &[Envelope])],
        snapshots: &[(SpaceId, Option<&[u8]>)],
        audit: &[AuditRow],
    ) -> Result<(), StoreError> {
        #[cfg(test)]
        if std::mem::take(&mut self.fail_next) {
            return Err(StoreError::Corrupt {
                key: "test".into(),
                reason: "a write failed on purpose".into(),
            });
        }
        let tx = self.conn.transaction()?;
        for (key, value) in kv {
            tx.execute(
                "INSERT OR REPLACE INTO kv (key, value) VALUES (?1, ?2)",
                params![key, value],
            )?;
        }
        for (space, kind, team, envelopes) in spaces {
            tx.execute(
                "INSERT INTO spaces (id, kind, team) VALUES (?1, ?2, ?3)
                 ON CONFLICT(id) DO UPDATE SET team = COALESCE(excluded.team, spaces.team)",
                params![&space.0[..], kind, team.as_ref().map(|t| t.0.to_vec())],
            )?;
            for env in envelopes.iter() {
                insert_envelope(&tx, env)?;
            }
        }
        // In order: a drop then a new snapshot of the same folder keeps the new one.
        for (space, sealed) in snapshots {
            match sealed {
                Some(sealed) => tx.execute(
                    "INSERT OR REPLACE INTO snapshots (space, sealed) VALUES (?1, ?2)",
                    params![&space.0[..], sealed],
                )?,
                None => tx.execute(
                    "DELETE FROM snapshots WHERE space = ?1",
                    params![&space.0[..]],
                )?,
            };
        }
        for row in audit {
            insert_audit(&tx, row)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Forgets spaces and every envelope and snapshot of them (a relay's
    /// team that removed it, a folder the team deleted), in one transaction.
    pub fn drop_spaces(&mut self, spaces: &[SpaceId]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        for space in spaces {
            let id = &space.0[..];
            tx.execute("DELETE FROM envelopes WHERE space = ?1", params![id])?;
            tx.execute("DELETE FROM snapshots WHERE space = ?1", params![id])?;
            tx.execute("DELETE FROM spaces WHERE id = ?1", params![id])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Erases everything (`coffer reset`): one transaction deletes every
    /// row, with `secure_delete` so freed pages are zeroed; then the file
    /// is compacted and the WAL truncated, so no old page lingers there.
    pub fn wipe(&mut self) -> Result<(), StoreError> {
        self.conn.pragma_update(None, "secure_delete", "ON")?;
        let tx = self.conn.transaction()?;
        tx.execute_batch(
            "DELETE FROM snapshots; DELETE FROM envelopes; DELETE FROM spaces; DELETE FROM kv; DELETE FROM audit;",
        )?;
        tx.commit()?;
        self.conn.execute_batch("VACUUM")?;
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn fail_next_write_for_test(&mut self) {
        self.fail_next = true;
    }

    /// A folder's sealed snapshot, if one was stored.
    pub fn snapshot(&self, space: &SpaceId) -> Result<Option<Vec<u8>>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT sealed FROM snapshots WHERE space = ?1")?;
        let mut rows = stmt.query_map([&space.0[..]], |r| r.get::<_, Vec<u8>>(0))?;
        Ok(rows.next().transpose()?)
    }

    /// Hands `each` the bytes of a space's envelopes in the order they were
    /// stored, one row at a time from SQLite's own buffer: a start decodes
    /// them as they come instead of holding every row first (9 MB for a
    /// 10,000-edit vault, freed in between what it decoded).
    pub fn each_envelope(
        &self,
        space: &SpaceId,
        mut each: impl FnMut(&[u8]),
    ) -> Result<(), StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT bytes FROM envelopes WHERE space = ?1 ORDER BY seqno")?;
        let mut rows = stmt.query([&space.0[..]])?;
        while let Some(row) = rows.next()? {
            let bytes = row.get_ref(0)?.as_blob().map_err(|e| StoreError::Corrupt {
                key: format!("envelope of space {}", space.short()),
                reason: e.to_string(),
            })?;
            each(bytes);
        }
        Ok(())
    }
}

/// Rows of `device, seq, bytes` from an audit query.
fn audit_rows(
    stmt: &mut rusqlite::Statement<'_>,
    params: impl rusqlite::Params,
) -> Result<Vec<(DeviceId, u64, Vec<u8>)>, StoreError> {
    let rows = stmt.query_map(params, |r| {
        Ok((
            r.get::<_, Vec<u8>>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, Vec<u8>>(2)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (d, s, b) = row?;
        out.push((device_id(d)?, s.max(0) as u64, b));
    }
    Ok(out)
}

fn space_id(bytes: Vec<u8>, key: &str) -> Result<SpaceId, StoreError> {
    let id: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| StoreError::Corrupt {
            key: key.into(),
            reason: "not 32 bytes".into(),
        })?;
    Ok(SpaceId(id))
}

fn insert_audit(tx: &rusqlite::Transaction<'_>, row: &AuditRow) -> Result<(), StoreError> {
    let r = &row.record;
    tx.prepare_cached(
        "INSERT OR IGNORE INTO audit (device, seq, hash, time, user, kind, bytes) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        &r.device().0[..],
        r.seq() as i64,
        &r.hash().0[..],
        r.time_ms(),
        row.user,
        audit_kind(r),
        r.bytes()
    ])?;
    Ok(())
}

/// The `kind` column: 0 a key record, 1 an event, 2 a checkpoint.
fn audit_kind(r: &coffer_crdt::audit::Record) -> i64 {
    match r.body().body {
        coffer_crdt::audit::Body::Key { .. } => 0,
        coffer_crdt::audit::Body::Sealed { .. } | coffer_crdt::audit::Body::Shared { .. } => 1,
        coffer_crdt::audit::Body::Checkpoint { .. } => 2,
    }
}

fn insert_envelope(tx: &rusqlite::Transaction<'_>, env: &Envelope) -> Result<(), StoreError> {
    tx.prepare_cached("INSERT OR IGNORE INTO envelopes (id, space, author, seq, bytes) VALUES (?1, ?2, ?3, ?4, ?5)")?
        .execute(params![
            &env.id().0[..],
            &env.space().0[..],
            &env.author().0[..],
            env.seq() as i64,
            env.to_bytes()
        ])?;
    Ok(())
}

/// Which stored audit records a query wants (the indexed part of a filter:
/// the rest is judged on the opened records).
#[derive(Clone, Debug, Default)]
pub struct AuditRange {
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub user: Option<String>,
    pub device: Option<DeviceId>,
    /// Records after this (time, device, seq) only (`--follow`); before
    /// it when `newest`.
    pub after: Option<(i64, DeviceId, u64)>,
    /// Newest first (and `after` read as "before").
    pub newest: bool,
    pub limit: usize,
}

impl AuditRange {
    /// Every event record, oldest first (up to 100,000).
    pub fn default_all() -> AuditRange {
        AuditRange {
            limit: 100_000,
            ..AuditRange::default()
        }
    }
}

/// A chain's newest record and newest key record, as stored.
pub type ChainTail = (Option<Vec<u8>>, Option<Vec<u8>>);

/// A stored audit row: where it is filed, and its bytes.
pub type AuditStored = (DeviceId, u64, Vec<u8>);

impl Store {
    /// Each chain's newest seq held.
    pub fn audit_heads(&self) -> Result<BTreeMap<DeviceId, u64>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT device, MAX(seq) FROM audit GROUP BY device")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?)))?;
        let mut out = BTreeMap::new();
        for row in rows {
            let (d, s) = row?;
            out.insert(device_id(d)?, s.max(0) as u64);
        }
        Ok(out)
    }

    /// A chain's records above `after`, in seq order, at most `limit`.
    pub fn audit_after(
        &self,
        device: &DeviceId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, bytes FROM audit WHERE device = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![&device.0[..], after as i64, limit as i64], |r| {
            Ok((r.get::<_, i64>(0)?.max(0) as u64, r.get::<_, Vec<u8>>(1)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// A chain's newest record and newest key record.
    pub fn audit_tail(&self, device: &DeviceId) -> Result<ChainTail, StoreError> {
        let last = self
            .conn
            .query_row(
                "SELECT bytes FROM audit WHERE device = ?1 ORDER BY seq DESC LIMIT 1",
                [&device.0[..]],
                |r| r.get::<_, Vec<u8>>(0),
            )
            .optional()?;
        let key = self
            .conn
            .query_row(
                "SELECT bytes FROM audit WHERE device = ?1 AND kind = 0 ORDER BY seq DESC LIMIT 1",
                [&device.0[..]],
                |r| r.get::<_, Vec<u8>>(0),
            )
            .optional()?;
        Ok((last, key))
    }

    /// The record at (device, seq) (the first, if forked).
    pub fn audit_at(&self, device: &DeviceId, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT bytes FROM audit WHERE device = ?1 AND seq = ?2 LIMIT 1")?
            .query_row(params![&device.0[..], seq as i64], |r| r.get(0))
            .optional()?)
    }

    /// The event records in `range`, oldest first (newest first if
    /// `range.newest`).
    pub fn audit_query(&self, range: &AuditRange) -> Result<Vec<AuditStored>, StoreError> {
        let mut sql = String::from("SELECT device, seq, bytes FROM audit WHERE kind = 1");
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        let mut arg = |sql: &mut String, clause: &str, v: rusqlite::types::Value| {
            args.push(v);
            sql.push_str(&clause.replace('?', &format!("?{}", args.len())));
        };
        if let Some(u) = &range.user {
            arg(&mut sql, " AND user = ?", u.clone().into());
        }
        if let Some(s) = range.since_ms {
            arg(&mut sql, " AND time >= ?", s.into());
        }
        if let Some(u) = range.until_ms {
            arg(&mut sql, " AND time <= ?", u.into());
        }
        if let Some(d) = &range.device {
            arg(&mut sql, " AND device = ?", d.0.to_vec().into());
        }
        if let Some((t, d, s)) = &range.after {
            args.push((*t).into());
            args.push(d.0.to_vec().into());
            args.push((*s as i64).into());
            let n = args.len();
            sql.push_str(&format!(
                " AND (time, device, seq) {} (?{}, ?{}, ?{})",
                if range.newest { "<" } else { ">" },
                n - 2,
                n - 1,
                n
            ));
        }
        args.push((range.limit as i64).into());
        let order = if range.newest {
            "time DESC, device DESC, seq DESC"
        } else {
            "time, device, seq"
        };
        sql.push_str(&format!(" ORDER BY {order} LIMIT ?{}", args.len()));
        let mut stmt = self.conn.prepare(&sql)?;
        audit_rows(&mut stmt, rusqlite::params_from_iter(args))
    }

    /// A chain's newest record (by seq) older than `before_ms`: where a
    /// checkpoint may cut.
    pub fn audit_prune_candidate(
        &self,
        device: &DeviceId,
        before_ms: i64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT bytes FROM audit WHERE device = ?1 AND time < ?2 ORDER BY seq DESC LIMIT 1",
            )?
            .query_row(params![&device.0[..], before_ms], |r| r.get(0))
            .optional()?)
    }

    /// Each chain's newest checkpoint record.
    pub fn audit_checkpoints(&self) -> Result<Vec<(DeviceId, Vec<u8>)>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT a.device, a.bytes FROM audit a \
             JOIN (SELECT device, MAX(seq) AS seq FROM audit WHERE kind = 2 GROUP BY device) m \
             ON a.device = m.device AND a.seq = m.seq",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (d, b) = row?;
            out.push((device_id(d)?, b));
        }
        Ok(out)
    }

    /// Drops a chain's records up to `through` but the newest key record
    /// among them (later records are sealed under it). Returns how many.
    pub fn audit_delete_through(
        &self,
        device: &DeviceId,
        through: u64,
    ) -> Result<usize, StoreError> {
        Ok(self.conn.execute(
            "DELETE FROM audit WHERE device = ?1 AND seq <= ?2 AND seq IS NOT \
             (SELECT MAX(seq) FROM audit WHERE device = ?1 AND kind = 0 AND seq <= ?2)",
            params![&device.0[..], through as i64],
        )?)
    }

    /// Every audit row as filed (for `coffer audit verify`).
    pub fn audit_rows(&self) -> Result<Vec<AuditStored>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT device, seq, bytes FROM audit ORDER BY device, seq")?;
        audit_rows(&mut stmt, [])
    }
}

fn device_id(bytes: Vec<u8>) -> Result<DeviceId, StoreError> {
    let id: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| StoreError::Corrupt {
            key: "audit.device".into(),
            reason: "not 32 bytes".into(),
        })?;
    Ok(DeviceId(id))
}
