//! Secret references end to end (issue 17): `coffer read`, `coffer run` and
//! `coffer inject` against a real daemon. `run` must hand the resolved value
//! to the child only: never to `coffer`'s own environment or any argv, and
//! mask it in the child's output.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use coffer_tests::{contains_bytes, run_with_timeout, Daemon};

const DB_PW: &str = "db-Pa55w0rd-7f3e";
const CONCEALED: &str = "<concealed by coffer>";

fn vault() -> Daemon {
    let d = Daemon::start();
    d.init();
    d.add_login("db", DB_PW, &["--username", "dbadmin"]);
    d.ok(&["folder", "create", "Ops"], "");
    d.add_login("deploy key", "ops-secret-91", &["--folder", "Ops"]);
    d.ok(&["totp", "set", "db"], "JBSWY3DPEHPK3PXP\n");
    d
}

#[test]
fn read_prints_one_field_by_reference() {
    let d = vault();
    assert_eq!(
        d.ok(&["read", "coffer://Personal/db/password"], ""),
        format!("{DB_PW}\n")
    );
    assert_eq!(d.ok(&["read", "coffer://db/username"], ""), "dbadmin\n");
    assert_eq!(
        d.ok(&["read", "-n", "coffer://personal/DB/password"], ""),
        DB_PW
    );
    // A name with a space, percent-encoded, in another folder.
    assert_eq!(
        d.ok(&["read", "coffer://Ops/deploy%20key/password"], ""),
        "ops-secret-91\n"
    );
    let j = d.json(&["read", "coffer://db/password", "--json"], "");
    assert_eq!(j["value"], DB_PW);
    assert_eq!(j["reference"], "coffer://db/password");
    let code = d.ok(&["read", "coffer://db/totp-code"], "");
    assert!(
        code.trim().len() == 6 && code.trim().chars().all(|c| c.is_ascii_digit()),
        "{code}"
    );

    // Errors: a malformed reference, a missing field, the item in another folder.
    let err = d.fails(&["read", "op://Personal/db/password"], "", 2);
    assert!(err.contains("coffer://FOLDER/ITEM/FIELD"), "{err}");
    let err = d.fails(&["read", "coffer://db/pin"], "", 5);
    assert!(err.contains("no field \"pin\""), "{err}");
    d.fails(&["read", "coffer://Ops/db/password"], "", 5);
    d.fails(&["read", "coffer://Personal/nothing/password"], "", 5);
}

#[test]
fn run_gives_the_secret_to_the_child_only_and_masks_its_output() {
    let d = vault();
    let dir = d.dir.path().join("run");
    std::fs::create_dir_all(&dir).unwrap();
    let env_file = dir.join("app.env");
    std::fs::write(
        &env_file,
        "# app settings\nDB_PASSWORD=coffer://Personal/db/password\nexport PLAIN='hello'\n",
    )
    .unwrap();
    // The child writes what it got and what its parent (coffer) exposes.
    let script = r#"
        printf '%s' "$DB_PASSWORD" > "$OUT/child_env"
        cat /proc/$PPID/cmdline > "$OUT/parent_cmdline"
        cat /proc/$PPID/environ > "$OUT/parent_environ" 2>/dev/null
        echo "pw=$DB_PASSWORD user=$DB_USER plain=$PLAIN"
        echo "err=$DB_PASSWORD" >&2
        exit 7
    "#;
    let mut cmd = d.command(&[
        "run",
        "--env-file",
        env_file.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        script,
    ]);
    cmd.env("OUT", &dir).env("DB_USER", "coffer://db/username");
    let out = run_with_timeout(&mut cmd, b"", Duration::from_secs(30));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(7),
        "the child's exit code\n{stdout}\n{stderr}"
    );
    assert_eq!(
        stdout,
        format!("pw={CONCEALED} user={CONCEALED} plain=hello\n"),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("err={CONCEALED}")), "{stderr}");
    assert!(!stderr.contains(DB_PW) && !stdout.contains(DB_PW));

    // The child got the value ...
    assert_eq!(
        std::fs::read_to_string(dir.join("child_env")).unwrap(),
        DB_PW
    );
    // ... and neither coffer's argv nor its environment holds it.
    let cmdline = std::fs::read(dir.join("parent_cmdline")).unwrap();
    assert!(
        contains_bytes(&cmdline, b"run"),
        "not coffer's cmdline: {cmdline:?}"
    );
    assert!(!contains_bytes(&cmdline, DB_PW.as_bytes()));
    let environ = std::fs::read(dir.join("parent_environ")).unwrap_or_default();
    if !environ.is_empty() {
        // Readable only by root (coffer is not dumpable): when it is, the
        // reference is there and the value is not.
        assert!(contains_bytes(&environ, b"DB_USER=coffer://db/username"));
        assert!(!contains_bytes(&environ, DB_PW.as_bytes()));
        assert!(!contains_bytes(&environ, b"dbadmin"));
    }

    // --no-masking passes the output through unchanged.
    let mut cmd = d.command(&["run", "--no-masking", "--", "sh", "-c", "echo $PW"]);
    cmd.env("PW", "coffer://db/password");
    let out = run_with_timeout(&mut cmd, b"", Duration::from_secs(30));
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{DB_PW}\n"));

    // A reference that does not resolve runs nothing.
    let mut cmd = d.command(&["run", "--", "sh", "-c", "touch \"$OUT/ran\""]);
    cmd.env("OUT", &dir).env("X", "coffer://db/nope");
    let out = run_with_timeout(&mut cmd, b"", Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    assert!(!dir.join("ran").exists());

    // A missing command: 127, like a shell.
    let out = d.coffer(&["run", "--", "/nonexistent/cmd"], "");
    assert_eq!(out.status.code(), Some(127), "{out:?}");
}

#[test]
fn inject_fills_a_template_into_a_new_private_file() {
    let d = vault();
    let dir = d.dir.path().join("inject");
    std::fs::create_dir_all(&dir).unwrap();
    let template = dir.join("config.tpl");
    std::fs::write(
        &template,
        "user: {{ coffer://db/username }}\npass: {{coffer://Personal/db/password}}\nother: {{ .Values.x }}\n",
    )
    .unwrap();
    let expected = format!("user: dbadmin\npass: {DB_PW}\nother: {{{{ .Values.x }}}}\n");
    let out = dir.join("config.yml");
    let (t, o) = (template.to_str().unwrap(), out.to_str().unwrap());
    d.ok(&["inject", "-i", t, "-o", o], "");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), expected);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&out), 0o600);

    // Never overwritten silently; --force replaces it (still 0600).
    std::fs::write(&out, "keep me").unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = d.fails(&["inject", "-i", t, "-o", o], "", 2);
    assert!(err.contains("exists"), "{err}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "keep me");
    let j = d.json(&["inject", "-i", t, "-o", o, "--force", "--json"], "");
    assert_eq!(j["references"], 2);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), expected);
    assert_eq!(mode(&out), 0o600);

    // stdin to stdout; a bad reference writes nothing.
    assert_eq!(
        d.ok(&["inject"], "pw={{ coffer://db/password }}"),
        format!("pw={DB_PW}")
    );
    let bad = dir.join("bad.yml");
    d.fails(
        &["inject", "-o", bad.to_str().unwrap()],
        "{{ coffer://db/password }} {{ coffer://db/nope }}",
        5,
    );
    assert!(!bad.exists());
}
