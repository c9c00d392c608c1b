//! The keyless relay (issue 16) among whole replicas: store and forward
//! between two devices never up at once, refusal of forged envelopes and of
//! a Folder Member's write, removal of the relay and of a folder.

use coffer_crdt::folder::ItemType;
use coffer_crdt::ops::{Principal, Role};
use coffer_crdt::replica::relay::{Relay, RelayLimits};
use coffer_crdt::replica::{
    Effect, NewItemSpec, Persist, ShareChange, SpaceKind, StoredSpace, SyncMessage, SyncWire,
};
use coffer_crdt::ItemId;
use coffer_crdt::{DeviceId, Outcome, SpaceId};
use std::collections::BTreeMap;

use crate::harness::{doc_as, force_content_as, rng};
use crate::net::{transport, Node, Wires, World};

const RELAY: [u8; 32] = [0xAB; 32];

/// What the relay persisted, applied as its store would.
#[derive(Default)]
struct RelayStore {
    spaces: BTreeMap<SpaceId, (SpaceKind, Option<SpaceId>, Vec<coffer_crdt::Envelope>)>,
}

impl RelayStore {
    fn drain(&mut self, relay: &mut Relay) {
        while let Some(e) = relay.poll_effect() {
            if let Effect::Persist(p) = e {
                match p {
                    Persist::Envelopes {
                        space,
                        kind,
                        team,
                        envelopes,
                    } => {
                        let entry = self.spaces.entry(space).or_insert((kind, team, Vec::new()));
                        entry.2.extend(envelopes);
                    }
                    Persist::DropSpace { space } => {
                        self.spaces.remove(&space);
                    }
                    other => panic!("a relay persisted {other:?}"),
                }
            }
        }
    }

    fn stored(&self) -> Vec<StoredSpace> {
        self.spaces
            .iter()
            .map(|(id, (kind, team, envs))| StoredSpace {
                id: *id,
                kind: *kind,
                team: *team,
                envelopes: envs.clone(),
                snapshot: None,
            })
            .collect()
    }
}

fn handle(node: &Node) -> DeviceId {
    DeviceId(transport(&node.keys))
}

/// Connects a node and the relay, runs the protocol until quiet, and
/// disconnects them. Returns the relay's error for the node, if any.
fn session(
    w: &mut World,
    i: usize,
    relay: &mut Relay,
    store: &mut RelayStore,
    inject: Option<SyncMessage>,
) -> Option<coffer_crdt::replica::ProtocolViolation> {
    let relay_id = DeviceId(RELAY);
    let h = handle(&w.nodes[i]);
    // Both ends on the wire the world says (`/coffer/sync/2` unless set).
    let wire = match w.wires {
        Wires::All(wire) => wire,
        Wires::Mixed(_) => SyncWire::V2,
    };
    w.nodes[i].replica.peer_connected_on(relay_id, wire);
    relay.peer_connected_on(h, wire);
    let mut inject = inject;
    let mut error = None;
    for _ in 0..10_000 {
        let mut moved = false;
        let from_node = w.nodes[i].replica.poll_transmit(&relay_id);
        w.nodes[i].drain();
        let from_node = from_node.or_else(|| inject.take());
        if let Some(msg) = from_node {
            moved = true;
            if std::env::var("COFFER_SIM_TRACE").is_ok() {
                eprintln!("node {i} -> relay: {msg:?}");
            }
            if let Err(e) = relay.handle_message(h, msg, &mut w.rng) {
                error = Some(e);
                break;
            }
            store.drain(relay);
        }
        if let Some(msg) = relay.poll_transmit(&h) {
            moved = true;
            if std::env::var("COFFER_SIM_TRACE").is_ok() {
                eprintln!("relay -> node {i}: {msg:?}");
            }
            store.drain(relay);
            w.nodes[i]
                .replica
                .handle_message(relay_id, msg, &mut w.rng)
                .expect("the relay keeps the protocol");
            w.nodes[i].drain();
        }
        if !moved {
            break;
        }
    }
    store.drain(relay);
    w.nodes[i].replica.peer_disconnected(&relay_id);
    relay.peer_disconnected(&h);
    store.drain(relay);
    error
}

