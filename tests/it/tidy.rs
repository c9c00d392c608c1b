//! Architecture invariants, read from the workspace's manifests and sources:
//! `crdt` stays sans-IO, the CLI talks to the daemon only through `ipc`, and
//! `ipc` knows nothing of Automerge or the vault core.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use coffer_tests::files_under;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_path_buf()
}

fn manifest(rel: &str) -> toml::Table {
    let path = workspace_root().join(rel).join("Cargo.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every dependency table of a manifest of the given kinds ("dependencies",
/// "build-dependencies", "dev-dependencies"), target-specific ones included.
fn dep_tables<'a>(m: &'a toml::Table, kinds: &[&str]) -> Vec<&'a toml::Table> {
    let mut tables = Vec::new();
    for kind in kinds {
        if let Some(t) = m.get(*kind).and_then(|v| v.as_table()) {
            tables.push(t);
        }
        if let Some(targets) = m.get("target").and_then(|v| v.as_table()) {
            for target in targets.values() {
                if let Some(t) = target.get(*kind).and_then(|v| v.as_table()) {
                    tables.push(t);
                }
            }
        }
    }
    tables
}

/// Crate names a manifest depends on (normal and build dependencies), by
/// key and by `package = ...` renames.
fn deps(m: &toml::Table) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for table in dep_tables(m, &["dependencies", "build-dependencies"]) {
        for (key, spec) in table {
            out.insert(key.clone());
            if let Some(package) = spec.get("package").and_then(|p| p.as_str()) {
                out.insert(package.to_string());
            }
        }
    }
    out
}

#[track_caller]
fn assert_no_deps(krate: &str, forbidden: &[&str]) {
    let found = deps(&manifest(krate));
    let bad: Vec<&&str> = forbidden.iter().filter(|f| found.contains(**f)).collect();
    assert!(
        bad.is_empty(),
        "{krate}/Cargo.toml must not depend on {bad:?} (it depends on {found:?})"
    );
}

#[test]
fn workspace_members_are_the_expected_crates() {
    let root = manifest(".");
    let members: BTreeSet<&str> = root["workspace"]["members"]
        .as_array()
        .expect("workspace.members")
        .iter()
        .filter_map(|m| m.as_str())
        .collect();
    for expected in ["crdt", "ipc", "daemon", "cli", "tests"] {
        assert!(
            members.contains(expected),
            "{expected} is not a workspace member"
        );
    }
    let name = |rel: &str| {
        manifest(rel)["package"]["name"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(name("crdt"), "coffer-crdt");
    assert_eq!(name("ipc"), "coffer-ipc");
    assert_eq!(name("daemon"), "coffer-daemon");
    assert_eq!(name("cli"), "coffer-cli");
}

#[test]
fn crdt_depends_on_no_io_crate() {
    assert_no_deps(
        "crdt",
        &[
            "tokio",
            "tokio-util",
            "rusqlite",
            "libp2p",
            "mio",
            "libc",
            "directories",
            "coffer-ipc",
            "coffer-daemon",
        ],
    );
    // No OS randomness either: rand_core without its getrandom feature
    // (OsRng), whether set here or inherited from the workspace.
    let m = manifest("crdt");
    let ws = manifest(".");
    for table in dep_tables(&m, &["dependencies", "build-dependencies"]) {
        for (key, spec) in table {
            let mut features: Vec<String> = spec
                .get("features")
                .and_then(|f| f.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|f| f.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            if spec.get("workspace").and_then(|w| w.as_bool()) == Some(true) {
                if let Some(f) = ws["workspace"]["dependencies"]
                    .get(key)
                    .and_then(|d| d.get("features"))
                    .and_then(|f| f.as_array())
                {
                    features.extend(f.iter().filter_map(|f| f.as_str().map(String::from)));
                }
            }
            assert!(
                !features.iter().any(|f| f == "getrandom" || f == "std-rng"),
                "crdt's {key} enables OS randomness ({features:?})"
            );
        }
    }
    assert!(!deps(&m).contains("getrandom"), "crdt depends on getrandom");
}

#[test]
fn cli_talks_to_the_daemon_only_through_ipc() {
    let found = deps(&manifest("cli"));
    assert!(
        found.contains("coffer-ipc"),
        "cli must depend on coffer-ipc"
    );
    assert_no_deps(
        "cli",
        &["coffer-crdt", "coffer-daemon", "automerge", "rusqlite"],
    );
}

#[test]
fn ipc_knows_nothing_of_the_vault_core() {
    assert_no_deps(
        "ipc",
        &[
            "automerge",
            "coffer-crdt",
            "coffer-daemon",
            "libp2p",
            "rusqlite",
        ],
    );
}

/// `text` without `//` comments (crude, but enough for these patterns).
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().map(|(i, line)| {
        let code = match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        };
        (i + 1, code)
    })
}

#[test]
fn crdt_source_does_no_io_and_reads_no_clock() {
    let src = workspace_root().join("crdt").join("src");
    let files: Vec<PathBuf> = files_under(&src)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    assert!(!files.is_empty(), "no sources under {}", src.display());
    let forbidden = [
        "std::fs",
        "std::net",
        "std::process",
        "SystemTime::now",
        "Instant::now",
        "OsRng",
        "thread_rng",
        "tokio::",
    ];
    let mut hits = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (n, code) in code_lines(&text) {
            for pattern in forbidden {
                if code.contains(pattern) {
                    hits.push(format!("{}:{n}: {pattern}", file.display()));
                }
            }
            // Grouped imports: `use std::{fs, ...}` / `use std::{net::...}`.
            if let Some(at) = code.find("std::{") {
                let group = &code[at..];
                for module in ["fs", "net", "process"] {
                    let named = group
                        .split(|c: char| !c.is_alphanumeric() && c != '_')
                        .any(|w| w == module);
                    if named {
                        hits.push(format!("{}:{n}: std::{{{module}}}", file.display()));
                    }
                }
            }
        }
    }
    assert!(
        hits.is_empty(),
        "crdt must stay sans-IO (time and randomness come from the caller):\n{}",
        hits.join("\n")
    );
}

