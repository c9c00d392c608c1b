//! Bad input: each gets a clear error and its own exit code, the daemon keeps
//! serving and nothing changes. Invalid TOTP secrets, unknown and ambiguous
//! items, wrong PINs (with backoff), garbage and oversized frames on the
//! socket, another uid, and no daemon at all.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use coffer_tests::{coffer_bin, run_with_timeout, short_tempdir, str_field, Cli, Daemon, PIN};
use serde_json::Value;

/// Everything visible about the vault's content, to compare before/after.
fn snapshot(d: &Cli) -> (Value, Value, Value) {
    (
        d.json(&["ls", "--json"], ""),
        d.json(&["ls", "--trash", "--json"], ""),
        d.json(&["folder", "ls", "--json"], ""),
    )
}

#[test]
fn invalid_totp_and_fields_are_refused_and_nothing_stored() {
    let d = Daemon::start();
    d.init();
    d.add_login("keep", "keep-pw", &[]);
    let keep = d.json(&["get", "keep", "--json"], "");
    let before = snapshot(&d);

    let bad_secrets: &[(&str, &str)] = &[
        ("not base32!", "TOTP secret rejected"),
        ("JBSWY3DPEHPK3PX1", "TOTP secret rejected"), // '1' is not base32
        ("JBSWY3DPE", "TOTP secret rejected"),        // a base32 length no secret has
        ("otpauth://totp/x?secret=JBSW%%Y3DP", "TOTP secret rejected"),
        ("otpauth://totp/x?issuer=NoSecret", "TOTP secret rejected"),
        (
            "otpauth://totp/x?secret=JBSWY3DPEHPK3PXP&algorithm=MD5",
            "MD5",
        ),
        (
            "otpauth://totp/x?secret=JBSWY3DPEHPK3PXP&digits=12",
            "digits",
        ),
        (
            "otpauth://totp/x?secret=JBSWY3DPEHPK3PXP&period=0",
            "period",
        ),
        ("otpauth://hotp/x?secret=JBSWY3DPEHPK3PXP&counter=1", "HOTP"),
        (
            "otpauth-migration://offline?data=CjEKCkhlbGxvId",
            "otpauth-migration",
        ),
        (
            "otpauth:/totp/x?secret=JBSWY3DPEHPK3PXP",
            "TOTP secret rejected",
        ),
        (
            "https://example.com/?secret=JBSWY3DPEHPK3PXP",
            "TOTP secret rejected",
        ),
    ];
    for (input, expected) in bad_secrets {
        let err = d.fails(&["add", "totp", "bad"], format!("{input}\n"), 9);
        assert!(
            err.contains(expected),
            "{input:?}: expected {expected:?} in: {err}"
        );
        let err = d.fails(&["totp", "set", "keep"], format!("{input}\n"), 9);
        assert!(err.contains("TOTP secret rejected"), "{input:?}: {err}");
    }
    // Empty stdin is a usage error before anything reaches the daemon.
    d.fails(&["add", "totp", "bad"], "", 2);
    d.fails(&["add", "login", "bad"], "\n", 2);

    // Card fields are checked too.
    let bad_cards: &[(&[&str], &str)] = &[
        (&["add", "card", "bad"], "4111-xxxx\n123\n"),
        (&["add", "card", "bad"], "411\n123\n"),
        (&["add", "card", "bad"], "4111111111111111\n12\n"),
        (
            &["add", "card", "bad", "--expiry", "13/27"],
            "4111111111111111\n123\n",
        ),
        (
            &["add", "card", "bad", "--expiry", "1/27"],
            "4111111111111111\n123\n",
        ),
    ];
    for (args, stdin) in bad_cards {
        d.fails(args, stdin, 9);
    }
    // Unknown item type fields and empty names.
    d.fails(&["edit", "keep", "--holder", "X"], "", 9);
    d.fails(&["add", "login", "  "], "pw\n", 9);
    d.fails(&["folder", "create", ""], "", 9);
    d.fails(&["search", " "], "", 9);

    assert_eq!(snapshot(&d), before, "a refused input changed the vault");
    assert_eq!(d.json(&["get", "keep", "--json"], ""), keep);
    assert_eq!(d.status()["items"], 1);
}

