//! `--copy` with fake clipboard tools on PATH (issue 17): nothing derived
//! from the secret may appear on the command line of any process `coffer`
//! starts (the clearer, the tool), the tool gets `--sensitive` when it
//! supports it, and the clipboard is cleared after the delay only if it
//! still holds the value.

use std::path::Path;
use std::time::{Duration, Instant};

use coffer_tests::{contains_bytes, run_with_timeout, Daemon};

const SECRET: &str = "clip-Secret-4a9d";

/// A wl-copy that records its arguments and stores stdin, a wl-paste that prints it.
fn fake_tools(dir: &Path) {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let copy = r#"#!/bin/sh
printf '%s\n' "$*" >> "$FAKE_CLIP/args"
case "$1" in
  --help) echo "  -s, --sensitive   hint clipboard managers"; exit 0 ;;
  --clear) : > "$FAKE_CLIP/clip"; exit 0 ;;
esac
cat > "$FAKE_CLIP/clip"
"#;
    let paste = "#!/bin/sh\ncat \"$FAKE_CLIP/clip\"\n";
    for (name, text) in [("wl-copy", copy), ("wl-paste", paste)] {
        let p = bin.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
}

fn copy(d: &Daemon, args: &[&str]) -> String {
    let dir = d.dir.path();
    let mut cmd = d.command(args);
    let path = format!(
        "{}:{}",
        dir.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    cmd.env("PATH", path)
        .env("WAYLAND_DISPLAY", "fake-wayland-0")
        .env_remove("DISPLAY")
        .env("FAKE_CLIP", dir);
    let out = run_with_timeout(&mut cmd, b"", Duration::from_secs(30));
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Command lines of every live `coffer` process (the clearers among them).
fn coffer_cmdlines() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if e.file_name()
            .to_str()
            .is_none_or(|n| n.parse::<u32>().is_err())
        {
            continue;
        }
        if let Ok(raw) = std::fs::read(e.path().join("cmdline")) {
            let exe = raw.split(|b| *b == 0).next().unwrap_or_default();
            if exe.ends_with(b"/coffer") {
                out.push(raw);
            }
        }
    }
    out
}

fn sha256_hex(data: &[u8]) -> String {
    // The hex of an unsalted SHA-256, as the old clearer had on its command line.
    let out = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(data)?;
            c.wait_with_output()
        })
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

fn wait_for(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn copy_puts_nothing_secret_on_any_command_line_and_clears_later() {
    let d = Daemon::start();
    d.init();
    d.add_login("clip", SECRET, &[]);
    d.ok(&["totp", "set", "clip"], "JBSWY3DPEHPK3PXP\n");
    fake_tools(d.dir.path());
    let clip = d.dir.path().join("clip");

    let said = copy(&d, &["get", "clip", "--copy", "--clear-after", "3"]);
    assert!(said.contains("cleared in 3 s"), "{said}");
    assert_eq!(std::fs::read_to_string(&clip).unwrap(), SECRET);
    let args = std::fs::read_to_string(d.dir.path().join("args")).unwrap();
    assert!(
        args.contains("--sensitive"),
        "wl-copy got no --sensitive: {args}"
    );
    assert!(!args.contains(SECRET));

    // While the clearer waits: its command line is `coffer __clear-clipboard
    // --after 3` and nothing else; no coffer process shows the value or its hash.
    let hash = sha256_hex(SECRET.as_bytes());
    let lines = coffer_cmdlines();
    let clearers: Vec<&Vec<u8>> = lines
        .iter()
        .filter(|l| contains_bytes(l, b"__clear-clipboard"))
        .collect();
    assert!(!clearers.is_empty(), "no clearer is running");
    for l in &lines {
        assert!(
            !contains_bytes(l, SECRET.as_bytes()),
            "{}",
            String::from_utf8_lossy(l)
        );
        assert!(
            !contains_bytes(l, hash.as_bytes()),
            "{}",
            String::from_utf8_lossy(l)
        );
    }
    assert!(
        clearers.iter().any(|l| {
            let args: Vec<&[u8]> = l.split(|b| *b == 0).filter(|a| !a.is_empty()).collect();
            args[1..] == [b"__clear-clipboard".as_slice(), b"--after", b"3"]
        }),
        "clearers: {:?}",
        clearers
            .iter()
            .map(|l| String::from_utf8_lossy(l))
            .collect::<Vec<_>>()
    );
    wait_for("clearing the clipboard", Duration::from_secs(15), || {
        std::fs::read_to_string(&clip).is_ok_and(|c| c.is_empty())
    });

    // A TOTP code: 6 digits whose unsalted hash would give it away at once.
    let said = copy(
        &d,
        &["totp", "clip", "--copy", "--clear-after", "2", "--json"],
    );
    assert!(said.is_empty(), "--json prints nothing on stderr: {said}");
    let code = std::fs::read_to_string(&clip).unwrap();
    assert_eq!(code.len(), 6, "{code}");
    let hash = sha256_hex(code.as_bytes());
    for l in coffer_cmdlines() {
        assert!(
            !contains_bytes(&l, hash.as_bytes()),
            "{}",
            String::from_utf8_lossy(&l)
        );
        let args: Vec<&[u8]> = l.split(|b| *b == 0).collect();
        assert!(
            !args.contains(&code.as_bytes()),
            "{}",
            String::from_utf8_lossy(&l)
        );
    }
    // The user copies something else meanwhile: it stays.
    std::fs::write(&clip, "something else").unwrap();
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(std::fs::read_to_string(&clip).unwrap(), "something else");
}

#[test]
fn the_clear_delay_comes_from_the_config_file() {
    let d = Daemon::start();
    d.init();
    d.add_login("clip", SECRET, &[]);
    fake_tools(d.dir.path());
    let config = d.dir.path().join("cli-config.toml");
    std::fs::write(&config, "clipboard_clear_secs = 0\n").unwrap();
    let mut cmd = d.command(&["get", "clip", "--copy"]);
    let path = format!(
        "{}:{}",
        d.dir.path().join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    cmd.env("PATH", path)
        .env("WAYLAND_DISPLAY", "fake-wayland-0")
        .env("FAKE_CLIP", d.dir.path())
        .env("COFFER_CONFIG", &config);
    let out = run_with_timeout(&mut cmd, b"", Duration::from_secs(30));
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("not cleared"), "{said}");
}