fn add(w: &mut World, i: usize, folder: &str, name: &str) {
    let spec = NewItemSpec {
        folder: Some(folder.into()),
        item_type: ItemType::Login,
        name: name.into(),
        fields: [("password".to_string(), format!("pw-{name}"))].into(),
        urls: vec![],
    };
    w.nodes[i].replica.add_item(spec, 10, &mut w.rng).unwrap();
    w.nodes[i].drain();
}

/// Ada (admin) and Bob share "Ops" (Bob with `role`); the team adds the
/// relay; nobody is connected to anybody afterwards.
fn team(role: Role) -> (World, SpaceId) {
    let mut w = World::new(&["ada", "bob"], rng(16));
    w.found_team(0, 0, &[]);
    w.admit(0, 1, &[]);
    w.nodes[0]
        .replica
        .create_folder("Ops", 5, &mut w.rng)
        .unwrap();
    let bob = Principal::User(w.nodes[1].user());
    w.nodes[0]
        .replica
        .folder_share("Ops", bob, ShareChange::Share(role), &mut w.rng)
        .unwrap();
    w.nodes[0].drain();
    w.settle();
    // Bob is not an admin: he cannot add a relay.
    assert!(w.nodes[1]
        .replica
        .add_relay(RELAY, vec!["/ip4/127.0.0.1/tcp/1".into()], &mut w.rng)
        .is_err());
    w.nodes[0]
        .replica
        .add_relay(RELAY, vec!["/ip4/127.0.0.1/tcp/1".into()], &mut w.rng)
        .unwrap();
    w.nodes[0].drain();
    w.settle();
    assert!(w.nodes[1].replica.relays().contains_key(&DeviceId(RELAY)));
    w.drop_node(0);
    w.drop_node(1);
    let ops = w.nodes[0].replica.resolve_folder(Some("Ops")).unwrap();
    (w, ops)
}

/// The relay, its operator having accepted the team of `w`'s node 0.
fn relay_for(w: &World, stored: Vec<coffer_crdt::replica::StoredSpace>) -> Relay {
    let mut relay = Relay::load(RELAY, stored, RelayLimits::default());
    relay.accept_team(w.nodes[0].replica.team_id().expect("a team"));
    relay
}

#[test]
fn an_edit_reaches_a_device_that_was_never_up_with_its_author() {
    edit_through_the_relay(SyncWire::V2);
}

/// The same over `/coffer/sync/3` (issue 18): the relay greets a device
/// it does not know yet with an empty `Hello`, binds it, then its team
/// replica speaks digests; a device in sync with it exchanges no heads.
#[test]
fn an_edit_reaches_a_device_through_the_relay_over_v3() {
    let (mut w, _) = edit_through_the_relay(SyncWire::V3);
    let mut relay = relay_for(&w, Vec::new());
    let mut store = RelayStore::default();
    // Bob brings everything to a relay that holds nothing yet, then a
    // second session finds the two in sync: hellos of one digest only.
    assert_eq!(session(&mut w, 1, &mut relay, &mut store, None), None);
    let relay_id = DeviceId(RELAY);
    let h = handle(&w.nodes[1]);
    w.nodes[1].replica.peer_connected_on(relay_id, SyncWire::V3);
    relay.peer_connected_on(h, SyncWire::V3);
    let mut seen = Vec::new();
    for _ in 0..1000 {
        let a = w.nodes[1].replica.poll_transmit(&relay_id);
        w.nodes[1].drain();
        if let Some(m) = a.clone() {
            seen.push(m.clone());
            relay.handle_message(h, m, &mut w.rng).unwrap();
            store.drain(&mut relay);
        }
        let b = relay.poll_transmit(&h);
        store.drain(&mut relay);
        if let Some(m) = b.clone() {
            seen.push(m.clone());
            w.nodes[1]
                .replica
                .handle_message(relay_id, m, &mut w.rng)
                .unwrap();
            w.nodes[1].drain();
        }
        if a.is_none() && b.is_none() {
            break;
        }
    }
    assert!(
        seen.iter().all(|m| matches!(
            m,
            SyncMessage::HelloDigest { .. } | SyncMessage::Caught { .. }
        )),
        "{seen:?}"
    );
}

