//! Crash test: writers add items through the CLI while another thread
//! `kill -9`s the daemon at random moments (restarting and unlocking it each
//! time). Every write the CLI reported as done must be there afterwards,
//! with its exact password, and the store must open cleanly.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use coffer_tests::Daemon;
use rand::Rng;

const KILLS: usize = 8;
const MIN_WRITES: usize = 150;
const WRITERS: usize = 2;

#[test]
fn kill_9_loses_no_acknowledged_write() {
    let started = Instant::now();
    let mut d = Daemon::start();
    d.init();
    let cli = d.cli();

    let killer_done = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicUsize::new(0));
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let refused = Arc::new(AtomicUsize::new(0));

    let killer = {
        let done = killer_done.clone();
        thread::spawn(move || {
            let mut rng = rand::thread_rng();
            let mut downtime = Duration::ZERO;
            for _ in 0..KILLS {
                thread::sleep(Duration::from_millis(rng.gen_range(100..600)));
                d.kill9();
                let t = Instant::now();
                d.spawn();
                d.unlock();
                downtime += t.elapsed();
            }
            done.store(true, Ordering::SeqCst);
            (d, downtime)
        })
    };

    let writers: Vec<_> = (0..WRITERS)
        .map(|_| {
            let (cli, done, next, acked, refused) = (
                cli.clone(),
                killer_done.clone(),
                next.clone(),
                acked.clone(),
                refused.clone(),
            );
            thread::spawn(move || loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                if done.load(Ordering::SeqCst) && n >= MIN_WRITES {
                    return;
                }
                let out = cli.coffer(&["add", "login", &format!("item-{n}")], format!("pw-{n}\n"));
                match out.status.code() {
                    Some(0) => {
                        acked.lock().unwrap().insert(n);
                    }
                    // Daemon gone (11) or restarted but not unlocked yet (3).
                    Some(3 | 11) => {
                        refused.fetch_add(1, Ordering::SeqCst);
                    }
                    other => panic!(
                        "item-{n}: unexpected exit {other:?}: {}",
                        String::from_utf8_lossy(&out.stderr)
                    ),
                }
            })
        })
        .collect();
    for w in writers {
        if let Err(panic) = w.join() {
            std::panic::resume_unwind(panic);
        }
    }
    let (mut d, downtime) = match killer.join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    };
    let acked = acked.lock().unwrap().clone();
    let attempted = next.load(Ordering::SeqCst);
    println!(
        "crash test: {attempted} writes attempted, {} acknowledged, {} refused while down/locked, {KILLS} kills, {downtime:?} restarting",
        acked.len(),
        refused.load(Ordering::SeqCst)
    );
    assert!(
        acked.len() >= MIN_WRITES / 2,
        "too few writes acknowledged ({}) to mean anything",
        acked.len()
    );

    // One more kill right after the last acknowledged write.
    d.kill9();
    d.spawn();
    let status = d.status();
    assert_eq!(status["initialized"], true, "{status}");
    assert_eq!(status["locked"], true, "{status}");
    d.unlock();

    let listed: BTreeSet<String> = d
        .json(&["ls", "--json"], "")
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect();
    let missing: Vec<usize> = acked
        .iter()
        .copied()
        .filter(|n| !listed.contains(&format!("item-{n}")))
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged writes lost after kill -9: {missing:?}"
    );
    // Nothing appears that was never attempted.
    for name in &listed {
        let n: usize = name
            .strip_prefix("item-")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unexpected item {name}"));
        assert!(n < attempted, "{name} was never written");
    }
    for n in &acked {
        assert_eq!(
            d.ok(&["get", &format!("item-{n}"), "--field", "password"], ""),
            format!("pw-{n}\n"),
            "item-{n}"
        );
    }
    let log = d.log_text();
    for bad in [
        "does not decode",
        "envelope refused",
        "does not decrypt",
        "change refused",
        "cannot be opened",
    ] {
        assert!(
            !log.contains(bad),
            "the store came back damaged ({bad}):\n{log}"
        );
    }
    // And it still takes writes and shuts down cleanly.
    d.add_login("after-crashes", "ac-pw", &[]);
    d.stop();
    println!("crash test took {:?}", started.elapsed());
}
