//! The embedded ACID store: SQLite (rusqlite, bundled) in WAL mode with
//! `synchronous=FULL`, so a write the daemon acknowledged survives `kill -9`
//! and power loss. It holds signed envelopes (content encrypted), the
//! keystore record, the sealed device keys and a few counters — never a
//! plaintext secret.

use std::path::Path;

use coffer_crdt::{Envelope, SpaceId};
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
             );",
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
            "DELETE FROM snapshots; DELETE FROM envelopes; DELETE FROM spaces; DELETE FROM kv;",
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

    /// The raw bytes of a space's envelopes in the order they were stored.
    pub fn envelopes(&self, space: &SpaceId) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT bytes FROM envelopes WHERE space = ?1 ORDER BY seqno")?;
        let rows = stmt.query_map([&space.0[..]], |r| r.get::<_, Vec<u8>>(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
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

fn insert_envelope(tx: &rusqlite::Transaction<'_>, env: &Envelope) -> Result<(), StoreError> {
    tx.prepare_cached("INSERT OR IGNORE INTO envelopes (id, space, author, seq, bytes) VALUES (?1, ?2, ?3, ?4, ?5)")?
        .execute(params![
            &env.id().0[..],
            &env.space().0[..],
            &env.author().0[..],
            env.seq() as i64,
            env.bytes()
        ])?;
    Ok(())
}