fn edit_through_the_relay(wire: SyncWire) -> (World, SpaceId) {
    let (mut w, ops) = team(Role::Editor);
    w.wires = Wires::All(wire);
    w.cut.insert((0, 1));
    w.cut.insert((1, 0));
    let mut relay = relay_for(&w, Vec::new());
    let mut store = RelayStore::default();
    add(&mut w, 0, "Ops", "written-while-bob-is-off");
    assert_eq!(session(&mut w, 0, &mut relay, &mut store, None), None);
    let status = relay.status();
    assert_eq!(status.teams.len(), 1, "{status:?}");
    assert_eq!(status.teams[0].spaces, 2, "the roster and Ops: {status:?}");
    // The relay restarts from its store, then Bob comes up.
    let mut relay = relay_for(&w, store.stored());
    store.drain(&mut relay);
    assert_eq!(session(&mut w, 1, &mut relay, &mut store, None), None);
    assert_eq!(w.nodes[1].names("Ops"), ["written-while-bob-is-off"]);
    let d0 = w.nodes[0].digest(&ops);
    assert_eq!(d0, w.nodes[1].digest(&ops));
    // The relay's replica of the team never opened anything.
    let team = w.nodes[0].replica.team_id().unwrap();
    assert!(relay.team(&team).unwrap().is_locked());
    assert!(relay
        .team(&team)
        .unwrap()
        .items(Some("Ops"), false)
        .is_err());
    (w, ops)
}

#[test]
fn forged_envelopes_and_a_folder_members_write_are_refused_by_the_relay() {
    let (mut w, ops) = team(Role::Member);
    let mut relay = relay_for(&w, Vec::new());
    let mut store = RelayStore::default();
    add(&mut w, 0, "Ops", "old");
    assert_eq!(session(&mut w, 0, &mut relay, &mut store, None), None);
    // Bob, a Folder Member, writes anyway (his client bypassed) and
    // pushes it to the relay.
    let keys = w.nodes[1].keys.clone();
    let mut forger = w.nodes[1].replica.space(&ops).unwrap().clone();
    let mut doc = doc_as(&forger, &keys, 0);
    let change = doc
        .add_item(
            ItemId([3; 16]),
            ItemType::Note,
            "member-write",
            &Default::default(),
            30,
        )
        .unwrap();
    let header = forger.change_header(&keys, &change).unwrap();
    let key = forger.folder_key(&keys).unwrap();
    let epoch = forger.current_epoch().unwrap();
    let env = force_content_as(&mut forger, &keys, &key, epoch, &change, header, &mut w.rng);
    let push = SyncMessage::Envelopes {
        space: ops,
        envelopes: vec![env.to_bytes()],
    };
    assert_eq!(session(&mut w, 1, &mut relay, &mut store, Some(push)), None);
    let team = w.nodes[0].replica.team_id().unwrap();
    let held = relay.team(&team).unwrap().space(&ops).unwrap();
    assert!(
        matches!(held.outcome_of(&env.id()), Some(Outcome::Quarantined(_))),
        "{:?}",
        held.outcome_of(&env.id())
    );
    assert_eq!(relay.status().teams[0].quarantined, 1);
    // A forged envelope (a byte of its signed body changed: a new id under
    // a signature that does not cover it) ends the session.
    let mut bytes = env.to_bytes();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    let forged = SyncMessage::Envelopes {
        space: ops,
        envelopes: vec![bytes],
    };
    let err = session(&mut w, 1, &mut relay, &mut store, Some(forged));
    assert!(err.as_ref().is_some_and(|e| e.is_violation()), "{err:?}");
    assert_eq!(relay.status().refused_sessions, 1);
    // Ada hears of the write from the relay, and it takes no effect.
    assert_eq!(session(&mut w, 0, &mut relay, &mut store, None), None);
    assert_eq!(w.nodes[0].names("Ops"), ["old"]);
}

