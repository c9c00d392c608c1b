//! The vault: identity, keystore, folders and items of one device, driven by
//! the IPC server. Synchronous; the server calls it under a mutex.
//!
//! While locked it still holds every folder's envelopes (validated without
//! keys, as sync will need); unlocking opens the device keys, the folder keys
//! and rebuilds each folder document from its accepted content envelopes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use coffer_crdt::folder::{Item, ItemEdit, ItemType, NewItem};
use coffer_crdt::{DeviceId, DeviceKeys, Envelope, FolderDoc, FolderKey, ItemId, Space, SpaceId};
use coffer_ipc::methods::{self as m, FolderInfo, ItemSummary, ItemView};
use coffer_ipc::Event;
use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use crate::export::ExportItem;
use crate::import;
use crate::keystore::{self, Failures, KdfParams, KeystoreError, KeystoreRecord};
use crate::store::{Store, StoreError, SPACE_FOLDER, SPACE_TEAM};
use coffer_crdt::totp::TotpConfig;

pub mod enrol;
pub mod sync;
pub mod team;

const KV_KEYSTORE: &str = "keystore";
const KV_DEVICE_KEYS: &str = "device_keys";
const KV_IDENTITY: &str = "identity";
const KV_FAILURES: &str = "pin_failures";
const DEVICE_KEYS_PURPOSE: &str = "coffer 2026 device keys at rest v1";
const DEVICE_KEYS_AAD: &[u8] = b"coffer/device-keys/v1";

/// Field names whose values are secret (masked by the CLI, never logged).
pub const SECRET_FIELDS: &[&str] = &["password", "notes", "totp", "number", "cvv"];

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    #[error("vault is locked")]
    Locked,
    #[error("this device has no vault yet: run `coffer init --name NAME --email EMAIL`")]
    NotInitialized,
    #[error("this device already has a vault")]
    AlreadyInitialized,
    #[error("{0}")]
    NotFound(String),
    #[error("{what} matches more than one: {}", candidates.join(", "))]
    Ambiguous {
        what: String,
        candidates: Vec<String>,
    },
    #[error("wrong PIN")]
    WrongPin,
    #[error("too many failed PIN attempts: try again in {retry_after_secs} s")]
    TooManyAttempts { retry_after_secs: u64 },
    #[error("{0}")]
    Invalid(String),
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keystore(KeystoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<KeystoreError> for VaultError {
    fn from(e: KeystoreError) -> Self {
        match e {
            KeystoreError::WrongPin => VaultError::WrongPin,
            KeystoreError::BadPin => VaultError::Invalid(e.to_string()),
            other => VaultError::Keystore(other),
        }
    }
}

/// The device's public identity record.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Identity {
    pub device_id: String,
    pub name: String,
    pub email: String,
    pub personal_folder: String,
}

/// The clock, read by the caller.
#[derive(Clone, Copy, Debug)]
pub struct Now {
    pub unix_ms: i64,
}

impl Now {
    pub fn unix_secs(&self) -> u64 {
        (self.unix_ms / 1000).max(0) as u64
    }
}

struct OpenFolder {
    key: FolderKey,
    doc: FolderDoc,
    items: BTreeMap<ItemId, Item>,
}

struct Unlocked {
    keys: DeviceKeys,
    folders: BTreeMap<SpaceId, OpenFolder>,
}

pub struct Vault {
    data_dir: PathBuf,
    store: Store,
    kdf: KdfParams,
    identity: Option<Identity>,
    /// Folder spaces.
    spaces: BTreeMap<SpaceId, Space>,
    /// The team roster, once this device founded or joined a team.
    roster: Option<Space>,
    unlocked: Option<Unlocked>,
}

fn parse_space(hex: &str) -> Result<SpaceId, VaultError> {
    SpaceId::from_hex(hex)
        .ok_or_else(|| VaultError::Internal("stored folder id is malformed".into()))
}

