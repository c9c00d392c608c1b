//! What the browser extension may have (issue 15): the replica decides
//! which logins a page sees and whether one may be filled into it; a
//! Folder Member's logins fill like anyone's.

use coffer_crdt::folder::ItemType;
use coffer_crdt::ops::Role;
use coffer_crdt::replica::{NewItemSpec, SavedLogin};
use coffer_crdt::ReplicaError;

use crate::harness::rng;
use crate::net::World;

fn login(w: &mut World, i: usize, folder: &str, name: &str, urls: &[&str]) -> String {
    let spec = NewItemSpec {
        folder: Some(folder.into()),
        item_type: ItemType::Login,
        name: name.into(),
        fields: [
            ("username".to_string(), format!("{name}-user")),
            ("password".to_string(), format!("pw-{name}")),
        ]
        .into(),
        urls: urls.iter().map(|u| u.to_string()).collect(),
    };
    let (_, id) = w.nodes[i]
        .replica
        .add_item(spec, 10, &mut w.rng)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    w.nodes[i].drain();
    id.to_hex()
}

/// Ada (admin) shares Ops with Bob as a Folder Member.
fn team() -> World {
    let mut w = World::new(&["ada", "bob"], rng(77));
    w.found_team(0, 0, &[]);
    w.admit(0, 1, &[]);
    w.nodes[0]
        .replica
        .create_folder("Ops", 5, &mut w.rng)
        .unwrap();
    w.share(0, "Ops", 1, Role::Member);
    w
}

#[test]
fn a_folder_members_login_fills_on_its_site_only() {
    let mut w = team();
    let bank = login(&mut w, 0, "Ops", "Bank", &["https://www.bank.com/login"]);
    login(&mut w, 0, "Ops", "Mail", &["https://mail.example.org"]);
    w.settle();
    let bob = &w.nodes[1].replica;

    let found = bob.logins_for_origin("https://login.bank.com").unwrap();
    let names: Vec<&str> = found.iter().map(|(_, i)| i.name.as_str()).collect();
    assert_eq!(names, ["Bank"]);

    let (_, item) = bob.login_for_origin("https://bank.com", &bank).unwrap();
    assert_eq!(item.fields["password"], "pw-Bank");

    // The same item for another page: refused, whoever asks.
    for origin in [
        "http://bank.com",
        "https://bank.com.evil.net",
        "https://bankk.com",
        "https://bank.com:8443",
    ] {
        assert!(
            matches!(
                bob.login_for_origin(origin, &bank),
                Err(ReplicaError::NotForThisOrigin { .. })
            ),
            "{origin}"
        );
        assert!(
            bob.logins_for_origin(origin).unwrap().is_empty(),
            "{origin}"
        );
    }
    assert!(matches!(
        bob.login_for_origin("file:///x", &bank),
        Err(ReplicaError::Origin(_))
    ));
    // Not an id: nothing (names and prefixes are not accepted here).
    assert!(matches!(
        bob.login_for_origin("https://bank.com", "Bank"),
        Err(ReplicaError::NoSuchItem { .. })
    ));
    assert!(matches!(
        bob.login_for_origin("https://bank.com", &bank[..8]),
        Err(ReplicaError::NoSuchItem { .. })
    ));
}

#[test]
fn a_saved_login_is_bound_to_the_pages_origin() {
    let mut w = team();
    let (_, id) = w.nodes[0]
        .replica
        .save_login(
            SavedLogin {
                origin: "https://shop.example.co.uk/checkout?x=1".into(),
                name: String::new(),
                username: "ada".into(),
                password: "s3cret".into(),
            },
            20,
            &mut w.rng,
        )
        .unwrap();
    w.nodes[0].drain();
    let r = &mut w.nodes[0].replica;
    let (_, item) = r
        .login_for_origin("https://www.example.co.uk", &id.to_hex())
        .unwrap();
    assert_eq!(item.name, "shop.example.co.uk");
    assert_eq!(item.urls, ["https://shop.example.co.uk"]);
    assert_eq!(item.fields["username"], "ada");
    let refused = r.save_login(
        SavedLogin {
            origin: "chrome-extension://abc/".into(),
            name: "x".into(),
            username: "u".into(),
            password: "p".into(),
        },
        21,
        &mut w.rng,
    );
    assert!(matches!(refused, Err(ReplicaError::Origin(_))));
}

#[test]
fn a_folder_member_cannot_save_into_a_shared_folder_but_into_personal() {
    let mut w = team();
    w.settle();
    // Bob's Personal folder takes it; he is only a Member of Ops.
    let saved = w.nodes[1].replica.save_login(
        SavedLogin {
            origin: "https://bank.com".into(),
            name: "Mine".into(),
            username: "bob".into(),
            password: "pw".into(),
        },
        30,
        &mut w.rng,
    );
    let (folder, _) = saved.unwrap();
    assert_eq!(w.nodes[1].replica.folder_name(&folder), "Personal");
}