#[test]
fn unknown_and_ambiguous_items() {
    let d = Daemon::start();
    d.init();
    d.ok(&["folder", "create", "Work"], "");
    d.add_login("twin", "twin-personal", &[]);
    d.add_login("twin", "twin-work", &["--folder", "Work"]);
    let before = snapshot(&d);

    for args in [
        &["get", "ghost"][..],
        &["get", "ghost", "--trash"],
        &["rm", "ghost"],
        &["restore", "ghost"],
        &["history", "ghost"],
        &["totp", "ghost"],
        &["edit", "ghost", "--username", "x"],
        &["get", "Work/ghost"],
        &["get", "deadbeef"],
    ] {
        let err = d.fails(args, "", 5);
        assert!(
            (err.contains("no ") && err.contains("ghost")) || err.contains("deadbeef"),
            "{err}"
        );
    }
    d.fails(&["totp", "set", "ghost"], "JBSWY3DPEHPK3PXP\n", 5);

    for args in [
        &["get", "twin"][..],
        &["rm", "twin"],
        &["history", "twin"],
        &["totp", "twin"],
        &["edit", "twin", "--username", "x"],
    ] {
        let err = d.fails(args, "", 6);
        assert!(
            err.contains("Personal/twin") && err.contains("Work/twin"),
            "{args:?}: {err}"
        );
    }
    d.fails(&["totp", "set", "twin"], "JBSWY3DPEHPK3PXP\n", 6);
    assert_eq!(snapshot(&d), before);
}

fn sleep_to_next_second(margin_ms: u64) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let into = now.subsec_millis() as u64;
    std::thread::sleep(Duration::from_millis(1000 - into + margin_ms));
}

#[test]
fn wrong_pin_then_backoff() {
    let mut d = Daemon::start();
    d.init();
    d.add_login("safe", "safe-pw", &[]);
    d.ok(&["lock"], "");

    let err = d.fails(&["unlock", "--pin-stdin"], "1111\n", 7);
    assert!(err.contains("wrong PIN"), "{err}");
    d.fails(&["unlock", "--pin-stdin"], "2222\n", 7);
    // The throttle counts whole seconds: start the third failure at the top
    // of a second so the next attempt surely falls within the 1 s wait.
    sleep_to_next_second(10);
    d.fails(&["unlock", "--pin-stdin"], "3333\n", 7);
    let err = d.fails(&["unlock", "--pin-stdin"], format!("{PIN}\n"), 8);
    assert!(err.contains("try again in 1 s"), "{err}");
    // Still serving, still locked.
    assert_eq!(d.status()["locked"], true);
    d.fails(&["get", "safe"], "", 3);

    std::thread::sleep(Duration::from_millis(1100));
    d.unlock();
    assert_eq!(
        d.ok(&["get", "safe", "--field", "password"], ""),
        "safe-pw\n"
    );

    // Success resets the count: the next failure is plain "wrong PIN".
    d.ok(&["lock"], "");
    d.fails(&["unlock", "--pin-stdin"], "1111\n", 7);
    d.fails(&["unlock", "--pin-stdin"], "2222\n", 7);
    d.fails(&["unlock", "--pin-stdin"], "3333\n", 7);
    // Past the 1 s wait, at the top of a second again: the fourth
    // consecutive failure doubles the wait (2 s), which survives a restart.
    sleep_to_next_second(10);
    d.fails(&["unlock", "--pin-stdin"], "4444\n", 7);
    let failed_at = Instant::now();
    d.restart();
    let attempt_after = failed_at.elapsed();
    let err = d.fails(&["unlock", "--pin-stdin"], format!("{PIN}\n"), 8);
    assert!(err.contains("try again in"), "{err}");
    assert!(
        attempt_after < Duration::from_millis(1900),
        "restart took {attempt_after:?}: too slow for this check"
    );
    std::thread::sleep(Duration::from_millis(2100).saturating_sub(failed_at.elapsed()));
    d.unlock();
    assert_eq!(
        d.ok(&["get", "safe", "--field", "password"], ""),
        "safe-pw\n"
    );
}

/// One line of reply on `stream` as JSON.
fn read_reply(reader: &mut BufReader<UnixStream>) -> Value {
    let mut line = String::new();
    let n = reader.read_line(&mut line).expect("read a reply");
    assert!(n > 0, "cofferd closed the connection instead of replying");
    let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("reply {line:?}: {e}"));
    assert_eq!(v["jsonrpc"], "2.0", "{v}");
    assert_eq!(v["protocol"], 1, "{v}");
    v
}

fn connect(socket: &Path) -> (UnixStream, BufReader<UnixStream>) {
    let stream = UnixStream::connect(socket).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let reader = BufReader::new(stream.try_clone().unwrap());
    (stream, reader)
}

