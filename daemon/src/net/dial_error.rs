//! What a failed dial means, for `coffer doctor`: libp2p's `DialError`
//! turned into one [`DialFailure`] per address tried, each with a
//! [`DialErrorKind`] read from the transport's error chain.
//!
//! Not a decision about what is a problem (that is
//! `coffer_ipc::doctor::diagnose`): only a classification of the OS's and
//! the transport's words, which carry no structured kind once libp2p has
//! boxed them.

use coffer_ipc::doctor::{DialErrorKind, DialFailure};
use libp2p::swarm::DialError;
use libp2p::TransportError;

/// The longest error text kept.
const MAX_ERROR_TEXT: usize = 300;

/// An error and its sources, joined with ": ".
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = inner.source();
    }
    s
}

/// The kind of one transport error from its text (an `io::Error` from
/// the socket, or a Noise/multistream failure after connecting).
pub(crate) fn classify(text: &str) -> DialErrorKind {
    let t = text.to_ascii_lowercase();
    let any = |words: &[&str]| words.iter().any(|w| t.contains(w));
    if any(&["connection refused", "os error 111", "os error 61"]) {
        DialErrorKind::Refused
    } else if any(&["timed out", "timeout", "os error 110", "os error 60"]) {
        DialErrorKind::TimedOut
    } else if any(&[
        "no route to host",
        "network is unreachable",
        "host is unreachable",
        "os error 113",
        "os error 101",
    ]) {
        DialErrorKind::Unreachable
    } else if any(&[
        "invalid argument",
        "os error 22",
        "multiaddr is not supported",
        "cannot assign requested address",
    ]) {
        DialErrorKind::BadAddress
    } else if any(&[
        "noise",
        "handshake",
        "decrypt",
        "signature",
        "multistream",
        "negotiat",
        "invalid public key",
    ]) {
        DialErrorKind::Handshake
    } else {
        DialErrorKind::Other
    }
}

fn bounded(mut s: String) -> String {
    if s.len() > MAX_ERROR_TEXT {
        let mut cut = MAX_ERROR_TEXT;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// One failure per address a dial tried; none for a dial that was only
/// skipped (already connected or dialling, no address).
pub(crate) fn failures(error: &DialError, at_ms: i64) -> Vec<DialFailure> {
    let one = |address: Option<String>, kind, text: String| DialFailure {
        at_ms,
        address,
        kind,
        error: bounded(text),
    };
    match error {
        DialError::Transport(errors) => errors
            .iter()
            .map(|(addr, e)| {
                let text = match e {
                    TransportError::MultiaddrNotSupported(a) => {
                        format!("multiaddr is not supported: {a}")
                    }
                    TransportError::Other(io) => chain(io),
                };
                let (bare, _) = super::without_p2p(addr);
                one(Some(bare.to_string()), classify(&text), text)
            })
            .collect(),
        DialError::WrongPeerId { obtained, address } => {
            let (bare, _) = super::without_p2p(address);
            vec![one(
                Some(bare.to_string()),
                DialErrorKind::WrongDevice,
                format!("device {obtained} answered"),
            )]
        }
        DialError::Denied { cause } => {
            vec![one(None, DialErrorKind::Other, chain(cause))]
        }
        DialError::LocalPeerId { address } => {
            let (bare, _) = super::without_p2p(address);
            vec![one(
                Some(bare.to_string()),
                DialErrorKind::WrongDevice,
                "this device answered (the address is its own)".into(),
            )]
        }
        DialError::NoAddresses | DialError::DialPeerConditionFalse(_) | DialError::Aborted => {
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The words Linux, macOS and libp2p use, as seen in logs.
    #[test]
    fn transport_errors_are_classified_by_their_words() {
        for (text, kind) in [
            ("Connection refused (os error 111)", DialErrorKind::Refused),
            ("Timeout has been reached", DialErrorKind::TimedOut),
            (
                "Connection timed out (os error 110)",
                DialErrorKind::TimedOut,
            ),
            (
                "No route to host (os error 113)",
                DialErrorKind::Unreachable,
            ),
            (
                "Network is unreachable (os error 101)",
                DialErrorKind::Unreachable,
            ),
            // Issue 21: a link-local IPv6 address without its scope.
            ("Invalid argument (os error 22)", DialErrorKind::BadAddress),
            (
                "Handshake failed: Noise error: decrypt error",
                DialErrorKind::Handshake,
            ),
            ("Multistream select failed", DialErrorKind::Handshake),
            ("something else", DialErrorKind::Other),
        ] {
            assert_eq!(classify(text), kind, "{text}");
        }
    }

    #[test]
    fn a_transport_dial_error_gives_one_failure_per_address() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let addr: libp2p::Multiaddr = "/ip4/192.0.2.2/tcp/7373".parse().unwrap();
        let e = DialError::Transport(vec![(addr, TransportError::Other(refused))]);
        let f = failures(&e, 5);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].kind, DialErrorKind::Refused, "{:?}", f[0]);
        assert_eq!(f[0].address.as_deref(), Some("/ip4/192.0.2.2/tcp/7373"));
        assert!(failures(&DialError::Aborted, 5).is_empty());
        assert_eq!(bounded("é".repeat(400)).len(), MAX_ERROR_TEXT);
    }
}
