use super::*;
use rand_chacha::rand_core::SeedableRng;

fn rng() -> rand_chacha::ChaCha20Rng {
    rand_chacha::ChaCha20Rng::seed_from_u64(1)
}

#[test]
fn a_stranger_is_greeted_with_an_empty_hello_and_nothing_else() {
    let mut relay = Relay::load([7; 32], Vec::new(), RelayLimits::default());
    let stranger = DeviceId([9; 32]);
    relay.peer_connected(stranger);
    assert!(matches!(
        relay.poll_transmit(&stranger),
        Some(SyncMessage::Hello { spaces, .. }) if spaces.is_empty()
    ));
    assert_eq!(relay.poll_transmit(&stranger), None);
    // What it sends before a roster that names the relay counts for nothing.
    let mut rng = rng();
    assert!(relay
        .handle_message(stranger, SyncMessage::Summary { spaces: vec![] }, &mut rng)
        .is_ok());
    assert_eq!(relay.status().teams.len(), 0);
    assert_eq!(relay.status().pending, 1);
}

#[test]
fn pending_peers_are_bounded() {
    let limits = RelayLimits {
        max_pending: 2,
        ..RelayLimits::default()
    };
    let mut relay = Relay::load([7; 32], Vec::new(), limits);
    for i in 0..5u8 {
        relay.peer_connected(DeviceId([i; 32]));
    }
    assert_eq!(relay.status().pending, 2);
    // The newest two are kept: each newcomer pushed the oldest out.
    let summary = || SyncMessage::Summary { spaces: vec![] };
    for i in 0..3u8 {
        assert_eq!(
            relay.handle_message(DeviceId([i; 32]), summary(), &mut rng()),
            Err(ProtocolViolation::NotAllowed)
        );
    }
    for i in 3..5u8 {
        assert_eq!(
            relay.handle_message(DeviceId([i; 32]), summary(), &mut rng()),
            Ok(())
        );
    }
}

#[test]
fn a_silent_pending_peer_gives_way_before_an_older_one_that_spoke() {
    let limits = RelayLimits {
        max_pending: 2,
        ..RelayLimits::default()
    };
    let mut relay = Relay::load([7; 32], Vec::new(), limits);
    let (talker, silent, newcomer) = (DeviceId([1; 32]), DeviceId([2; 32]), DeviceId([3; 32]));
    let hello = || SyncMessage::Hello {
        version: SYNC_VERSION,
        spaces: vec![],
    };
    relay.peer_connected(talker);
    assert_eq!(relay.handle_message(talker, hello(), &mut rng()), Ok(()));
    relay.peer_connected(silent);
    relay.peer_connected(newcomer);
    assert_eq!(relay.status().pending, 2);
    assert_eq!(
        relay.handle_message(silent, hello(), &mut rng()),
        Err(ProtocolViolation::NotAllowed)
    );
    let summary = || SyncMessage::Summary { spaces: vec![] };
    assert_eq!(relay.handle_message(talker, summary(), &mut rng()), Ok(()));
    assert_eq!(relay.handle_message(newcomer, hello(), &mut rng()), Ok(()));
}