#[test]
fn garbage_and_oversized_frames_on_the_socket() {
    let d = Daemon::start();
    d.init();
    d.add_login("intact", "intact-pw", &[]);
    let before = snapshot(&d);
    let pid = d.pid();

    let (mut w, mut r) = connect(d.socket());
    let cases: &[(&[u8], i64, Value)] = &[
        (b"not json\n", -32700, Value::Null),
        (
            br#"{"jsonrpc":"2.0","id":1,"method":"nope"}"#,
            -32601,
            Value::from(1),
        ),
        (br#"{"id":1}"#, -32600, Value::Null),
        (b"\xff\xfe\x80\xc3(garbage", -32700, Value::Null),
        (b"[1,2,3]", -32600, Value::Null),
        (b"{\"jsonrpc\":\"2.0\",\"id\":", -32700, Value::Null),
        (
            br#"{"jsonrpc":"1.0","id":2,"method":"status"}"#,
            -32600,
            Value::from(2),
        ),
        (
            br#"{"jsonrpc":"2.0","id":3,"method":"item.get","params":{"nope":1}}"#,
            -32602,
            Value::from(3),
        ),
        (
            br#"{"jsonrpc":"2.0","id":"x","method":"item.get","params":[1]}"#,
            -32602,
            Value::from("x"),
        ),
        (
            br#"{"jsonrpc":"2.0","id":4,"method":"init","params":{"name":"A","email":"a@b.c","pin":"0000"}}"#,
            1003,
            Value::from(4),
        ),
    ];
    for (bytes, code, id) in cases {
        let mut line = bytes.to_vec();
        if !line.ends_with(b"\n") {
            line.push(b'\n');
        }
        w.write_all(&line).unwrap();
        let reply = read_reply(&mut r);
        assert_eq!(
            reply["error"]["code"],
            *code,
            "{:?} got {reply}",
            String::from_utf8_lossy(bytes)
        );
        assert!(reply["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
        assert_eq!(reply["id"], *id, "{reply}");
        assert!(reply.get("result").is_none(), "{reply}");
    }
    // Blank lines and a notification get no reply; the connection still
    // answers the next request (whose reply is the very next line).
    w.write_all(b"\n   \n").unwrap();
    w.write_all(br#"{"jsonrpc":"2.0","method":"status"}"#)
        .unwrap();
    w.write_all(b"\n").unwrap();
    w.write_all(br#"{"jsonrpc":"2.0","id":5,"method":"status"}"#)
        .unwrap();
    w.write_all(b"\n").unwrap();
    let reply = read_reply(&mut r);
    assert_eq!(reply["id"], 5, "{reply}");
    assert_eq!(reply["result"]["initialized"], true, "{reply}");
    drop((w, r));

    // A 2 MiB line: one "too large" error, then the daemon hangs up.
    let (w, mut r) = connect(d.socket());
    let mut writer = w.try_clone().unwrap();
    let flood = std::thread::spawn(move || {
        let chunk = vec![b'a'; 64 * 1024];
        for _ in 0..32 {
            if writer.write_all(&chunk).is_err() {
                return;
            }
        }
        let _ = writer.write_all(b"\n");
    });
    let reply = read_reply(&mut r);
    assert_eq!(reply["error"]["code"], 1010, "{reply}");
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains("longer than"),
        "{reply}"
    );
    flood.join().unwrap();
    let mut rest = Vec::new();
    let _ = r.read_to_end(&mut rest);
    assert!(rest.is_empty(), "more after the too-large error: {rest:?}");
    drop(w);

    // A valid-JSON prefix that grows past the limit is refused the same way.
    let (mut w, mut r) = connect(d.socket());
    let mut big = br#"{"jsonrpc":"2.0","id":7,"method":"item.add","params":{"item_type":"note","name":"big","fields":{"notes":""#.to_vec();
    big.resize(big.len() + (1 << 20) + 10, b'x');
    big.extend_from_slice(b"\"},\"urls\":[]}}\n");
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(&big);
    });
    assert_eq!(read_reply(&mut r)["error"]["code"], 1010);
    writer.join().unwrap();

    // Half a request, then hang up; and a burst of idle connections.
    {
        let (mut w, _r) = connect(d.socket());
        w.write_all(br#"{"jsonrpc":"2.0","id":1,"meth"#).unwrap();
    }
    let idle: Vec<_> = (0..50).map(|_| connect(d.socket())).collect();
    drop(idle);

    // The daemon carries on, unchanged, for the CLI and for raw clients.
    let status = d.status();
    assert_eq!(status["pid"], pid);
    assert_eq!(status["locked"], false);
    assert_eq!(snapshot(&d), before);
    assert_eq!(
        d.ok(&["get", "intact", "--field", "password"], ""),
        "intact-pw\n"
    );
    assert!(
        !d.json(&["ls", "--json"], "")
            .to_string()
            .contains("\"big\""),
        "the oversized add was stored"
    );
}

#[test]
fn oversized_input_through_the_cli_is_refused() {
    let d = Daemon::start();
    d.init();
    let before = snapshot(&d);
    let huge = "n".repeat(3 << 20);
    let out = d.coffer(&["add", "note", "huge"], format!("{huge}\n"));
    assert!(!out.status.success(), "a 3 MiB note was accepted");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(9), "{err}");
    assert!(err.contains("exceeds the"), "{err}");
    assert_eq!(snapshot(&d), before);
    assert_eq!(d.status()["locked"], false);
    d.ok(&["add", "note", "small"], "fits\n");
}

fn find_setpriv() -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .chain(["/usr/bin".into(), "/bin".into()])
        .map(|dir| dir.join("setpriv"))
        .find(|p| p.is_file())
}

/// Connects to `socket` as `uid`/`gid` and returns the first reply line.
/// The raw syscalls change only the credentials of the thread that makes
/// them (glibc's wrappers would change every thread of this test process),
/// and that thread ends right after; SO_PEERCRED records the connecting
/// thread's credentials.
fn raw_request_as(socket: &Path, uid: u32, gid: u32, request: &[u8]) -> std::io::Result<String> {
    let socket = socket.to_path_buf();
    let request = request.to_vec();
    std::thread::spawn(move || {
        // SAFETY: plain syscalls on this thread's own credentials; no memory
        // is passed except a null group list of length 0.
        unsafe {
            let none: *const libc::gid_t = std::ptr::null();
            if libc::syscall(libc::SYS_setgroups, 0, none) != 0
                || libc::syscall(libc::SYS_setresgid, gid, gid, gid) != 0
                || libc::syscall(libc::SYS_setresuid, uid, uid, uid) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
        }
        let stream = UnixStream::connect(&socket)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        // The daemon may already have answered and hung up: a failed write
        // is fine, the reply is still there to read.
        let _ = (&stream).write_all(&request);
        let mut line = String::new();
        BufReader::new(&stream).read_line(&mut line)?;
        Ok(line)
    })
    .join()
    .expect("connecting thread panicked")
}

#[test]
fn another_uid_is_refused() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        println!("SKIPPED another_uid_is_refused: needs root to connect as uid 65534");
        return;
    }
    let d = Daemon::start();
    d.init();
    d.add_login("mine", "mine-pw", &[]);
    let before = snapshot(&d);

    // Let uid 65534 reach the socket (the daemon made it 0600 in a 0700 dir).
    let chmod = |p: &Path, mode| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    chmod(d.dir.path(), 0o755);
    chmod(d.socket().parent().unwrap(), 0o755);
    chmod(d.socket(), 0o666);

    // A raw connection as uid 65534: one refusal, whatever it asked.
    for request in [
        &br#"{"jsonrpc":"2.0","id":1,"method":"lock"}
"#[..],
        br#"{"jsonrpc":"2.0","id":2,"method":"item.get","params":{"item":"mine"}}
"#,
    ] {
        let line = raw_request_as(d.socket(), 65534, 65534, request).expect("connect as 65534");
        let reply: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("reply {line:?}: {e}"));
        assert_eq!(reply["error"]["code"], 1009, "{reply}");
        assert_eq!(
            reply["error"]["message"],
            "cofferd serves only its own user"
        );
        assert!(reply.get("result").is_none(), "{reply}");
        assert!(!line.contains("mine-pw"));
    }
    assert!(
        d.log_text()
            .contains("refused a connection from another user peer_uid=65534"),
        "the refusal is not logged"
    );

    // The CLI as uid 65534 (through setpriv, on a copy it can execute).
    match find_setpriv() {
        None => println!("another_uid_is_refused: CLI part skipped, setpriv is not installed"),
        Some(setpriv) => {
            // A hard link, not a copy: a copy's write fd can leak into a
            // process another test forks meanwhile, and exec then fails with
            // "Text file busy". Copy only across filesystems.
            let bin = d.dir.path().join("coffer-copy");
            if std::fs::hard_link(coffer_bin(), &bin).is_err() {
                std::fs::copy(coffer_bin(), &bin).unwrap();
                chmod(&bin, 0o755);
            }
            for args in [&["status"][..], &["lock"], &["ls"]] {
                let mut cmd = Command::new(&setpriv);
                cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                    .arg(&bin)
                    .args(args)
                    .env("COFFER_SOCKET", d.socket())
                    .env("COFFER_NO_AUTOSTART", "1")
                    .env("HOME", "/nonexistent");
                let out = run_with_timeout(&mut cmd, b"", Duration::from_secs(30));
                let err = String::from_utf8_lossy(&out.stderr);
                // The CLI itself refuses a daemon of another user first
                // (and the daemon would refuse it, as the raw requests show).
                match out.status.code() {
                    Some(11) => assert!(err.contains("runs as uid 0"), "{err}"),
                    other => panic!("{args:?} as uid 65534 exited {other:?}: {err}"),
                }
            }
        }
    }

    // Our own uid is still served, and the refused `lock`s did nothing.
    assert_eq!(d.status()["locked"], false);
    assert_eq!(snapshot(&d), before);
    assert_eq!(
        d.ok(&["get", "mine", "--field", "password"], ""),
        "mine-pw\n"
    );
}