impl Vault {
    /// Opens (creating if needed) the store under `data_dir` and loads every
    /// space's envelopes. The vault starts locked.
    pub fn open(data_dir: &Path, kdf: KdfParams) -> Result<Vault, VaultError> {
        let store = Store::open(&data_dir.join("vault.sqlite3"))?;
        let identity = store.get_json::<Identity>(KV_IDENTITY)?;
        let mut roster = None;
        if let Some(team) = store.spaces(SPACE_TEAM)?.first() {
            roster = Some(load_space(&store, *team, Some(*team))?);
        }
        let mut spaces = BTreeMap::new();
        for id in store.spaces(SPACE_FOLDER)? {
            let team = store.space_team(&id)?;
            spaces.insert(id, load_space(&store, id, team)?);
        }
        info!(
            folders = spaces.len(),
            initialized = identity.is_some(),
            "vault opened"
        );
        Ok(Vault {
            data_dir: data_dir.to_path_buf(),
            store,
            kdf,
            identity,
            spaces,
            roster,
            unlocked: None,
        })
    }

    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_ref()
    }

    pub fn is_locked(&self) -> bool {
        self.unlocked.is_none()
    }

    /// (folders, items) while unlocked.
    pub fn counts(&self) -> Option<(usize, usize)> {
        let u = self.unlocked.as_ref()?;
        Some((
            u.folders.len(),
            u.folders.values().map(|f| f.items.len()).sum(),
        ))
    }

    fn unlocked(&self) -> Result<&Unlocked, VaultError> {
        if self.identity.is_none() {
            return Err(VaultError::NotInitialized);
        }
        self.unlocked.as_ref().ok_or(VaultError::Locked)
    }

    /// Creates the device identity, the PIN keystore and the Personal folder.
    pub fn init(
        &mut self,
        name: &str,
        email: &str,
        pin: &str,
        now: Now,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(DeviceId, SpaceId), VaultError> {
        let keys = DeviceKeys::generate(rng);
        self.init_with_keys(name, email, pin, keys, now, rng)
    }

    /// `init` with given keys: a fresh device joining a team uses the keys
    /// its enrolment handshake was made with.
    pub fn init_with_keys(
        &mut self,
        name: &str,
        email: &str,
        pin: &str,
        keys: DeviceKeys,
        now: Now,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(DeviceId, SpaceId), VaultError> {
        if self.identity.is_some() {
            return Err(VaultError::AlreadyInitialized);
        }
        let name = name.trim();
        let email = email.trim();
        if name.is_empty() || name.len() > 256 {
            return Err(VaultError::Invalid("name must be 1 to 256 bytes".into()));
        }
        if !email.contains('@') || email.len() > 256 || email.chars().any(char::is_whitespace) {
            return Err(VaultError::Invalid(format!(
                "{email:?} is not an email address"
            )));
        }
        keystore::check_pin(pin)?;
        let (record, root) = keystore::create(&self.data_dir, pin, self.kdf, rng)?;
        let sealed_keys = keystore::seal(
            &root.derive(DEVICE_KEYS_PURPOSE),
            keys.to_secret_bytes().as_slice(),
            DEVICE_KEYS_AAD,
            rng,
        );
        let folder_key = FolderKey::generate(rng);
        let (mut space, genesis) = Space::create(&keys, &folder_key, rng)
            .map_err(|e| VaultError::Internal(e.to_string()))?;
        let mut doc = FolderDoc::new(keys.device_id());
        let change = doc
            .set_name("Personal", now.unix_ms)
            .map_err(|e| VaultError::Internal(e.to_string()))?;
        let named = space
            .seal_content(&keys, &folder_key, &change, rng)
            .map_err(|e| VaultError::Internal(e.to_string()))?;
        let identity = Identity {
            device_id: keys.device_id().to_hex(),
            name: name.into(),
            email: email.into(),
            personal_folder: space.id().to_hex(),
        };
        let json = |v: &dyn erased::Json| v.to_json();
        self.store.init_batch(
            &[
                (KV_KEYSTORE, json(&record)),
                (KV_DEVICE_KEYS, sealed_keys),
                (KV_IDENTITY, json(&identity)),
                (KV_FAILURES, json(&Failures::default())),
            ],
            space.id(),
            &[&genesis, &named],
        )?;
        let ids = (keys.device_id(), space.id());
        let mut folders = BTreeMap::new();
        folders.insert(
            space.id(),
            OpenFolder {
                key: folder_key,
                doc,
                items: BTreeMap::new(),
            },
        );
        self.spaces.insert(space.id(), space);
        self.identity = Some(identity);
        self.unlocked = Some(Unlocked { keys, folders });
        info!(device = %ids.0.short(), "device initialised");
        Ok(ids)
    }

    /// Opens the vault with the PIN; counts and throttles failures.
    pub fn unlock(&mut self, pin: &str, now: Now) -> Result<(), VaultError> {
        if self.identity.is_none() {
            return Err(VaultError::NotInitialized);
        }
        let failures = self
            .store
            .get_json::<Failures>(KV_FAILURES)?
            .unwrap_or_default();
        let wait = failures.wait_secs(now.unix_secs());
        if wait > 0 {
            return Err(VaultError::TooManyAttempts {
                retry_after_secs: wait,
            });
        }
        let record: KeystoreRecord = self
            .store
            .get_json(KV_KEYSTORE)?
            .ok_or(VaultError::NotInitialized)?;
        let root = match keystore::unlock(&self.data_dir, &record, pin) {
            Ok(root) => root,
            Err(KeystoreError::WrongPin) => {
                let failures = Failures {
                    count: failures.count.saturating_add(1),
                    last_unix: now.unix_secs(),
                };
                self.store.put_json(KV_FAILURES, &failures)?;
                warn!(failures = failures.count, "wrong PIN");
                return Err(VaultError::WrongPin);
            }
            Err(e) => return Err(e.into()),
        };
        if failures.count > 0 {
            self.store.put_json(KV_FAILURES, &Failures::default())?;
        }
        if self.unlocked.is_some() {
            // Already open: the PIN was still checked (and failures counted).
            return Ok(());
        }
        let sealed = self
            .store
            .get_kv(KV_DEVICE_KEYS)?
            .ok_or(VaultError::NotInitialized)?;
        let plain = keystore::open(&root.derive(DEVICE_KEYS_PURPOSE), &sealed, DEVICE_KEYS_AAD)
            .ok_or_else(|| {
                VaultError::Internal("device keys do not open with the root secret".into())
            })?;
        let keys = DeviceKeys::from_secret_bytes(&plain)
            .map_err(|e| VaultError::Internal(e.to_string()))?;
        let mut folders = BTreeMap::new();
        for (id, space) in &self.spaces {
            match open_folder(space, &keys) {
                Ok(folder) => {
                    folders.insert(*id, folder);
                }
                Err(e) => warn!(space = %id.short(), error = %e, "folder cannot be opened"),
            }
        }
        self.unlocked = Some(Unlocked { keys, folders });
        release_freed_memory();
        info!("vault unlocked");
        Ok(())
    }

    /// Forgets every key and decrypted document.
    pub fn lock(&mut self) {
        if self.unlocked.take().is_some() {
            info!("vault locked");
        }
    }

    fn folder_info(&self, id: &SpaceId, folder: &OpenFolder) -> FolderInfo {
        let role = self
            .unlocked
            .as_ref()
            .and_then(|u| self.spaces.get(id)?.role_of(&u.keys.device_id()))
            .map(|r| format!("{r:?}").to_lowercase())
            .unwrap_or_else(|| "none".into());
        FolderInfo {
            id: id.to_hex(),
            name: folder.doc.name().unwrap_or_else(|| id.short()),
            role,
            items: folder
                .items
                .values()
                .filter(|i| i.trashed_ms.is_none())
                .count(),
            trashed: folder
                .items
                .values()
                .filter(|i| i.trashed_ms.is_some())
                .count(),
        }
    }

    pub fn folder_list(&self) -> Result<Vec<FolderInfo>, VaultError> {
        let u = self.unlocked()?;
        let mut out: Vec<FolderInfo> = u
            .folders
            .iter()
            .map(|(id, f)| self.folder_info(id, f))
            .collect();
        out.sort_by(|a, b| {
            a.name
                .to_lowercase()
                .cmp(&b.name.to_lowercase())
                .then(a.id.cmp(&b.id))
        });
        Ok(out)
    }

    pub fn folder_create(
        &mut self,
        name: &str,
        now: Now,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(FolderInfo, Vec<Event>), VaultError> {
        let name = name.trim();
        let u = self.unlocked()?;
        if name.contains('/') {
            return Err(VaultError::Invalid(
                "a folder name cannot contain '/'".into(),
            ));
        }
        if u.folders
            .values()
            .any(|f| f.doc.name().is_some_and(|n| n.eq_ignore_ascii_case(name)))
        {
            return Err(VaultError::Invalid(format!(
                "a folder named {name:?} already exists"
            )));
        }
        let u = self.unlocked.as_mut().ok_or(VaultError::Locked)?;
        let folder_key = FolderKey::generate(rng);
        // Inside a team, new folders belong to it (shareable with its users).
        let (mut space, genesis) =
            Space::create_in_team(&u.keys, &folder_key, self.roster.as_ref(), rng)
                .map_err(|e| VaultError::Internal(e.to_string()))?;
        let mut doc = FolderDoc::new(u.keys.device_id());
        let change = doc
            .set_name(name, now.unix_ms)
            .map_err(|e| VaultError::Invalid(e.to_string()))?;
        let named = space
            .seal_content(&u.keys, &folder_key, &change, rng)
            .map_err(|e| VaultError::Internal(e.to_string()))?;
        self.store
            .add_space(space.id(), SPACE_FOLDER, space.team(), &[&genesis, &named])?;
        let id = space.id();
        u.folders.insert(
            id,
            OpenFolder {
                key: folder_key,
                doc,
                items: BTreeMap::new(),
            },
        );
        self.spaces.insert(id, space);
        let info = self.folder_info(&id, &self.unlocked()?.folders[&id]);
        Ok((
            info,
            vec![Event::FolderChanged {
                folder_id: id.to_hex(),
            }],
        ))
    }

    fn resolve_folder(&self, query: Option<&str>) -> Result<SpaceId, VaultError> {
        let u = self.unlocked()?;
        let Some(query) = query else {
            let identity = self.identity.as_ref().ok_or(VaultError::NotInitialized)?;
            return parse_space(&identity.personal_folder);
        };
        let by_name: Vec<SpaceId> = u
            .folders
            .iter()
            .filter(|(_, f)| f.doc.name().is_some_and(|n| n.eq_ignore_ascii_case(query)))
            .map(|(id, _)| *id)
            .collect();
        let found = if by_name.is_empty() && query.len() >= 4 {
            let q = query.to_lowercase();
            u.folders
                .keys()
                .filter(|id| id.to_hex().starts_with(&q))
                .copied()
                .collect()
        } else {
            by_name
        };
        match found.as_slice() {
            [one] => Ok(*one),
            [] => Err(VaultError::NotFound(format!(
                "no folder named {query:?} (see `coffer folder ls`)"
            ))),
            many => Err(VaultError::Ambiguous {
                what: format!("folder {query:?}"),
                candidates: many.iter().map(|id| id.short()).collect(),
            }),
        }
    }

    fn folder_name(&self, id: &SpaceId) -> String {
        self.unlocked
            .as_ref()
            .and_then(|u| u.folders.get(id))
            .and_then(|f| f.doc.name())
            .unwrap_or_else(|| id.short())
    }

    /// Resolves ITEM: `FOLDER/NAME`, a name, or an id prefix (≥ 4 hex digits).
    fn resolve_item(&self, query: &str, trash: bool) -> Result<(SpaceId, ItemId), VaultError> {
        let u = self.unlocked()?;
        let query = query.trim();
        if query.is_empty() {
            return Err(VaultError::Invalid("empty item name".into()));
        }
        let live = |i: &Item| i.trashed_ms.is_some() == trash;
        let mut found: Vec<(SpaceId, ItemId)> = Vec::new();
        if let Some((folder, name)) = query.split_once('/') {
            if let Ok(space) = self.resolve_folder(Some(folder)) {
                if let Some(f) = u.folders.get(&space) {
                    found.extend(
                        f.items
                            .values()
                            .filter(|i| live(i) && i.name.eq_ignore_ascii_case(name))
                            .map(|i| (space, i.id)),
                    );
                }
            }
        }
        if found.is_empty() {
            for (space, f) in &u.folders {
                found.extend(
                    f.items
                        .values()
                        .filter(|i| live(i) && i.name.eq_ignore_ascii_case(query))
                        .map(|i| (*space, i.id)),
                );
            }
        }
        if found.is_empty() && query.len() >= 4 && query.chars().all(|c| c.is_ascii_hexdigit()) {
            let q = query.to_lowercase();
            for (space, f) in &u.folders {
                found.extend(
                    f.items
                        .values()
                        .filter(|i| live(i) && i.id.to_hex().starts_with(&q))
                        .map(|i| (*space, i.id)),
                );
            }
        }
        match found.as_slice() {
            [one] => Ok(*one),
            [] => Err(VaultError::NotFound(format!(
                "no {}item matches {query:?} (see `coffer {}`)",
                if trash { "trashed " } else { "" },
                if trash { "ls --trash" } else { "ls" }
            ))),
            many => Err(VaultError::Ambiguous {
                what: format!("item {query:?}"),
                candidates: many
                    .iter()
                    .map(|(s, i)| {
                        format!(
                            "{}/{} ({})",
                            self.folder_name(s),
                            u.folders[s].items[i].name,
                            &i.to_hex()[..8]
                        )
                    })
                    .collect(),
            }),
        }
    }

    fn view(&self, space: &SpaceId, item: &Item) -> ItemView {
        ItemView {
            id: item.id.to_hex(),
            folder: self.folder_name(space),
            folder_id: space.to_hex(),
            item_type: item.item_type.as_str().into(),
            name: item.name.clone(),
            fields: item.fields.clone(),
            urls: item.urls.clone(),
            created_ms: item.created_ms,
            updated_ms: item.updated_ms,
            trashed_ms: item.trashed_ms,
            conflicts: item.conflicts.clone(),
        }
    }

    fn summary(&self, space: &SpaceId, item: &Item) -> ItemSummary {
        ItemSummary {
            id: item.id.to_hex(),
            folder: self.folder_name(space),
            item_type: item.item_type.as_str().into(),
            name: item.name.clone(),
            username: item.fields.get("username").cloned(),
            urls: item.urls.clone(),
            has_totp: item.fields.contains_key("totp"),
            updated_ms: item.updated_ms,
            trashed_ms: item.trashed_ms,
        }
    }

    fn item(&self, space: &SpaceId, id: &ItemId) -> Result<&Item, VaultError> {
        self.unlocked()?
            .folders
            .get(space)
            .and_then(|f| f.items.get(id))
            .ok_or_else(|| VaultError::Internal("resolved item vanished".into()))
    }

    /// Checks the role, lets `edit` change the folder document, and seals the
    /// change as this device's next envelope (held in memory, not yet
    /// stored). If sealing fails after the document changed, the folder is
    /// rebuilt from the store so memory never runs ahead of disk.
    fn seal_local_change<F>(
        &mut self,
        space: SpaceId,
        rng: &mut impl CryptoRngCore,
        edit: F,
    ) -> Result<Envelope, VaultError>
    where
        F: FnOnce(&mut FolderDoc) -> Result<Vec<u8>, coffer_crdt::FolderError>,
    {
        let u = self.unlocked.as_mut().ok_or(VaultError::Locked)?;
        let sp = self
            .spaces
            .get_mut(&space)
            .ok_or_else(|| VaultError::Internal("folder space missing".into()))?;
        let role = sp.role_of(&u.keys.device_id());
        if !role.is_some_and(|r| r.can_write_items()) {
            return Err(VaultError::PermissionDenied(format!(
                "your role in this folder is {}; changing items needs the Item Manager (editor) or Folder Manager role",
                role.map(role_title).unwrap_or("none")
            )));
        }
        let folder = u.folders.get_mut(&space).ok_or(VaultError::Locked)?;
        if sp.rotation_due() {
            // Someone with the current key lost access: new content needs a new key.
            let (env, key) = sp
                .rotate(&u.keys, rng)
                .map_err(|e| VaultError::Internal(format!("key rotation failed: {e}")))?;
            if let Err(e) = self.store.append(&[&env]) {
                self.reload_space(space)?;
                return Err(e.into());
            }
            folder.key = key;
        }
        let change = edit(&mut folder.doc).map_err(|e| match e {
            coffer_crdt::FolderError::Invalid(msg) => VaultError::Invalid(msg),
            other => VaultError::Internal(other.to_string()),
        })?;
        match sp.seal_content(&u.keys, &folder.key, &change, rng) {
            Ok(env) => Ok(env),
            Err(e) => {
                // The reload also reopens the document as this device's
                // current incarnation, so a retry after a re-add works.
                self.reload_space(space)?;
                Err(match e {
                    coffer_crdt::SpaceError::StaleIncarnation { .. } => VaultError::Invalid(
                        "this device was removed from the folder and added again since it was opened; nothing was written: run the command again".into(),
                    ),
                    other => VaultError::Internal(other.to_string()),
                })
            }
        }
    }

    /// Records one local change durably (see [`Vault::seal_local_change`])
    /// and refreshes the item's cached view.
    fn write<F>(
        &mut self,
        space: SpaceId,
        item: ItemId,
        rng: &mut impl CryptoRngCore,
        edit: F,
    ) -> Result<(), VaultError>
    where
        F: FnOnce(&mut FolderDoc) -> Result<Vec<u8>, coffer_crdt::FolderError>,
    {
        let env = self.seal_local_change(space, rng, edit)?;
        if let Err(e) = self.store.append(&[&env]) {
            // Memory is ahead of disk: rebuild this folder from what is stored.
            warn!(error = %e, "write failed; reloading folder from the store");
            self.reload_space(space)?;
            return Err(e.into());
        }
        if let Some(folder) = self
            .unlocked
            .as_mut()
            .and_then(|u| u.folders.get_mut(&space))
        {
            if let Some(updated) = folder.doc.item(item) {
                folder.items.insert(item, updated);
            }
        }
        Ok(())
    }

    fn reload_space(&mut self, id: SpaceId) -> Result<(), VaultError> {
        let team = self.store.space_team(&id)?;
        let space = load_space(&self.store, id, team)?;
        if let Some(u) = self.unlocked.as_mut() {
            if let Ok(folder) = open_folder(&space, &u.keys) {
                u.folders.insert(id, folder);
            }
        }
        self.spaces.insert(id, space);
        Ok(())
    }

    fn check_fields(
        item_type: ItemType,
        fields: &mut BTreeMap<String, String>,
    ) -> Result<(), VaultError> {
        let allowed: &[&str] = match item_type {
            ItemType::Login => &["username", "password", "notes", "totp"],
            ItemType::Note => &["notes"],
            ItemType::Card => &["holder", "number", "cvv", "expiry", "notes"],
            ItemType::Totp => &["totp", "notes", "username"],
        };
        for key in fields.keys() {
            if !allowed.contains(&key.as_str()) {
                return Err(VaultError::Invalid(format!(
                    "a {} item has no field {key:?} (fields: {})",
                    item_type.as_str(),
                    allowed.join(", ")
                )));
            }
        }
        if let Some(totp) = fields.get_mut("totp") {
            if !totp.is_empty() {
                let config = TotpConfig::parse(totp)
                    .map_err(|e| VaultError::Invalid(format!("TOTP secret rejected: {e}")))?;
                *totp = config.to_uri();
            }
        }
        if let Some(expiry) = fields.get("expiry") {
            if !expiry.is_empty() && !valid_expiry(expiry) {
                return Err(VaultError::Invalid(format!(
                    "expiry {expiry:?} is not MM/YY"
                )));
            }
        }
        if let Some(number) = fields.get_mut("number") {
            let digits: String = number
                .chars()
                .filter(|c| !c.is_whitespace() && *c != '-')
                .collect();
            if !digits.is_empty()
                && (!digits.chars().all(|c| c.is_ascii_digit())
                    || !(8..=19).contains(&digits.len()))
            {
                return Err(VaultError::Invalid(
                    "card number must be 8 to 19 digits".into(),
                ));
            }
            *number = digits;
        }
        if let Some(cvv) = fields.get("cvv") {
            if !cvv.is_empty()
                && (!cvv.chars().all(|c| c.is_ascii_digit()) || !(3..=4).contains(&cvv.len()))
            {
                return Err(VaultError::Invalid("CVV must be 3 or 4 digits".into()));
            }
        }
        Ok(())
    }

    pub fn item_add(
        &mut self,
        p: m::ItemAddParams,
        now: Now,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(ItemView, Vec<Event>), VaultError> {
        self.unlocked()?;
        let item_type = ItemType::parse(&p.item_type).ok_or_else(|| {
            VaultError::Invalid(format!(
                "unknown item type {:?} (login, note, card, totp)",
                p.item_type
            ))
        })?;
        let space = self.resolve_folder(p.folder.as_deref())?;
        let mut fields = p.fields;
        Self::check_fields(item_type, &mut fields)?;
        if item_type == ItemType::Totp && fields.get("totp").is_none_or(|t| t.is_empty()) {
            return Err(VaultError::Invalid("a totp item needs a secret".into()));
        }
        let mut raw = [0u8; 16];
        rng.fill_bytes(&mut raw);
        let id = ItemId(raw);
        let edit = ItemEdit {
            name: None,
            fields,
            urls: Some(p.urls),
        };
        let name = p.name.trim().to_string();
        self.write(space, id, rng, |doc| {
            doc.add_item(id, item_type, &name, &edit, now.unix_ms)
        })?;
        debug!(item = %&id.to_hex()[..8], "item added");
        let view = self.view(&space, self.item(&space, &id)?);
        Ok((view, vec![item_event(&space, &id, "added")]))
    }

    pub fn item_get(&self, r: &m::ItemRef) -> Result<ItemView, VaultError> {
        let (space, id) = self.resolve_item(&r.item, r.trash)?;
        Ok(self.view(&space, self.item(&space, &id)?))
    }

    pub fn item_list(&self, p: &m::ItemListParams) -> Result<Vec<ItemSummary>, VaultError> {
        let u = self.unlocked()?;
        let only = p
            .folder
            .as_deref()
            .map(|f| self.resolve_folder(Some(f)))
            .transpose()?;
        let mut out: Vec<ItemSummary> = u
            .folders
            .iter()
            .filter(|(id, _)| only.is_none_or(|o| o == **id))
            .flat_map(|(space, f)| {
                f.items
                    .values()
                    .filter(|i| i.trashed_ms.is_some() == p.trash)
                    .map(move |i| self.summary(space, i))
            })
            .collect();
        out.sort_by(|a, b| {
            (a.folder.to_lowercase(), a.name.to_lowercase(), &a.id).cmp(&(
                b.folder.to_lowercase(),
                b.name.to_lowercase(),
                &b.id,
            ))
        });
        Ok(out)
    }

    /// Case-insensitive match on name, username, URLs and folder (never on secrets).
    pub fn item_search(&self, query: &str) -> Result<Vec<ItemSummary>, VaultError> {
        let q = query.trim().to_lowercase();
        if q.is_empty() {
            return Err(VaultError::Invalid("empty search".into()));
        }
        let all = self.item_list(&m::ItemListParams::default())?;
        Ok(all
            .into_iter()
            .filter(|s| {
                s.name.to_lowercase().contains(&q)
                    || s.folder.to_lowercase().contains(&q)
                    || s.username
                        .as_deref()
                        .is_some_and(|u| u.to_lowercase().contains(&q))
                    || s.urls.iter().any(|u| u.to_lowercase().contains(&q))
            })
            .collect())
    }

    pub fn item_edit(
        &mut self,
        p: m::ItemEditParams,
        now: Now,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(ItemView, Vec<Event>), VaultError> {
        let (space, id) = self.resolve_item(&p.item, false)?;
        let item_type = self.item(&space, &id)?.item_type;
        let mut fields = p.fields;
        Self::check_fields(item_type, &mut fields)?;
        if item_type == ItemType::Totp && fields.get("totp").is_some_and(|t| t.is_empty()) {
            return Err(VaultError::Invalid("a totp item needs a secret".into()));
        }
        if p.name.is_none() && fields.is_empty() && p.urls.is_none() {
            return Err(VaultError::Invalid("nothing to change".into()));
        }
        let edit = ItemEdit {
            name: p.name.map(|n| n.trim().to_string()),
            fields,
            urls: p.urls,
        };
        self.write(space, id, rng, |doc| doc.edit_item(id, &edit, now.unix_ms))?;
        let view = self.view(&space, self.item(&space, &id)?);
        Ok((view, vec![item_event(&space, &id, "edited")]))
    }

    /// Moves to (`trash`) or out of the trash.
    pub fn item_set_trashed(
        &mut self,
        query: &str,
        trash: bool,
        now: Now,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(ItemSummary, Vec<Event>), VaultError> {
        let (space, id) = self.resolve_item(query, !trash)?;
        self.write(space, id, rng, |doc| {
            doc.set_trashed(id, trash, now.unix_ms)
        })?;
        let summary = self.summary(&space, self.item(&space, &id)?);
        let action = if trash { "trashed" } else { "restored" };
        Ok((summary, vec![item_event(&space, &id, action)]))
    }

    pub fn item_history(&self, r: &m::ItemRef) -> Result<Vec<m::HistoryEntry>, VaultError> {
        let (space, id) = match self.resolve_item(&r.item, false) {
            Err(VaultError::NotFound(_)) => self.resolve_item(&r.item, true)?,
            other => other?,
        };
        let folder = &self.unlocked()?.folders[&space];
        Ok(folder
            .doc
            .history(id)
            .into_iter()
            .map(|h| m::HistoryEntry {
                time_ms: h.time_ms,
                device: h.author.map(|d| d.to_hex()),
                name: h.item.name,
                fields: h.item.fields,
                urls: h.item.urls,
                trashed: h.item.trashed_ms.is_some(),
            })
            .collect())
    }

    pub fn totp_code(&self, p: &m::TotpParams, now: Now) -> Result<m::TotpCode, VaultError> {
        let (space, id) = self.resolve_item(&p.item, false)?;
        let item = self.item(&space, &id)?;
        let uri = item.fields.get("totp").ok_or_else(|| {
            VaultError::NotFound(format!(
                "{} has no TOTP secret (link one with `coffer totp set`)",
                item.name
            ))
        })?;
        let config = TotpConfig::parse(uri)
            .map_err(|e| VaultError::Invalid(format!("stored TOTP secret is invalid: {e}")))?;
        let at = p.at.unwrap_or(now.unix_secs());
        Ok(m::TotpCode {
            code: config.code_at(at),
            seconds_remaining: config.seconds_remaining(at),
            period: config.period,
            digits: if config.steam { 5 } else { config.digits },
            algorithm: if config.steam {
                "STEAM".into()
            } else {
                format!("{:?}", config.algorithm).to_uppercase()
            },
            item: item.name.clone(),
        })
    }

    pub fn totp_set(
        &mut self,
        p: m::TotpSetParams,
        now: Now,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(ItemView, Vec<Event>), VaultError> {
        let (space, id) = self.resolve_item(&p.item, false)?;
        let item_type = self.item(&space, &id)?.item_type;
        if !matches!(item_type, ItemType::Login | ItemType::Totp) {
            return Err(VaultError::Invalid(format!(
                "a {} item cannot hold a TOTP secret",
                item_type.as_str()
            )));
        }
        self.item_edit(
            m::ItemEditParams {
                item: id.to_hex(),
                fields: BTreeMap::from([("totp".to_string(), p.secret)]),
                ..Default::default()
            },
            now,
            rng,
        )
    }

    /// Adds the items of a parsed export: folders it names are created,
    /// items already present (same [`import::fingerprint`]) are not added
    /// again, and every item's envelope is stored in one transaction.
    pub fn import(
        &mut self,
        request: ImportRequest<'_>,
        now: Now,
        rng: &mut impl CryptoRngCore,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<(m::ImportResult, Vec<Event>), VaultError> {
        let ImportRequest {
            report,
            format,
            into,
            dry_run,
        } = request;
        let u = self.unlocked()?;
        let into = into.map(|f| self.resolve_folder(Some(f))).transpose()?;
        let personal = self.resolve_folder(None)?;
        let mut seen: BTreeSet<[u8; 32]> = BTreeSet::new();
        for (space, folder) in &u.folders {
            let folder_name = self.folder_name(space);
            for item in folder.items.values() {
                seen.insert(import::fingerprint(&import::ImportedItem {
                    item_type: item.item_type.as_str().into(),
                    name: item.name.clone(),
                    folder: Some(folder_name.clone()),
                    fields: item.fields.clone(),
                    urls: item.urls.clone(),
                    times: import::ItemTimes::default(),
                }));
            }
        }
        let target_name = |item: &import::ImportedItem| match (into, &item.folder) {
            (Some(space), _) => self.folder_name(&space),
            (None, Some(name)) => name.replace('/', "-"),
            (None, None) => self.folder_name(&personal),
        };
        let mut planned = Vec::new();
        let mut duplicates = 0;
        let mut added: BTreeMap<String, usize> = BTreeMap::new();
        for mut item in report.items {
            item.folder = Some(target_name(&item));
            if !seen.insert(import::fingerprint(&item)) {
                duplicates += 1;
                continue;
            }
            *added.entry(item.item_type.clone()).or_default() += 1;
            planned.push(item);
        }
        let mut folders_created = Vec::new();
        for item in &planned {
            let name = item.folder.clone().unwrap_or_default();
            if self.resolve_folder(Some(&name)).is_err() && !folders_created.contains(&name) {
                folders_created.push(name);
            }
        }
        let mut result = m::ImportResult {
            format: format.name().into(),
            dry_run,
            added,
            duplicates,
            folders_created: folders_created.clone(),
            skipped: report
                .skipped
                .into_iter()
                .map(|s| m::SkippedRecord {
                    record: s.record,
                    reason: s.reason,
                })
                .collect(),
        };
        if dry_run || planned.is_empty() {
            return Ok((result, Vec::new()));
        }
        let mut events = Vec::new();
        for name in &folders_created {
            let (info, mut evs) = self.folder_create(name, now, rng)?;
            events.append(&mut evs);
            debug!(folder = %info.id, "folder created by import");
        }
        let mut envelopes = Vec::new();
        let mut touched: BTreeMap<SpaceId, Vec<Item>> = BTreeMap::new();
        let outcome = (|| -> Result<(), VaultError> {
            let mut by_space: BTreeMap<SpaceId, Vec<PlannedItem>> = BTreeMap::new();
            for item in planned {
                let space = self.resolve_folder(item.folder.as_deref())?;
                let item_type = ItemType::parse(&item.item_type).ok_or_else(|| {
                    VaultError::Invalid(format!("unknown item type {:?}", item.item_type))
                })?;
                let mut fields = item.fields;
                Self::check_fields(item_type, &mut fields)?;
                let mut raw = [0u8; 16];
                rng.fill_bytes(&mut raw);
                let edit = ItemEdit {
                    name: None,
                    fields,
                    urls: Some(item.urls),
                };
                by_space.entry(space).or_default().push(PlannedItem {
                    id: ItemId(raw),
                    item_type,
                    name: item.name.trim().to_string(),
                    edit,
                    times: item.times,
                });
            }
            let total = by_space.values().map(Vec::len).sum::<usize>();
            let mut done = 0;
            for (space, items) in by_space {
                for chunk in import_chunks(&items) {
                    let batch: Vec<NewItem<'_>> = chunk
                        .iter()
                        .map(|p| {
                            let created_ms = p.times.created_ms.unwrap_or(now.unix_ms);
                            NewItem {
                                id: p.id,
                                item_type: p.item_type,
                                name: &p.name,
                                edit: &p.edit,
                                created_ms,
                                updated_ms: p.times.updated_ms.unwrap_or(created_ms),
                                trashed_ms: p.times.trashed_ms,
                            }
                        })
                        .collect();
                    let env = self.seal_local_change(space, rng, |doc| {
                        doc.add_items(&batch, now.unix_ms).map_err(|e| match e {
                            coffer_crdt::FolderError::Invalid(msg) => {
                                let names = chunk.iter().map(|p| p.name.as_str());
                                coffer_crdt::FolderError::Invalid(format!(
                                    "{msg} (in one of: {})",
                                    names.take(5).collect::<Vec<_>>().join(", ")
                                ))
                            }
                            other => other,
                        })
                    })?;
                    envelopes.push(env);
                    touched
                        .entry(space)
                        .or_default()
                        .extend(batch.iter().map(NewItem::to_item));
                    done += chunk.len();
                    progress(done, total);
                }
            }
            self.store.append(&envelopes.iter().collect::<Vec<_>>())?;
            Ok(())
        })();
        if let Err(e) = outcome {
            // Nothing of the items was stored: drop what memory already holds.
            for space in touched.keys() {
                self.reload_space(*space)?;
            }
            result.added.clear();
            return Err(e);
        }
        if let Some(u) = self.unlocked.as_mut() {
            for (space, items) in &touched {
                if let Some(folder) = u.folders.get_mut(space) {
                    for item in items {
                        events.push(item_event(space, &item.id, "added"));
                        folder.items.insert(item.id, item.clone());
                    }
                }
            }
        }
        info!(
            items = touched.values().map(Vec::len).sum::<usize>(),
            changes = envelopes.len(),
            format = format.name(),
            "import done"
        );
        Ok((result, events))
    }

    /// Every readable item (or one folder's) as plaintext for an export or a
    /// backup, sorted by folder and name; trashed items only if asked.
    pub fn export_items(
        &self,
        folder: Option<&str>,
        include_trash: bool,
    ) -> Result<Vec<ExportItem>, VaultError> {
        let u = self.unlocked()?;
        let only = folder.map(|f| self.resolve_folder(Some(f))).transpose()?;
        let mut out = Vec::new();
        for (space, open) in &u.folders {
            if only.is_some_and(|o| o != *space) {
                continue;
            }
            let folder_name = self.folder_name(space);
            for item in open.items.values() {
                if item.trashed_ms.is_some() && !include_trash {
                    continue;
                }
                out.push(ExportItem {
                    item_type: item.item_type.as_str().into(),
                    name: item.name.clone(),
                    folder: folder_name.clone(),
                    fields: item.fields.clone(),
                    urls: item.urls.clone(),
                    created_ms: Some(item.created_ms),
                    updated_ms: Some(item.updated_ms),
                    trashed_ms: item.trashed_ms,
                });
            }
        }
        // Stable across devices: items of the same name are ordered by content.
        out.sort_by(|a, b| {
            (&a.folder, &a.name)
                .cmp(&(&b.folder, &b.name))
                .then_with(|| a.cmp(b))
        });
        Ok(out)
    }

    /// Ids of every folder (for tests and status).
    pub fn folder_ids(&self) -> BTreeSet<SpaceId> {
        self.spaces.keys().copied().collect()
    }
}

/// Rebuilding folders frees far more than it keeps (measured: 97 MB RSS after
/// unlocking 10,000 items); hand the freed heap back to the OS.
/// What [`Vault::import`] adds: a parsed export and where it goes.
pub struct ImportRequest<'a> {
    pub report: import::ImportReport,
    pub format: import::Format,
    /// Put everything into this existing folder instead of the export's folders.
    pub into: Option<&'a str>,
    /// Only report what would be added.
    pub dry_run: bool,
}

/// An import item checked and given its id, waiting to be sealed.
struct PlannedItem {
    id: ItemId,
    item_type: ItemType,
    name: String,
    edit: ItemEdit,
    times: import::ItemTimes,
}

/// Splits an import into batches of at most 500 items and about 256 KiB of
/// text, so each batch is one change whose envelope stays far below
/// `MAX_ENVELOPE_BYTES` (a single item is bounded by `MAX_EDIT_BYTES`).
fn import_chunks(items: &[PlannedItem]) -> impl Iterator<Item = &[PlannedItem]> {
    const MAX_ITEMS: usize = 500;
    const MAX_TEXT: usize = 256 * 1024;
    let mut rest = items;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut text = 0;
        let mut n = 0;
        while n < rest.len() && n < MAX_ITEMS {
            let PlannedItem { name, edit, .. } = &rest[n];
            let size = 128 + name.len() + edit.text_bytes();
            if n > 0 && text + size > MAX_TEXT {
                break;
            }
            text += size;
            n += 1;
        }
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        Some(chunk)
    })
}

fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory to the OS.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A role as the product names it.
fn role_title(role: coffer_crdt::Role) -> &'static str {
    match role {
        coffer_crdt::Role::Manager => "Folder Manager",
        coffer_crdt::Role::Editor => "Item Manager",
        coffer_crdt::Role::Member => "Folder Member",
    }
}

fn item_event(space: &SpaceId, id: &ItemId, action: &str) -> Event {
    Event::ItemChanged {
        folder_id: space.to_hex(),
        item_id: id.to_hex(),
        action: action.into(),
    }
}

fn valid_expiry(s: &str) -> bool {
    let Some((mm, yy)) = s.split_once('/') else {
        return false;
    };
    let month_ok = mm.len() == 2 && mm.parse::<u8>().is_ok_and(|m| (1..=12).contains(&m));
    let year_ok = (yy.len() == 2 || yy.len() == 4) && yy.chars().all(|c| c.is_ascii_digit());
    month_ok && year_ok
}

/// A space from its stored envelopes, judged in one evaluation (one at a
/// time is quadratic while an envelope is pending, e.g. a folder whose
/// sync was interrupted).
/// A folder of a team also holds the team's roster envelopes.
fn load_space(store: &Store, id: SpaceId, team: Option<SpaceId>) -> Result<Space, VaultError> {
    let mut space = Space::new_in_team(id, team);
    let mut envs = Vec::new();
    let mut stored = match team {
        Some(t) if t != id => store.envelopes(&t)?,
        _ => Vec::new(),
    };
    stored.extend(store.envelopes(&id)?);
    for bytes in stored {
        match Envelope::decode(&bytes) {
            Ok(env) => envs.push(env),
            Err(e) => warn!(space = %id.short(), error = %e, "stored envelope does not decode"),
        }
    }
    for outcome in space.ingest_batch(envs).outcomes {
        if let Err(e) = outcome {
            warn!(space = %id.short(), error = %e, "stored envelope refused");
        }
    }
    Ok(space)
}

/// Opens a folder's key and rebuilds its document from the accepted content.
fn open_folder(space: &Space, keys: &DeviceKeys) -> Result<OpenFolder, VaultError> {
    let key = space
        .folder_key(keys)
        .map_err(|e| VaultError::Internal(e.to_string()))?;
    let me = keys.device_id();
    let mut doc = FolderDoc::with_incarnation(me, space.incarnation(&me));
    // Each change opens with the key of its own epoch (earlier epochs
    // through the key chain), not the newest one (issue 12).
    let epoch_keys = space.epoch_keys(keys);
    let mut changes = Vec::new();
    for env in space.accepted_content() {
        let opened = match env.body().epoch.and_then(|e| epoch_keys.get(&e)) {
            Some(epoch_key) => Space::open_content(env, epoch_key).map_err(|e| e.to_string()),
            None => Err("no key for its epoch".to_string()),
        };
        match opened {
            Ok(change) => changes.push((env.author(), env.id(), change)),
            Err(e) => warn!(envelope = %env.id().short(), error = %e, "content does not decrypt"),
        }
    }
    // One Automerge call for the whole folder: one change at a time took 15 s
    // for 10,000 items.
    if let Err(e) = doc.apply_changes(changes.iter().map(|(author, _, c)| (*author, c.as_slice())))
    {
        warn!(error = %e, "batch rebuild refused; applying changes one by one");
        for (author, id, change) in &changes {
            if let Err(e) = doc.apply_change(author, change) {
                warn!(envelope = %id.short(), error = %e, "content change refused");
            }
        }
    }
    let items = doc.items().into_iter().map(|i| (i.id, i)).collect();
    Ok(OpenFolder { key, doc, items })
}

/// A tiny helper so `init` can serialise records of different types inline.
mod erased {
    pub trait Json {
        fn to_json(&self) -> Vec<u8>;
    }
    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> Vec<u8> {
            serde_json::to_vec(self).expect("serialising plain data cannot fail")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_formats() {
        assert!(valid_expiry("01/27"));
        assert!(valid_expiry("12/2031"));
        assert!(!valid_expiry("13/27"));
        assert!(!valid_expiry("1/27"));
        assert!(!valid_expiry("0127"));
    }

    #[test]
    fn import_chunks_bound_items_and_bytes() {
        let item = |i: usize, note: usize| {
            let edit = ItemEdit {
                fields: [("notes".to_string(), "n".repeat(note))].into(),
                ..Default::default()
            };
            PlannedItem {
                id: ItemId([i as u8; 16]),
                item_type: ItemType::Note,
                name: format!("n{i}"),
                edit,
                times: import::ItemTimes::default(),
            }
        };
        let small: Vec<_> = (0..1200).map(|i| item(i, 10)).collect();
        let sizes: Vec<usize> = import_chunks(&small).map(<[_]>::len).collect();
        assert_eq!(sizes, [500, 500, 200]);

        // 60 KiB notes: about four to a chunk; an oversized single item still
        // gets a chunk of its own (the folder refuses it with a clear error).
        let big: Vec<_> = (0..10).map(|i| item(i, 60 * 1024)).collect();
        let sizes: Vec<usize> = import_chunks(&big).map(<[_]>::len).collect();
        assert_eq!(sizes.iter().sum::<usize>(), 10);
        assert!(sizes.iter().all(|&n| (1..=4).contains(&n)), "{sizes:?}");
        let huge = vec![item(0, 600 * 1024)];
        assert_eq!(import_chunks(&huge).count(), 1);
        assert_eq!(import_chunks(&[]).count(), 0);
    }
}