#[test]
fn a_stranger_with_a_roster_that_does_not_name_the_relay_gets_nothing() {
    let mut w = World::new(&["eve"], rng(17));
    w.found_team(0, 0, &[]);
    w.nodes[0]
        .replica
        .create_folder("Loot", 5, &mut w.rng)
        .unwrap();
    w.nodes[0].drain();
    let mut relay = Relay::load(RELAY, Vec::new(), RelayLimits::default());
    let mut store = RelayStore::default();
    // Eve's replica does not sync with a relay her team never added: she
    // pushes her roster by hand.
    let team = w.nodes[0].replica.team_id().unwrap();
    let roster: Vec<Vec<u8>> = w.nodes[0]
        .replica
        .space(&team)
        .unwrap()
        .held()
        .map(|e| e.to_bytes())
        .collect();
    let h = handle(&w.nodes[0]);
    relay.peer_connected(h);
    let hello = SyncMessage::Hello {
        version: coffer_crdt::replica::SYNC_VERSION,
        spaces: vec![],
    };
    relay.handle_message(h, hello, &mut w.rng).unwrap();
    relay
        .handle_message(
            h,
            SyncMessage::Envelopes {
                space: team,
                envelopes: roster,
            },
            &mut w.rng,
        )
        .unwrap();
    store.drain(&mut relay);
    assert!(store.spaces.is_empty());
    assert_eq!(relay.status().teams.len(), 0);
}

/// A team whose roster names the relay, but that its operator never
/// accepted (a stranger's own team, made to store things on it), is not
/// taken: nothing stored, the session refused.
#[test]
fn a_team_its_operator_did_not_accept_is_refused_though_its_roster_names_the_relay() {
    let (mut w, _) = team(Role::Editor);
    let mut relay = Relay::load(RELAY, Vec::new(), RelayLimits::default());
    let mut store = RelayStore::default();
    add(&mut w, 0, "Ops", "loot");
    let err = session(&mut w, 0, &mut relay, &mut store, None);
    assert!(err.is_some(), "the session is refused");
    assert!(store.spaces.is_empty());
    assert_eq!(relay.status().teams.len(), 0);
    // Accepted, the same team is taken.
    relay.accept_team(w.nodes[0].replica.team_id().unwrap());
    assert_eq!(session(&mut w, 0, &mut relay, &mut store, None), None);
    assert_eq!(relay.status().teams.len(), 1);
}

#[test]
fn a_removed_relay_drops_the_team_and_a_deleted_folder_is_dropped() {
    let (mut w, ops) = team(Role::Editor);
    let mut relay = relay_for(&w, Vec::new());
    let mut store = RelayStore::default();
    add(&mut w, 0, "Ops", "x");
    w.nodes[0]
        .replica
        .create_folder("Tmp", 6, &mut w.rng)
        .unwrap();
    w.nodes[0].drain();
    session(&mut w, 0, &mut relay, &mut store, None);
    assert_eq!(store.spaces.len(), 3, "roster, Ops, Tmp");
    let tmp = w.nodes[0].replica.resolve_folder(Some("Tmp")).unwrap();
    w.nodes[0]
        .replica
        .remove_folder("Tmp", true, false)
        .unwrap();
    w.nodes[0].drain();
    session(&mut w, 0, &mut relay, &mut store, None);
    assert!(
        !store.spaces.contains_key(&tmp),
        "the deleted folder is dropped"
    );
    assert!(store.spaces.contains_key(&ops));
    // The admin removes the relay: she shares nothing with it any more...
    w.nodes[0].replica.remove_relay(RELAY, &mut w.rng).unwrap();
    w.nodes[0].drain();
    assert!(w.nodes[0].replica.shared_with(&DeviceId(RELAY)).is_empty());
    assert!(w.nodes[0].replica.relays().is_empty());
    // ...but tells it that it is out; it drops every envelope of the team.
    add(&mut w, 0, "Ops", "after-removal");
    let err = session(&mut w, 0, &mut relay, &mut store, None);
    assert!(err.is_none_or(|e| !e.is_violation()));
    assert!(store.spaces.is_empty(), "{:?}", store.spaces.keys());
    assert!(relay.status().teams.is_empty());
}