#[test]
fn no_daemon_is_unavailable_and_nothing_started() {
    let dir = short_tempdir();
    let cli = Cli {
        socket: dir.path().join("run").join("cofferd.sock"),
        data_dir: dir.path().join("data"),
        log: None,
    };
    let err = cli.fails(&["status"], "", 11);
    assert!(err.contains("cofferd is not available"), "{err}");
    cli.fails(&["get", "x"], "", 11);
    assert!(!cli.socket.exists());
    assert!(
        !cli.data_dir.exists(),
        "a daemon was started despite COFFER_NO_AUTOSTART"
    );

    // A socket path nobody listens on (stale file) is the same.
    let d = Daemon::start();
    let stale = d.cli();
    let mut d = d;
    d.kill9();
    assert!(
        stale.socket.exists(),
        "kill -9 leaves the socket file behind"
    );
    stale.fails(&["status"], "", 11);
    // A new daemon replaces the stale socket.
    d.spawn();
    assert_eq!(
        str_field(&d.status(), "socket"),
        d.socket().to_str().unwrap()
    );
}

/// Issue 20, item 9: a socket served by another user (who made the socket
/// folder first, say) gets nothing from the CLI — not the PIN, not a
/// request.
#[test]
fn the_cli_sends_nothing_to_a_socket_of_another_user() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        println!("SKIPPED the_cli_sends_nothing_to_a_socket_of_another_user: needs root to listen as uid 65534");
        return;
    }
    let dir = short_tempdir();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let socket = dir.path().join("cofferd.sock");
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let path = socket.clone();
    let stranger = std::thread::spawn(move || -> std::io::Result<Vec<u8>> {
        // SAFETY: plain syscalls on this thread's own credentials; no memory
        // is passed except a null group list of length 0.
        unsafe {
            let none: *const libc::gid_t = std::ptr::null();
            if libc::syscall(libc::SYS_setgroups, 0, none) != 0
                || libc::syscall(libc::SYS_setresgid, 65534, 65534, 65534) != 0
                || libc::syscall(libc::SYS_setresuid, 65534, 65534, 65534) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
        }
        let listener = std::os::unix::net::UnixListener::bind(&path)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))?;
        let _ = ready_tx.send(());
        let (mut stream, _) = listener.accept()?;
        stream.set_read_timeout(Some(Duration::from_secs(3)))?;
        let mut got = Vec::new();
        let _ = stream.read_to_end(&mut got);
        Ok(got)
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the stranger listens");
    let mut cmd = Command::new(coffer_bin());
    cmd.args(["unlock", "--pin-stdin"])
        .env("COFFER_SOCKET", &socket)
        .env("COFFER_NO_AUTOSTART", "1");
    let out = run_with_timeout(
        &mut cmd,
        format!("{PIN}\n").as_bytes(),
        Duration::from_secs(30),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("runs as uid 65534"), "{err}");
    let received = stranger
        .join()
        .expect("stranger thread")
        .expect("stranger socket");
    assert!(
        received.is_empty(),
        "the CLI sent {} bytes to another user's socket",
        received.len()
    );
}
