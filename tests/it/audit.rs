//! The audit trail end to end (issue 13): three daemons — admin Ada, Item
//! Manager Bob, Folder Member Cyd. Cyd shows a shared TOTP and copies a
//! password; within seconds Ada's `coffer audit --json` has both records;
//! Cyd sees her own; Bob (not an admin) holds and reads none of hers. Then
//! the tampering an admin's `coffer audit verify` must name: rows deleted
//! from a member's store (gap), a member rewriting its chain from a point
//! (fork), a record's bytes edited and a record replayed under another
//! device (bad signature).

use std::path::Path;
use std::time::{Duration, Instant};

use coffer_tests::{str_field, Cli, Daemon, PIN};
use serde_json::Value;

use crate::sync::{free_port, start_node, wait_until, SYNC_TIMEOUT};
use crate::team::{enrol, init_as};

/// A wl-copy that stores stdin (the clipboard test's fake, smaller).
fn fake_wl_copy(dir: &Path) {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let p = bin.join("wl-copy");
    std::fs::write(
        &p,
        "#!/bin/sh\ncase \"$1\" in --help) exit 0 ;; --clear) exit 0 ;; esac\ncat > \"$FAKE_CLIP/clip\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

fn copy_password(d: &Daemon, item: &str) {
    let dir = d.dir.path();
    fake_wl_copy(dir);
    let mut cmd = d.command(&["get", item, "--copy", "--clear-after", "0"]);
    let path = format!(
        "{}:{}",
        dir.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    cmd.env("PATH", path)
        .env("WAYLAND_DISPLAY", "fake-wayland-0")
        .env_remove("DISPLAY")
        .env("FAKE_CLIP", dir);
    let out = coffer_tests::run_with_timeout(&mut cmd, b"", Duration::from_secs(30));
    assert!(out.status.success(), "{out:?}");
}

fn records(cli: &Cli, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["audit", "--json"];
    all.extend_from_slice(args);
    cli.json(&all, "").as_array().cloned().unwrap_or_default()
}

fn device_id(cli: &Cli) -> String {
    str_field(&cli.status(), "device_id").to_string()
}

fn verify(cli: &Cli) -> Value {
    let out = cli.coffer(&["audit", "verify", "--json"], "");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"))
}

/// The findings `verify` lists for `device`: (kind, seq).
fn findings(v: &Value, device: &str) -> Vec<(String, u64)> {
    v["chains"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["device"] == device)
        .flat_map(|c| c["findings"].as_array().cloned().unwrap_or_default())
        .map(|f| {
            (
                f["kind"].as_str().unwrap().to_string(),
                f["seq"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Ada (admin), Bob and Cyd in a team; folder "Ops" shared with Bob as
/// Item Manager and Cyd as Folder Member; a login "aws" with a TOTP.
fn team() -> (Daemon, Daemon, Daemon, u16) {
    let (pa, pb, pc) = (free_port(), free_port(), free_port());
    let a = start_node(pa, &[]);
    let b = start_node(pb, &[pa]);
    let c = start_node(pc, &[pa]);
    init_as(&a, "Ada Admin", "ada@example.com");
    a.ok(&["team", "create", "Acme"], "");
    enrol(&a, pa, &b, "bob@example.com", &["--name", "Bob"]);
    enrol(&a, pa, &c, "cyd@example.com", &["--name", "Cyd Ng"]);
    a.ok(&["folder", "create", "Ops"], "");
    for (user, role) in [("bob@example.com", "editor"), ("cyd@example.com", "member")] {
        a.ok(
            &["folder", "share", "Ops", "--user", user, "--role", role],
            "",
        );
    }
    a.add_login(
        "aws",
        "aws-Secret-77",
        &["--folder", "Ops", "--username", "ops"],
    );
    a.ok(&["totp", "set", "Ops/aws"], "JBSWY3DPEHPK3PXP\n");
    for (who, d) in [("Bob", &b), ("Cyd", &c)] {
        wait_until(SYNC_TIMEOUT, &format!("{who} has the TOTP"), || {
            d.coffer(&["totp", "Ops/aws"], "").status.success()
        });
    }
    (a, b, c, pa)
}

#[test]
fn a_members_use_of_a_shared_secret_reaches_the_admin_and_no_other_member() {
    let (a, b, c, _) = team();
    let cyd = device_id(&c);
    c.ok(&["totp", "Ops/aws"], "");
    copy_password(&c, "Ops/aws");
    let start = Instant::now();
    let mut seen = Vec::new();
    wait_until(SYNC_TIMEOUT, "Ada's audit has Cyd's two records", || {
        seen = records(&a, &["--user", "cyd@example.com", "--item", "aws"]);
        let actions: Vec<&str> = seen.iter().filter_map(|r| r["action"].as_str()).collect();
        actions.contains(&"totp-show") && actions.contains(&"copy")
    });
    eprintln!("audit: Cyd's records reached Ada in {:?}", start.elapsed());
    for r in &seen {
        assert_eq!(r["user"], "cyd@example.com");
        // Named as the admin's roster has her.
        assert_eq!(r["user_name"], "Cyd Ng", "{r}");
        assert_eq!(r["device"], cyd.as_str());
        assert_eq!(r["item_name"], "aws");
        assert_eq!(r["folder_name"], "Ops");
        assert!(r["time_ms"].as_i64().unwrap() > 1_700_000_000_000, "{r}");
    }
    let copy = seen.iter().find(|r| r["action"] == "copy").unwrap();
    assert_eq!(copy["field"], "password");
    // No secret value in any record, nor in the export.
    let all = a.ok(&["audit", "--json"], "");
    assert!(!all.contains("aws-Secret-77"));
    // Filters: by action, by device, by time.
    let only_copy = records(&a, &["--action", "copy", "--device", &cyd[..12]]);
    assert!(!only_copy.is_empty() && only_copy.iter().all(|r| r["action"] == "copy"));
    assert!(records(&a, &["--user", "cyd@example.com", "--until", "1d"]).is_empty());

    // Cyd sees her own records.
    let own = records(&c, &["--item", "aws"]);
    let actions: Vec<&str> = own.iter().filter_map(|r| r["action"].as_str()).collect();
    assert!(
        actions.contains(&"totp-show") && actions.contains(&"copy"),
        "{own:?}"
    );

    // Bob is no admin: after Cyd's records had every chance to reach him
    // (Ada has them, and Bob syncs with both), he holds none of them.
    b.ok(&["totp", "Ops/aws"], "");
    wait_until(SYNC_TIMEOUT, "Ada has Bob's record", || {
        !records(&a, &["--user", "bob@example.com"]).is_empty()
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(records(&b, &["--user", "cyd@example.com"]).is_empty());
    let chains = verify(&b);
    assert!(
        chains["chains"]
            .as_array()
            .unwrap()
            .iter()
            .all(|ch| ch["device"] != cyd.as_str()),
        "Bob holds Cyd's chain: {chains}"
    );
    // The honest chains verify clean at the admin's, Cyd's among them.
    let v = verify(&a);
    assert_eq!(v["clean"], true, "{v}");
    assert!(v["chains"]
        .as_array()
        .unwrap()
        .iter()
        .any(|ch| ch["device"] == cyd.as_str() && ch["user"] == "cyd@example.com"));
    // The human list names her "Name <email>"; so does her own.
    let text = a.ok(&["audit", "--user", "cyd@example.com", "--item", "aws"], "");
    let copy_line = text
        .lines()
        .find(|l| l.contains(" copy "))
        .unwrap_or_else(|| panic!("no copy record listed:\n{text}"));
    assert!(copy_line.contains("Cyd Ng <cyd@example.com>"), "{text}");
    assert!(c
        .ok(&["audit", "--item", "aws"], "")
        .contains("Cyd Ng <cyd@example.com>"));
    // CSV (the name in a last column) and the compliance export.
    let csv = c.ok(&["audit", "--csv", "--action", "copy"], "");
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("time,user,device,device_name,seq,action,folder,folder_name,item,item_name,field,detail,user_name"),
        "{csv}"
    );
    let row = lines.next().unwrap_or_else(|| panic!("no record: {csv}"));
    assert!(
        row.contains(",cyd@example.com,") && row.ends_with(",password,,Cyd Ng"),
        "{csv}"
    );
    let file = a.dir.path().join("audit.json");
    a.ok(
        &[
            "audit",
            "export",
            file.to_str().unwrap(),
            "--format",
            "json",
        ],
        "",
    );
    let exported: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert!(exported.as_array().unwrap().len() >= 2);
}

/// Records about a folder are visible to its Folder Managers: Bob manages
/// Infra (and is an Item Manager of Ops); Cyd, a Folder Member of both,
/// reveals a password in each. Bob reads Cyd's record about Infra and no
/// other of hers (not Ops, not her unlocks); Ada, the admin, reads both.
#[test]
fn a_folder_manager_reads_the_records_about_their_folder_alone() {
    let (a, b, c, _) = team();
    a.ok(&["folder", "create", "Infra"], "");
    for (user, role) in [
        ("bob@example.com", "manager"),
        ("cyd@example.com", "member"),
    ] {
        a.ok(
            &["folder", "share", "Infra", "--user", user, "--role", role],
            "",
        );
    }
    a.add_login("db", "db-Secret-42", &["--folder", "Infra"]);
    wait_until(SYNC_TIMEOUT, "Cyd has Infra/db", || {
        c.coffer(&["get", "Infra/db"], "").status.success()
    });
    assert_eq!(
        c.ok(&["get", "Infra/db", "--field", "password"], "").trim(),
        "db-Secret-42"
    );
    assert_eq!(
        c.ok(&["get", "Ops/aws", "--field", "password"], "").trim(),
        "aws-Secret-77"
    );

    let reveals = |d: &Daemon| -> Vec<String> {
        records(d, &["--user", "cyd@example.com", "--action", "reveal"])
            .iter()
            .map(|r| r["folder_name"].as_str().unwrap_or("").to_string())
            .collect()
    };
    wait_until(SYNC_TIMEOUT, "Ada reads both of Cyd's reveals", || {
        let mut seen = reveals(&a);
        seen.sort();
        seen == ["Infra", "Ops"]
    });
    wait_until(SYNC_TIMEOUT, "Bob reads Cyd's reveal in Infra", || {
        reveals(&b) == ["Infra"]
    });
    // Bob holds Cyd's chain (that is how the Infra record reached him)
    // and can read nothing else of it.
    let of_cyd = records(&b, &["--user", "cyd@example.com"]);
    assert_eq!(of_cyd.len(), 1, "{of_cyd:?}");
    assert_eq!(of_cyd[0]["item_name"], "db");
    assert_eq!(of_cyd[0]["field"], "password");
    let v = verify(&b);
    assert_eq!(v["clean"], true, "{v}");
}

fn sql(d: &Daemon, statement: &str, args: &[&dyn rusqlite::ToSql]) -> usize {
    let db = rusqlite::Connection::open(d.data_dir().join("vault.sqlite3")).unwrap();
    db.execute(statement, args).unwrap()
}

#[test]
fn an_admin_names_every_kind_of_tampering() {
    let (mut a, mut b, c, pa) = team();
    let bob = hex::decode(device_id(&b)).unwrap();
    let cyd = hex::decode(device_id(&c)).unwrap();
    let bob_hex = device_id(&b);
    let cyd_hex = device_id(&c);
    for _ in 0..3 {
        b.ok(&["totp", "Ops/aws"], "");
        c.ok(&["totp", "Ops/aws"], "");
    }
    let top = |d: &Daemon, device: &[u8]| -> u64 {
        let db = rusqlite::Connection::open(d.data_dir().join("vault.sqlite3")).unwrap();
        db.query_row(
            "SELECT COALESCE(MAX(seq), 0) FROM audit WHERE device = ?1",
            [device],
            |r| r.get::<_, i64>(0),
        )
        .unwrap() as u64
    };
    wait_until(SYNC_TIMEOUT, "Ada holds Bob's and Cyd's chains", || {
        top(&a, &bob) > 0 && top(&a, &bob) == top(&b, &bob) && top(&a, &cyd) == top(&c, &cyd)
    });
    assert_eq!(verify(&a)["clean"], true);

    // Bob, cut off from Ada, writes on, then deletes two of those rows.
    a.stop();
    let from = top(&b, &bob);
    for _ in 0..4 {
        b.ok(&["totp", "Ops/aws"], "");
    }
    b.stop();
    let gone = sql(
        &b,
        "DELETE FROM audit WHERE device = ?1 AND seq IN (?2, ?3)",
        &[&bob, &((from + 2) as i64), &((from + 3) as i64)],
    );
    assert_eq!(gone, 2);
    b.spawn();
    b.unlock();
    a.spawn();
    a.unlock();
    wait_until(SYNC_TIMEOUT, "Ada holds Bob's later records", || {
        top(&a, &bob) == top(&b, &bob)
    });
    let v = verify(&a);
    assert_eq!(
        findings(&v, &bob_hex),
        [("gap".to_string(), from + 2)],
        "{v}"
    );
    let out = a.coffer(&["audit", "verify"], "");
    assert_eq!(out.status.code(), Some(22), "verify exits 22 on a finding");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("GAP") && text.contains("bob@example.com"),
        "{text}"
    );

    // Cyd's device rewrites its chain from a point: its last two rows are
    // dropped and it writes on from there.
    let mut c = c;
    let cyd_top = top(&c, &cyd);
    c.stop();
    sql(
        &c,
        "DELETE FROM audit WHERE device = ?1 AND seq > ?2",
        &[&cyd, &((cyd_top - 2) as i64)],
    );
    c.spawn();
    c.unlock();
    for _ in 0..3 {
        c.ok(&["totp", "Ops/aws"], "");
    }
    wait_until(SYNC_TIMEOUT, "Ada holds Cyd's rewritten records", || {
        top(&a, &cyd) > cyd_top
    });
    let v = verify(&a);
    assert!(
        findings(&v, &cyd_hex).iter().any(|(k, _)| k == "fork"),
        "{v}"
    );

    // On Ada's copy: a record's bytes edited, and a row of Cyd's chain
    // replayed as Bob's.
    a.stop();
    let db = rusqlite::Connection::open(a.data_dir().join("vault.sqlite3")).unwrap();
    let mut bytes: Vec<u8> = db
        .query_row(
            "SELECT bytes FROM audit WHERE device = ?1 AND seq = 1",
            [&bob],
            |r| r.get(0),
        )
        .unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    let edited = sql(
        &a,
        "UPDATE audit SET bytes = ?1 WHERE device = ?2 AND seq = 1",
        &[&bytes, &bob],
    );
    assert_eq!(edited, 1);
    drop(db);
    let replayed = sql(
        &a,
        "INSERT INTO audit (device, seq, hash, time, user, kind, bytes) \
         SELECT ?1, 1000, hash, time, 'bob@example.com', kind, bytes FROM audit WHERE device = ?2 AND seq = 2",
        &[&bob, &cyd],
    );
    assert_eq!(replayed, 1);
    a.spawn();
    a.unlock();
    let v = verify(&a);
    let bob_findings = findings(&v, &bob_hex);
    assert!(
        bob_findings.contains(&("bad-signature".to_string(), 1)),
        "{v}"
    );
    assert!(
        bob_findings.contains(&("bad-signature".to_string(), 1000)),
        "{v}"
    );
    let _ = (pa, PIN);
}

/// Acceptance 3: Cyd (a Folder Member of Ops) shows a TOTP and copies a
/// password, then leaves the team; Ada edits one of Ops' items after, and
/// Bob another, which reaches Ada by sync (Ada writes nothing after it).
/// `coffer audit exposure` lists exactly Ops' items (not Ada's own folder),
/// Cyd's uses of each, and which changed since her removal.
#[test]
fn a_removed_users_exposure_lists_what_they_could_read() {
    let (a, b, c, _) = team();
    a.add_login("db", "db-Secret-1", &["--folder", "Ops"]);
    a.add_login("api", "api-Secret-3", &["--folder", "Ops"]);
    a.ok(&["folder", "create", "Private"], "");
    a.add_login("vault-root", "root-Secret-2", &["--folder", "Private"]);
    for (who, d) in [("Bob", &b), ("Cyd", &c)] {
        wait_until(
            SYNC_TIMEOUT,
            &format!("{who} has Ops/db and Ops/api"),
            || {
                d.coffer(&["get", "Ops/db", "--json"], "").status.success()
                    && d.coffer(&["get", "Ops/api", "--json"], "").status.success()
            },
        );
    }
    c.ok(&["totp", "Ops/aws"], "");
    copy_password(&c, "Ops/aws");
    wait_until(SYNC_TIMEOUT, "Ada has Cyd's uses", || {
        let actions: Vec<String> = records(&a, &["--user", "cyd@example.com"])
            .iter()
            .filter_map(|r| r["action"].as_str().map(String::from))
            .collect();
        actions.iter().any(|x| x == "copy") && actions.iter().any(|x| x == "totp-show")
    });
    // Before removal: readable, not judged for changes.
    let before = a.json(&["audit", "exposure", "cyd@example.com", "--json"], "");
    assert_eq!(before["in_team"], true, "{before}");
    assert!(before["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["changed_since_removal"].is_null()));

    a.ok(&["user", "remove", "cyd@example.com"], "");
    a.ok(&["edit", "Ops/db", "--username", "rotated"], "");
    b.ok(&["edit", "Ops/api", "--username", "bob-rotated"], "");
    wait_until(SYNC_TIMEOUT, "Ada has Bob's edit of Ops/api", || {
        let out = a.coffer(&["get", "Ops/api", "--json"], "");
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("bob-rotated")
    });

    let x = a.json(&["audit", "exposure", "cyd@example.com", "--json"], "");
    assert_eq!(x["in_team"], false, "{x}");
    let items = x["items"].as_array().unwrap();
    let mut names: Vec<&str> = items
        .iter()
        .map(|i| i["item_name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["api", "aws", "db"], "{x}");
    assert!(items.iter().all(|i| i["folder_name"] == "Ops"), "{x}");
    let aws = items.iter().find(|i| i["item_name"] == "aws").unwrap();
    let db = items.iter().find(|i| i["item_name"] == "db").unwrap();
    assert_eq!(aws["uses"]["copy"], 1, "{x}");
    assert!(aws["uses"]["totp-show"].as_u64().unwrap() >= 1, "{x}");
    assert_eq!(aws["changed_since_removal"], false, "{x}");
    assert_eq!(db["uses"].as_object().unwrap().len(), 0, "{x}");
    assert_eq!(db["changed_since_removal"], true, "{x}");
    let api = items.iter().find(|i| i["item_name"] == "api").unwrap();
    assert_eq!(
        api["changed_since_removal"], true,
        "an edit synced from Bob's device counts: {x}"
    );
    let folders = x["folders"].as_array().unwrap();
    assert_eq!(folders.len(), 1, "{x}");
    assert_eq!(folders[0]["still_member"], false);
    assert_eq!(folders[0]["removal_known"], true);
    // The human form names both and the one to rotate.
    let text = a.ok(&["audit", "exposure", "cyd@example.com"], "");
    assert!(
        text.contains("Ops/aws") && text.contains("unchanged since removal"),
        "{text}"
    );
    assert!(!text.contains("vault-root"), "{text}");
    // Not an admin: refused.
    let bob = b.coffer(&["audit", "exposure", "cyd@example.com", "--json"], "");
    assert!(!bob.status.success(), "{bob:?}");
}

/// A wrong invite code tried against Ada's invite is on her chain
/// (`invite-wrong-code`), next to the invite itself; the right code's
/// failure modes are not.
#[test]
fn a_wrong_invite_code_is_recorded() {
    use coffer_daemon::net::enrol::{InviteCode, InviteSecret};
    let pa = free_port();
    let a = start_node(pa, &[]);
    init_as(&a, "Ada Admin", "ada@example.com");
    a.ok(&["team", "create", "Acme"], "");
    let b = start_node(free_port(), &[]);
    let code = str_field(
        &a.json(&["invite", "bob@example.com", "--json"], ""),
        "code",
    )
    .to_string();
    let mut wrong = InviteCode::parse(&code).unwrap();
    wrong.secret = InviteSecret::generate(&mut rand::rngs::OsRng);
    let peer = crate::sync::addr(pa);
    let err = b.fails(
        &["join", &wrong.encode(), "--peer", &peer, "--pin-stdin"],
        format!("{PIN}\n"),
        15,
    );
    assert!(err.contains("wrong invite code"), "{err}");
    let mut wrong_codes = Vec::new();
    wait_until(SYNC_TIMEOUT, "Ada's wrong-code record", || {
        wrong_codes = records(&a, &["--action", "invite-wrong-code"]);
        !wrong_codes.is_empty()
    });
    assert_eq!(wrong_codes.len(), 1, "{wrong_codes:?}");
    assert_eq!(wrong_codes[0]["user"], "ada@example.com");
    assert!(!records(&a, &["--action", "invite-created"]).is_empty());
}

/// `audit.query` with `newest` returns the newest records that match (in
/// time order), without it the oldest; `coffer audit` without `--since`
/// asks for the newest.
#[test]
fn a_query_without_since_shows_the_newest_records() {
    use coffer_ipc::methods as m;
    let a = coffer_tests::Daemon::start();
    init_as(&a, "Ada Admin", "ada@example.com");
    a.add_login("aws", "aws-Secret-77", &[]);
    a.ok(&["totp", "set", "aws"], "JBSWY3DPEHPK3PXP\n");
    for _ in 0..5 {
        a.ok(&["totp", "aws"], "");
    }
    let all = records(&a, &[]);
    assert!(all.len() >= 5, "{all:?}");
    let mut client = a.client();
    let query = |newest: bool| m::AuditQueryParams {
        limit: Some(2),
        newest,
        ..Default::default()
    };
    let newest = client.call::<m::AuditQuery>(&query(true)).unwrap();
    let oldest = client.call::<m::AuditQuery>(&query(false)).unwrap();
    let cursors = |e: &[m::AuditEntry]| e.iter().map(|x| x.cursor.clone()).collect::<Vec<_>>();
    let all_cursors: Vec<String> = all
        .iter()
        .map(|r| r["cursor"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(cursors(&newest), all_cursors[all_cursors.len() - 2..]);
    assert_eq!(cursors(&oldest), all_cursors[..2]);
    assert!(newest[0].time_ms <= newest[1].time_ms);

    // Retention: 365 days by default, settable; nothing here is old
    // enough to prune, and the chain verifies clean.
    let r = a.json(&["audit", "retention", "--json"], "");
    assert_eq!(r["days"], 365, "{r}");
    let r = a.json(&["audit", "retention", "30", "--json"], "");
    assert_eq!(r["days"], 30, "{r}");
    assert_eq!(r["pruned_rows"], 0, "{r}");
    assert_eq!(a.json(&["audit", "retention", "--json"], "")["days"], 30);
    a.fails(&["audit", "retention", "0"], "", 9);
    assert_eq!(verify(&a)["clean"], true);
}

/// `coffer get --field` and `--reveal` are recorded by the daemon in the
/// request that serves the item (one record each, named with the field as
/// asked); a field the item lacks shows nothing and records nothing; an
/// action the daemon records itself cannot be claimed through `item.get`.
#[test]
fn a_read_is_recorded_in_the_request_that_serves_it() {
    use coffer_ipc::methods as m;
    let a = coffer_tests::Daemon::start();
    init_as(&a, "Ada Admin", "ada@example.com");
    a.add_login("aws", "aws-Secret-77", &[]);
    let uses = |a: &Daemon| -> Vec<(String, String)> {
        records(a, &["--item", "aws"])
            .iter()
            .filter(|r| matches!(r["action"].as_str(), Some("reveal" | "copy")))
            .map(|r| {
                (
                    r["action"].as_str().unwrap().to_string(),
                    r["field"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    };
    assert_eq!(uses(&a), vec![]);
    assert_eq!(
        a.ok(&["get", "aws", "--field", "password"], "").trim(),
        "aws-Secret-77"
    );
    assert_eq!(uses(&a), vec![("reveal".into(), "password".into())]);
    a.ok(&["get", "aws", "--reveal"], "");
    a.ok(&["get", "aws"], "");
    assert_eq!(
        uses(&a),
        vec![
            ("reveal".into(), "password".into()),
            ("reveal".into(), String::new()),
        ]
    );
    a.fails(&["get", "aws", "--field", "pin"], "", 5);
    assert_eq!(uses(&a).len(), 2);

    let mut client = a.client();
    let bad = client.call::<m::ItemGet>(&m::ItemRef {
        item: "aws".into(),
        trash: false,
        record: Some(m::ItemUse {
            action: "export".into(),
            field: None,
        }),
    });
    assert!(bad.is_err(), "{bad:?}");
    assert_eq!(uses(&a).len(), 2);
}
