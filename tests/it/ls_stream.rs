//! `coffer ls` streams (issue 18): `item.list` with `stream` sends the
//! listing as several `items` notifications before its reply, and what the
//! CLI prints from them is byte for byte what the whole listing printed.
//! (How fast the first item comes is `bench/scale_bench.sh`'s, not a test's.)

use coffer_ipc::methods::{self as m, ItemsChunk};
use coffer_tests::{short_tempdir, Daemon};
use serde_json::json;

/// A Bitwarden export of `n` logins over folders whose names sort apart
/// from their creation order and differ in case, with repeated and
/// mixed-case item names.
fn export(n: usize) -> String {
    let folders = ["beta", "Alpha", "ops", "Zulu", "émile"];
    let items: Vec<_> = (0..n)
        .map(|i| {
            let name = match i % 4 {
                0 => format!("Service {:04}", n - i),
                1 => format!("service {:04}", i / 3),
                2 => "Shared".to_string(),
                _ => format!("ünïcode {i}"),
            };
            json!({
                "id": format!("00000000-0000-0000-0000-{i:012}"),
                "folderId": (i % 6 < 5).then(|| format!("f{}", i % 6)),
                "type": 1,
                "name": name,
                "favorite": false,
                "login": {
                    "uris": if i % 3 == 0 { json!([]) } else { json!([{"uri": format!("https://s{i}.example")}]) },
                    "username": (i % 2 == 0).then(|| format!("user{i}")),
                    "password": format!("pw-{i}"),
                    "totp": (i % 10 == 0).then_some("JBSWY3DPEHPK3PXP"),
                },
            })
        })
        .collect();
    let folders: Vec<_> = folders
        .iter()
        .enumerate()
        .map(|(i, name)| json!({"id": format!("f{i}"), "name": name}))
        .collect();
    json!({"encrypted": false, "folders": folders, "items": items}).to_string()
}

#[test]
fn issue_18_a_streamed_listing_comes_in_parts_and_prints_as_the_whole_did() {
    let d = Daemon::start();
    d.init();
    let tmp = short_tempdir();
    let path = tmp.path().join("export.json");
    std::fs::write(&path, export(1400)).expect("write the export");
    d.ok(
        &[
            "import",
            "--format",
            "bitwarden-json",
            path.to_str().expect("UTF-8 path"),
        ],
        "",
    );
    let cli = d.cli();
    let mut client = cli.client();
    let whole = client
        .call::<m::ItemList>(&m::ItemListParams::default())
        .expect("item.list");
    assert_eq!(whole.len(), 1400);

    let mut parts: Vec<ItemsChunk> = Vec::new();
    client
        .list_streamed(&m::ItemListParams::default(), |part| {
            parts.push(part);
            Ok(())
        })
        .expect("streamed item.list");
    assert!(parts.len() >= 3, "{} parts", parts.len());
    // The first items, then the head (the table's widths), then the rest.
    let heads: Vec<usize> = (0..parts.len())
        .filter(|i| parts[*i].head.is_some())
        .collect();
    assert!(
        heads == [0] || heads == [1],
        "the head came in parts {heads:?}"
    );
    assert_eq!(parts[heads[0]].head.map(|h| h.total), Some(1400));
    assert!(!parts[0].items.is_empty());
    assert!(
        parts[0].items.len() < parts[2].items.len(),
        "the first part is small"
    );
    let streamed: Vec<m::ItemSummary> = parts.into_iter().flat_map(|p| p.items).collect();
    assert_eq!(streamed, whole);

    // The CLI's text is the whole listing's: `--json` as `to_string_pretty`
    // of the array printed it, the table one row per item in that order.
    let printed = d.ok(&["ls", "--json"], "");
    let expected = serde_json::to_string_pretty(&whole).expect("serialises") + "\n";
    assert!(
        printed == expected,
        "ls --json differs from the whole listing's JSON"
    );
    let table = d.ok(&["ls"], "");
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 1401);
    assert!(lines[0].starts_with("ID "), "{}", lines[0]);
    for (line, item) in lines[1..].iter().zip(&whole) {
        assert!(
            line.starts_with(&item.id[..8]),
            "{line} is not {}",
            item.name
        );
    }

    // One folder, the trash (empty) and a folder that does not exist.
    let zulu = d.ok(&["ls", "--folder", "Zulu", "--json"], "");
    let zulu_whole = client
        .call::<m::ItemList>(&m::ItemListParams {
            folder: Some("Zulu".into()),
            ..Default::default()
        })
        .expect("one folder");
    assert!(!zulu_whole.is_empty());
    assert_eq!(
        zulu,
        serde_json::to_string_pretty(&zulu_whole).expect("serialises") + "\n"
    );
    assert_eq!(d.ok(&["ls", "--trash", "--json"], ""), "[]\n");
    assert_eq!(d.ok(&["ls", "--trash"], ""), "(no items)\n");
    let err = d.fails(&["ls", "--folder", "Nope"], "", 5);
    assert!(err.contains("Nope"), "{err}");

    // Locked: the error comes before any part, nothing on stdout.
    d.ok(&["lock"], "");
    let out = d.coffer(&["ls", "--json"], "");
    assert_eq!(out.status.code(), Some(3));
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
