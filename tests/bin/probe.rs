//! `coffer-probe`: a foreign or misbehaving sync peer for the integration
//! tests (never shipped). It speaks libp2p with Coffer's Noise prologue and
//! protocol name, then does one thing wrong and reports what the daemon did.
//!
//! Usage: `coffer-probe LABEL MODE [ADDR] [FOLDER_ID]`
//! - `key`: print this probe's pairing key (the device is derived from LABEL);
//! - `garbage`: send a frame that is not a message;
//! - `oversize`: announce a frame over the limit;
//! - `push`: send a valid Hello and an envelope it signed for FOLDER_ID.
//!
//! Prints one JSON object: `connected`, `stream_opened`, `received` (message
//! names the daemon sent), `error` (the daemon's error code, if any) and
//! `closed` (whether the daemon closed the connection within 5 s).

use std::time::Duration;

use coffer_crdt::envelope::ENVELOPE_VERSION;
use coffer_crdt::{DeviceKeys, Envelope, EnvelopeBody, Kind, SpaceId};
use coffer_daemon::net::protocol::{
    read_message, write_message, Message, NOISE_PROLOGUE, PROTOCOL_NAME, PROTOCOL_VERSION,
};
use futures::{AsyncWriteExt, StreamExt};
use libp2p::swarm::SwarmEvent;
use libp2p::{noise, tcp, yamux, Multiaddr, StreamProtocol};
use serde_json::json;

fn keys_for(label: &str) -> DeviceKeys {
    let mut seed = [0u8; 64];
    blake3::Hasher::new()
        .update(b"coffer-probe\0")
        .update(label.as_bytes())
        .finalize_xof()
        .fill(&mut seed);
    DeviceKeys::from_secret_bytes(&seed).expect("64 bytes make device keys")
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (label, mode) = match (args.first(), args.get(1)) {
        (Some(l), Some(m)) => (l.clone(), m.clone()),
        _ => {
            eprintln!("usage: coffer-probe LABEL key|garbage|oversize|push [ADDR] [FOLDER_ID]");
            std::process::exit(2);
        }
    };
    let keys = keys_for(&label);
    if mode == "key" {
        // The probe connects with its signing key as transport key too.
        let key = format!(
            "coffer2:{}:{}:{}",
            keys.device_id().to_hex(),
            hex::encode(keys.exchange_public()),
            keys.device_id().to_hex()
        );
        println!(
            "{}",
            json!({ "pairing_key": key, "device_id": keys.device_id().to_hex() })
        );
        return;
    }
    let addr: Multiaddr = args
        .get(2)
        .and_then(|a| a.parse().ok())
        .expect("ADDR must be a multiaddr");
    let folder = args.get(3).and_then(|f| SpaceId::from_hex(f));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let report = rt.block_on(probe(keys, &mode, addr, folder));
    println!("{report}");
}

async fn probe(
    keys: DeviceKeys,
    mode: &str,
    addr: Multiaddr,
    folder: Option<SpaceId>,
) -> serde_json::Value {
    let mut seed = [0u8; 32];
    seed.copy_from_slice(&keys.to_secret_bytes()[..32]);
    let id = libp2p::identity::Keypair::ed25519_from_bytes(seed).expect("an Ed25519 seed");
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(id)
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            |k: &libp2p::identity::Keypair| {
                noise::Config::new(k).map(|c| c.with_prologue(NOISE_PROLOGUE.to_vec()))
            },
            yamux::Config::default,
        )
        .expect("tcp transport")
        .with_behaviour(|_| libp2p_stream::Behaviour::new())
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(30)))
        .build();
    let mut control = swarm.behaviour().new_control();
    let proto = StreamProtocol::new(PROTOCOL_NAME);
    let mut incoming = control.accept(proto.clone()).expect("accept once");
    swarm.dial(addr).expect("dial");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut connected = None;
    let mut closed = false;
    while connected.is_none() && tokio::time::Instant::now() < deadline {
        tokio::select! {
            ev = swarm.select_next_some() => match ev {
                SwarmEvent::ConnectionEstablished { peer_id, .. } => connected = Some(peer_id),
                SwarmEvent::OutgoingConnectionError { .. } => break,
                _ => {}
            },
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    let Some(peer) = connected else {
        return json!({ "connected": false, "stream_opened": false, "received": [], "error": null, "closed": true });
    };
    // Drive the swarm in the background from here on, noting a close.
    let (closed_tx, mut closed_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        loop {
            if let SwarmEvent::ConnectionClosed {
                num_established: 0, ..
            } = swarm.select_next_some().await
            {
                let _ = closed_tx.send(true);
            }
        }
    });
    let opened =
        tokio::time::timeout(Duration::from_secs(3), control.open_stream(peer, proto)).await;
    let mut stream_opened = false;
    if let Ok(Ok(mut out)) = opened {
        stream_opened = true;
        let frame: Vec<u8> = match mode {
            "garbage" => {
                let mut f = 16u32.to_be_bytes().to_vec();
                f.extend_from_slice(&[0xff; 16]);
                f
            }
            "oversize" => {
                let mut f = u32::MAX.to_be_bytes().to_vec();
                f.extend_from_slice(&[0; 64]);
                f
            }
            _ => Vec::new(),
        };
        if mode == "push" {
            let hello = Message::Hello {
                version: PROTOCOL_VERSION,
                spaces: vec![],
            };
            let _ = write_message(&mut out, &hello).await;
            if let Some(space) = folder {
                let body = EnvelopeBody {
                    version: ENVELOPE_VERSION,
                    space,
                    author: keys.device_id(),
                    seq: 1,
                    prev: None,
                    kind: Kind::Content,
                    context: vec![],
                    epoch: None,
                    payload: b"not a real change".to_vec(),
                    change: Some(coffer_crdt::ChangeHeader {
                        incarnation: 0,
                        seq: 1,
                        deps: vec![],
                    }),
                };
                let env = Envelope::sign(body, &keys);
                let msg = Message::Envelopes {
                    space,
                    envelopes: vec![env.to_bytes()],
                };
                let _ = write_message(&mut out, &msg).await;
            }
        } else {
            let _ = out.write_all(&frame).await;
            let _ = out.flush().await;
        }
        // Keep `out` open while we listen.
        std::mem::forget(out);
    }
    let mut received = Vec::new();
    let mut error = None;
    let listen_until = tokio::time::Instant::now() + Duration::from_secs(5);
    if let Ok(Some((_, mut inbound))) =
        tokio::time::timeout(Duration::from_secs(2), incoming.next()).await
    {
        while let Ok(Ok(Some((msg, _)))) =
            tokio::time::timeout_at(listen_until, read_message(&mut inbound)).await
        {
            if let Message::Error { code, .. } = &msg {
                error = Some(format!("{code:?}"));
            }
            received.push(coffer_daemon::net::protocol::name(&msg));
        }
    }
    let _ = tokio::time::timeout_at(listen_until, async {
        while !*closed_rx.borrow() {
            if closed_rx.changed().await.is_err() {
                return;
            }
        }
    })
    .await;
    closed |= *closed_rx.borrow();
    json!({
        "connected": true,
        "stream_opened": stream_opened,
        "received": received,
        "error": error,
        "closed": closed,
    })
}