/// Strangers who connect and never show a roster fill the pending table;
/// the oldest gives way to the next peer, so a team device that connects
/// after them is still taken, and the stranger dropped is refused at its
/// next message.
#[test]
fn silent_strangers_give_way_to_a_team_device_when_the_pending_table_is_full() {
    let (mut w, _) = team(Role::Editor);
    let limits = RelayLimits {
        max_pending: 2,
        ..RelayLimits::default()
    };
    let mut relay = Relay::load(RELAY, Vec::new(), limits);
    relay.accept_team(w.nodes[0].replica.team_id().unwrap());
    let mut store = RelayStore::default();
    let strangers = [DeviceId([0xe1; 32]), DeviceId([0xe2; 32])];
    for s in strangers {
        relay.peer_connected(s);
    }
    assert_eq!(relay.status().pending, 2);
    add(&mut w, 0, "Ops", "kept");
    assert_eq!(session(&mut w, 0, &mut relay, &mut store, None), None);
    assert_eq!(relay.status().teams.len(), 1, "the team device was taken");
    let hello = || SyncMessage::Hello {
        version: coffer_crdt::replica::SYNC_VERSION,
        spaces: vec![],
    };
    // The first stranger gave way; the second still waits.
    assert_eq!(
        relay.handle_message(strangers[0], hello(), &mut w.rng),
        Err(coffer_crdt::replica::ProtocolViolation::NotAllowed)
    );
    assert_eq!(
        relay.handle_message(strangers[1], hello(), &mut w.rng),
        Ok(())
    );
    // Bob, through the relay alone, gets what Ada left there.
    assert_eq!(session(&mut w, 1, &mut relay, &mut store, None), None);
    assert_eq!(w.nodes[1].names("Ops"), ["kept"]);
}

/// The byte count a relay checks on every batch is kept as envelopes
/// arrive: it equals a walk of what each space holds of its own (a folder
/// of a team also holds the roster's envelopes, not counted twice).
#[test]
fn a_spaces_own_bytes_are_what_it_holds_of_itself() {
    let (mut w, ops) = team(Role::Editor);
    add(&mut w, 0, "Ops", "one");
    add(&mut w, 0, "Ops", "two");
    let r = &w.nodes[0].replica;
    let team = r.team_id().unwrap();
    for id in [team, ops] {
        let s = r.space(&id).unwrap();
        let walked: u64 = s
            .held()
            .filter(|e| e.space() == id)
            .map(|e| e.wire_len() as u64)
            .sum();
        assert!(walked > 0);
        assert_eq!(s.own_bytes(), walked);
    }
    assert!(r.space(&ops).unwrap().held().any(|e| e.space() == team));
}

/// Its operator takes an accepted team back: everything held of it is
/// dropped from the store, and its devices are refused as strangers are
/// (the same roster no longer binds it) until accepted again.
#[test]
fn a_team_its_operator_forgets_is_dropped_and_refused() {
    let (mut w, _) = team(Role::Editor);
    let mut relay = relay_for(&w, Vec::new());
    let mut store = RelayStore::default();
    let team = w.nodes[0].replica.team_id().unwrap();
    add(&mut w, 0, "Ops", "held");
    assert_eq!(session(&mut w, 0, &mut relay, &mut store, None), None);
    assert_eq!(relay.status().teams.len(), 1);
    assert!(!store.spaces.is_empty());

    assert!(relay.forget_team(team));
    store.drain(&mut relay);
    assert!(store.spaces.is_empty(), "every space of the team dropped");
    assert!(relay.status().teams.is_empty());
    assert!(relay.accepted_teams().is_empty());
    assert!(!relay.forget_team(team), "nothing left to forget");
    // Ada comes back: refused, nothing stored.
    assert!(session(&mut w, 0, &mut relay, &mut store, None).is_some());
    assert!(store.spaces.is_empty());
    // And after a restart from what was stored, nothing of it is there.
    let reloaded = Relay::load(RELAY, store.stored(), RelayLimits::default());
    assert!(reloaded.status().teams.is_empty());
}

/// What its operator accepted decides at start: a team the store still
/// holds but that is no longer accepted (a `forget` cut short between its
/// two writes) is dropped when the accepted list is set.
#[test]
fn a_held_team_no_longer_accepted_is_dropped_at_start() {
    let (mut w, _) = team(Role::Editor);
    let mut relay = relay_for(&w, Vec::new());
    let mut store = RelayStore::default();
    add(&mut w, 0, "Ops", "held");
    assert_eq!(session(&mut w, 0, &mut relay, &mut store, None), None);
    assert!(!store.spaces.is_empty());
    let mut restarted = Relay::load(RELAY, store.stored(), RelayLimits::default());
    assert_eq!(restarted.status().teams.len(), 1);
    restarted.set_accepted_teams(Default::default());
    store.drain(&mut restarted);
    assert!(restarted.status().teams.is_empty());
    assert!(store.spaces.is_empty(), "the store drops it too");
}