/// `(file, line, code)` of every line of code under `dir` (comments cut).
fn code_under(dir: &Path) -> Vec<(PathBuf, usize, String)> {
    let mut out = Vec::new();
    for file in files_under(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
    {
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, code) in code_lines(&text) {
            out.push((file.clone(), n, code.to_string()));
        }
    }
    out
}

/// The daemon's layering (docs/ARCHITECTURE.md, "daemon/"): the vault is
/// one actor owning the replica, reached through a bounded channel; wire
/// types stop at `server/`; the vault knows nothing of the network.
#[test]
fn daemon_layers_hold() {
    let daemon = workspace_root().join("daemon").join("src");
    let mut vault: Vec<PathBuf> = files_under(&daemon.join("vault"));
    vault.push(daemon.join("vault.rs"));
    let mut hits = Vec::new();
    for file in &vault {
        let text = std::fs::read_to_string(file).unwrap();
        for (n, code) in code_lines(&text) {
            for pattern in ["coffer_ipc", "crate::net", "crate::server", "libp2p"] {
                if code.contains(pattern) {
                    hits.push(format!("{}:{n}: {pattern}", file.display()));
                }
            }
        }
    }
    for (file, n, code) in code_under(&daemon) {
        for pattern in [
            "Mutex<Vault>",
            "RwLock<Vault>",
            "unbounded_channel",
            "UnboundedSender",
        ] {
            if code.contains(pattern) {
                hits.push(format!("{}:{n}: {pattern}", file.display()));
            }
        }
    }
    assert!(
        hits.is_empty(),
        "the daemon's layering is broken (see docs/ARCHITECTURE.md):\n{}",
        hits.join("\n")
    );
    assert!(
        daemon.join("vault").join("actor.rs").exists(),
        "the vault actor moved: update this test and the map"
    );
}

/// What decides anything about replicated state is in `crdt/` (the
/// simulator runs it): the daemon never judges, signs or seals envelopes
/// itself.
#[test]
fn the_daemon_drives_the_replica_and_does_not_reimplement_it() {
    let daemon = workspace_root().join("daemon").join("src");
    let mut hits = Vec::new();
    // Test modules may play a peer's part (`*_tests.rs`).
    let shipped = code_under(&daemon)
        .into_iter()
        .filter(|(file, _, _)| !file.to_string_lossy().ends_with("_tests.rs"));
    for (file, n, code) in shipped {
        for pattern in [
            ".ingest(",
            ".ingest_batch(",
            "seal_content(",
            ".rotate(",
            ".grant(",
            "roster_op(",
            "FolderDoc::",
        ] {
            if code.contains(pattern) {
                hits.push(format!("{}:{n}: {pattern}", file.display()));
            }
        }
    }
    assert!(
        hits.is_empty(),
        "the daemon re-implements the replica (call coffer_crdt::Replica instead):\n{}",
        hits.join("\n")
    );
}
