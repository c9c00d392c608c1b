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

/// An Xvfb of our own on a free display, killed (by its pid) when dropped.
struct Xvfb {
    child: std::process::Child,
    display: String,
}

impl Xvfb {
    /// None when Xvfb or xclip is missing (.ci/run installs both).
    fn start() -> Option<Xvfb> {
        let on_path = |name: &str| {
            std::env::var_os("PATH")
                .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        };
        if !on_path("Xvfb") || !on_path("xclip") {
            eprintln!("clipboard: Xvfb or xclip is not installed; the X11 check is skipped");
            return None;
        }
        let n = (100..400)
            .map(|i| 100 + (std::process::id() + i) % 400)
            .find(|n| {
                !Path::new(&format!("/tmp/.X11-unix/X{n}")).exists()
                    && !Path::new(&format!("/tmp/.X{n}-lock")).exists()
            })
            .expect("a free X display");
        let display = format!(":{n}");
        let child = std::process::Command::new("Xvfb")
            .args([
                display.as_str(),
                "-nolisten",
                "tcp",
                "-screen",
                "0",
                "64x64x8",
            ])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start Xvfb");
        let x = Xvfb { child, display };
        let socket = format!("/tmp/.X11-unix/X{n}");
        wait_for("Xvfb", Duration::from_secs(20), || {
            Path::new(&socket).exists()
        });
        Some(x)
    }

    /// `xclip -o` of the clipboard (with `-t TARGET` if given): None when
    /// nobody holds it.
    fn paste(&self, target: Option<&str>) -> Option<String> {
        let mut cmd = std::process::Command::new("xclip");
        cmd.args(["-selection", "clipboard", "-o"]);
        if let Some(t) = target {
            cmd.args(["-t", t]);
        }
        cmd.env("DISPLAY", &self.display);
        let out = run_with_timeout(&mut cmd, b"", Duration::from_secs(10));
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn x11_copy_offers_the_password_manager_hint_and_gives_the_clipboard_up() {
    let Some(x) = Xvfb::start() else { return };
    let d = Daemon::start();
    d.init();
    d.add_login("clip", SECRET, &[]);
    let copy_x11 = |args: &[&str]| {
        let mut cmd = d.command(args);
        // No clipboard tool on PATH: the X11 server is coffer itself.
        cmd.env("PATH", "/nonexistent")
            .env("DISPLAY", &x.display)
            .env_remove("WAYLAND_DISPLAY");
        let out = run_with_timeout(&mut cmd, b"", Duration::from_secs(30));
        assert!(out.status.success(), "{out:?}");
    };

    copy_x11(&["get", "clip", "--copy", "--clear-after", "3"]);
    assert_eq!(x.paste(None).as_deref(), Some(SECRET));
    let targets = x.paste(Some("TARGETS")).unwrap_or_default();
    assert!(
        targets.lines().any(|t| t == "x-kde-passwordManagerHint"),
        "targets: {targets}"
    );
    assert_eq!(
        x.paste(Some("x-kde-passwordManagerHint")).as_deref(),
        Some("secret")
    );
    // The server's command line is `coffer __clipboard-x11 --after 3`.
    let lines = coffer_cmdlines();
    assert!(
        lines.iter().any(|l| {
            let args: Vec<&[u8]> = l.split(|b| *b == 0).filter(|a| !a.is_empty()).collect();
            args[1..] == [b"__clipboard-x11".as_slice(), b"--after", b"3"]
        }),
        "no X11 clipboard server among {:?}",
        lines
            .iter()
            .map(|l| String::from_utf8_lossy(l))
            .collect::<Vec<_>>()
    );
    for l in &lines {
        assert!(
            !contains_bytes(l, SECRET.as_bytes()),
            "{}",
            String::from_utf8_lossy(l)
        );
    }
    wait_for("giving the clipboard up", Duration::from_secs(15), || {
        x.paste(None).is_none()
    });

    // The user copies something else meanwhile: the server leaves at once
    // and the other program's value stays past the deadline.
    copy_x11(&["get", "clip", "--copy", "--clear-after", "2"]);
    assert_eq!(x.paste(None).as_deref(), Some(SECRET));
    let mut other = std::process::Command::new("xclip")
        .args(["-quiet", "-selection", "clipboard", "-i"])
        .env("DISPLAY", &x.display)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("xclip -i");
    {
        use std::io::Write;
        let mut stdin = other.stdin.take().unwrap();
        stdin.write_all(b"something else").unwrap();
    }
    wait_for(
        "the other value on the clipboard",
        Duration::from_secs(10),
        || x.paste(None).as_deref() == Some("something else"),
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(x.paste(None).as_deref(), Some("something else"));
    wait_for("the X11 server to leave", Duration::from_secs(10), || {
        !coffer_cmdlines()
            .iter()
            .any(|l| contains_bytes(l, b"__clipboard-x11") && contains_bytes(l, b"--after\x002"))
    });
    let _ = other.kill();
    let _ = other.wait();
}
