//! Secret references, as `op read|run|inject` have them:
//! `coffer://[FOLDER/]ITEM/FIELD` names one field of one item.
//!
//! - `coffer read REF` prints the value.
//! - `coffer run [--env-file F] -- CMD` gives CMD an environment where every
//!   variable whose whole value is a reference holds the field's value
//!   instead. The values go into the child's environment only (execve's
//!   envp): never into this process's environment nor any argv. The child's
//!   stdout and stderr pass through a [`Masker`] that replaces each value.
//! - `coffer inject` replaces `{{ coffer://... }}` in a template.
//!
//! Segments are percent-decoded (`%2F` for a `/` in a name). FIELD is any
//! field `coffer get --field` knows, or `totp-code` for the current code.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};

use coffer_ipc::methods as m;
use serde_json::json;
use zeroize::Zeroizing;

use crate::args::{InjectArgs, RunArgs};
use crate::{output, CliError, Ctx};

const SCHEME: &str = "coffer://";
/// What replaces a resolved value in `coffer run`'s output.
pub const MASK: &[u8] = b"<concealed by coffer>";
/// Longest template `coffer inject` reads.
const MAX_TEMPLATE_BYTES: u64 = 16 << 20;

/// A parsed `coffer://[FOLDER/]ITEM/FIELD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub folder: Option<String>,
    pub item: String,
    pub field: String,
}

impl Reference {
    pub fn is_reference(text: &str) -> bool {
        text.starts_with(SCHEME)
    }

    pub fn parse(text: &str) -> Result<Reference, CliError> {
        let bad = |why: &str| {
            CliError::Usage(format!(
                "{text:?} is not a secret reference ({why}): write coffer://FOLDER/ITEM/FIELD or coffer://ITEM/FIELD"
            ))
        };
        let rest = text
            .strip_prefix(SCHEME)
            .ok_or_else(|| bad("it must start with coffer://"))?;
        let segments: Vec<&str> = rest.split('/').collect();
        if segments.iter().any(|s| s.trim().is_empty()) {
            return Err(bad("a segment is empty"));
        }
        let decode = |s: &str| -> Result<String, CliError> {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| bad("a %-escape is not UTF-8"))
        };
        match segments.as_slice() {
            [item, field] => Ok(Reference {
                folder: None,
                item: decode(item)?,
                field: decode(field)?,
            }),
            [folder, item, field] => Ok(Reference {
                folder: Some(decode(folder)?),
                item: decode(item)?,
                field: decode(field)?,
            }),
            _ => Err(bad("it needs 2 or 3 segments")),
        }
    }
}

/// Resolves references against the daemon, fetching each item once.
struct Resolver<'a> {
    ctx: &'a mut Ctx,
    items: BTreeMap<(Option<String>, String), m::ItemView>,
}

impl<'a> Resolver<'a> {
    fn new(ctx: &'a mut Ctx) -> Self {
        Resolver {
            ctx,
            items: BTreeMap::new(),
        }
    }

    fn resolve(&mut self, text: &str) -> Result<Zeroizing<String>, CliError> {
        let r = Reference::parse(text)?;
        let key = (r.folder.clone(), r.item.clone());
        if !self.items.contains_key(&key) {
            let query = match &r.folder {
                Some(folder) => format!("{folder}/{}", r.item),
                None => r.item.clone(),
            };
            let view = self.ctx.call::<m::ItemGet>(&m::ItemRef::live(query))?;
            // The item must be in the folder named, whatever matched it.
            if let Some(folder) = &r.folder {
                let lower = folder.to_lowercase();
                let by_id = lower.len() >= 4 && view.folder_id.starts_with(&lower);
                if !(view.folder.eq_ignore_ascii_case(folder) || by_id) {
                    return Err(not_found(format!(
                        "{text}: no item {:?} in folder {folder:?}",
                        r.item
                    )));
                }
            }
            self.items.insert(key.clone(), view);
        }
        let view = &self.items[&key];
        if r.field == "totp-code" {
            let code = self.ctx.call::<m::TotpGet>(&m::TotpParams {
                item: view.id.clone(),
                at: None,
            })?;
            return Ok(Zeroizing::new(code.code));
        }
        let value = output::field_value(view, &r.field)?;
        let item = view.id.clone();
        crate::audit::note(self.ctx, "secret-read", &item, &r.field);
        Ok(value)
    }
}

fn not_found(message: String) -> CliError {
    CliError::Rpc(coffer_ipc::RpcError::new(
        coffer_ipc::ErrorCode::NotFound,
        message,
    ))
}

/// `coffer read REF`.
pub fn read(ctx: &mut Ctx, reference: &str, no_newline: bool) -> Result<(), CliError> {
    let json = ctx.json;
    let value = Resolver::new(ctx).resolve(reference)?;
    if json {
        output::json(&json!({ "reference": reference, "value": *value }));
    } else if no_newline {
        print!("{}", *value);
        let _ = std::io::stdout().flush();
    } else {
        println!("{}", *value);
    }
    Ok(())
}

/// Parses one env file: `KEY=VALUE` lines, `#` comments, blank lines, an
/// optional `export ` prefix, values optionally in single or double quotes.
pub fn parse_env_file(text: &str, path: &Path) -> Result<Vec<(String, String)>, CliError> {
    let mut vars = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        let (key, value) = line.split_once('=').ok_or_else(|| {
            CliError::Usage(format!("{}:{}: expected KEY=VALUE", path.display(), n + 1))
        })?;
        let key = key.trim();
        let valid_key = !key.is_empty()
            && !key.starts_with(|c: char| c.is_ascii_digit())
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_key {
            return Err(CliError::Usage(format!(
                "{}:{}: {key:?} is not a variable name",
                path.display(),
                n + 1
            )));
        }
        let value = value.trim();
        let value = ['"', '\'']
            .iter()
            .find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)))
            .unwrap_or(value);
        vars.push((key.to_string(), value.to_string()));
    }
    Ok(vars)
}

/// Replaces every occurrence of any of a set of secrets in a byte stream,
/// holding back only a tail that could still become one.
pub struct Masker {
    /// Longest first, so the longest secret wins where two overlap.
    secrets: Vec<Zeroizing<Vec<u8>>>,
    pending: Zeroizing<Vec<u8>>,
}

impl Masker {
    pub fn new<'s>(secrets: impl IntoIterator<Item = &'s [u8]>) -> Masker {
        let mut secrets: Vec<Zeroizing<Vec<u8>>> = secrets
            .into_iter()
            .filter(|s| !s.is_empty())
            .map(|s| Zeroizing::new(s.to_vec()))
            .collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Masker {
            secrets,
            pending: Zeroizing::new(Vec::new()),
        }
    }

    /// Feeds `data`; returns what can be written now.
    pub fn push(&mut self, data: &[u8]) -> Vec<u8> {
        self.pending.extend_from_slice(data);
        self.scan(false)
    }

    /// At the end of the stream: everything left, masked.
    pub fn finish(&mut self) -> Vec<u8> {
        self.scan(true)
    }

    fn scan(&mut self, last: bool) -> Vec<u8> {
        let buf = &self.pending;
        let mut out = Vec::with_capacity(buf.len());
        let mut i = 0;
        while i < buf.len() {
            let rest = &buf[i..];
            if let Some(s) = self.secrets.iter().find(|s| rest.starts_with(s)) {
                out.extend_from_slice(MASK);
                i += s.len();
                continue;
            }
            if !last
                && self
                    .secrets
                    .iter()
                    .any(|s| s.len() > rest.len() && s.starts_with(rest))
            {
                break;
            }
            out.push(buf[i]);
            i += 1;
        }
        self.pending.drain(..i);
        out
    }
}

/// Copies `from` to `to` through a [`Masker`] (or straight when `secrets` is empty).
fn pump(
    mut from: impl Read,
    mut to: impl Write,
    secrets: Vec<Zeroizing<Vec<u8>>>,
) -> std::io::Result<()> {
    let mut masker = Masker::new(secrets.iter().map(|s| s.as_slice()));
    let mut buf = [0u8; 8192];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&masker.push(&buf[..n]))?;
        to.flush()?;
    }
    to.write_all(&masker.finish())?;
    to.flush()
}

/// The child `coffer run` waits for, for the signal forwarder.
static CHILD_PID: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward_signal(sig: libc::c_int) {
    let pid = CHILD_PID.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe; pid is our own unreaped child.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// `coffer run`: returns the child's exit code (128+N for signal N).
pub fn run(
    ctx: &mut Ctx,
    args: RunArgs,
    core_limit: Option<coffer_ipc::process::CoreLimit>,
) -> Result<u8, CliError> {
    // What the child gets on top of the inherited environment.
    let mut set: Vec<(OsString, Zeroizing<String>)> = Vec::new();
    let mut secrets: Vec<Zeroizing<Vec<u8>>> = Vec::new();
    let mut resolver = Resolver::new(ctx);
    for (key, value) in std::env::vars_os() {
        if let Some(text) = value.to_str().filter(|v| Reference::is_reference(v)) {
            let resolved = resolver.resolve(text)?;
            secrets.push(Zeroizing::new(resolved.as_bytes().to_vec()));
            set.push((key, resolved));
        }
    }
    for path in &args.env_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", path.display())))?;
        for (key, value) in parse_env_file(&text, path)? {
            let value = if Reference::is_reference(&value) {
                let resolved = resolver.resolve(&value)?;
                secrets.push(Zeroizing::new(resolved.as_bytes().to_vec()));
                resolved
            } else {
                Zeroizing::new(value)
            };
            set.retain(|(k, _)| k != key.as_str());
            set.push((key.into(), value));
        }
    }
    // The daemon connection is not the child's business.
    drop(resolver);
    ctx.client = None;

    let (program, rest) = args
        .command
        .split_first()
        .ok_or_else(|| CliError::Usage("name the command to run after --".into()))?;
    let mut cmd = Command::new(program);
    cmd.args(rest);
    for (k, v) in &set {
        cmd.env(k, v.as_str());
    }
    let mask = !args.no_masking && !secrets.is_empty();
    if mask {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    }
    if let Some(limit) = core_limit {
        // SAFETY: CoreLimit::restore only calls getrlimit/setrlimit, which are
        // async-signal-safe.
        unsafe {
            cmd.pre_exec(move || limit.restore());
        }
    }
    let mut child = cmd.spawn().map_err(|source| CliError::Spawn {
        command: program.to_string_lossy().into_owned(),
        source,
    })?;
    drop(set);
    CHILD_PID.store(child.id() as i32, Ordering::SeqCst);
    // Ctrl-C reaches the child through the terminal's process group: this
    // process stays to pass the rest of its output on. SIGTERM and SIGHUP
    // sent to this process go on to the child.
    // SAFETY: installing handlers after the spawn, so the child keeps the
    // default dispositions; the handler only calls kill.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGQUIT, libc::SIG_IGN);
        let handler = forward_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        libc::signal(libc::SIGTERM, handler);
        libc::signal(libc::SIGHUP, handler);
    }
    let mut pumps = Vec::new();
    if mask {
        if let Some(out) = child.stdout.take() {
            let s = secrets.clone();
            pumps.push(std::thread::spawn(move || pump(out, std::io::stdout(), s)));
        }
        if let Some(err) = child.stderr.take() {
            let s = secrets.clone();
            pumps.push(std::thread::spawn(move || pump(err, std::io::stderr(), s)));
        }
    }
    drop(secrets);
    let status = child.wait();
    // Reaped: its pid may be reused, so nothing more is forwarded to it.
    CHILD_PID.store(0, Ordering::SeqCst);
    let status =
        status.map_err(|e| CliError::Other(format!("cannot wait for the command: {e}")))?;
    for p in pumps {
        // A closed stdout (`| head`) is not our error.
        let _ = p.join();
    }
    Ok(match (status.code(), status.signal()) {
        (Some(code), _) => code.clamp(0, 255) as u8,
        (None, Some(sig)) => (128 + sig).clamp(0, 255) as u8,
        _ => crate::exit::ERROR,
    })
}

/// Replaces every `{{ coffer://... }}` in `template`; returns the text and
/// how many references it had. Other `{{ ... }}` are left alone.
pub fn render(
    template: &str,
    mut resolve: impl FnMut(&str) -> Result<Zeroizing<String>, CliError>,
) -> Result<(Zeroizing<String>, usize), CliError> {
    let mut out = Zeroizing::new(String::with_capacity(template.len()));
    let mut rest = template;
    let mut count = 0;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            if after.trim_start().starts_with(SCHEME) {
                return Err(CliError::Usage(
                    "the template has a {{ coffer://... without its closing }}".into(),
                ));
            }
            out.push_str(&rest[start..]);
            rest = "";
            break;
        };
        let inner = after[..end].trim();
        if Reference::is_reference(inner) {
            out.push_str(&resolve(inner)?);
            count += 1;
        } else {
            out.push_str(&rest[start..start + 2 + end + 2]);
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok((out, count))
}

/// Writes `bytes` to `path` through a new 0600 file beside it, renamed over `path`.
fn replace_private_file(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    use std::os::unix::fs::OpenOptionsExt;
    let fail = |e: std::io::Error| CliError::Other(format!("cannot write {}: {e}", path.display()));
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| CliError::Usage(format!("{} is not a file name", path.display())))?;
    let suffix: u64 = rand::random();
    let tmp = dir.join(format!(".{}.{suffix:016x}.tmp", name.to_string_lossy()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(fail)
}

/// `coffer inject`.
pub fn inject(ctx: &mut Ctx, args: InjectArgs) -> Result<(), CliError> {
    let json = ctx.json;
    let mut template = Zeroizing::new(String::new());
    let read = match &args.input {
        Some(path) => std::fs::File::open(path)
            .and_then(|f| f.take(MAX_TEMPLATE_BYTES).read_to_string(&mut template))
            .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", path.display()))),
        None => std::io::stdin()
            .take(MAX_TEMPLATE_BYTES)
            .read_to_string(&mut template)
            .map_err(|e| CliError::Usage(format!("cannot read the template from stdin: {e}"))),
    };
    read?;
    // Refuse before resolving anything: an existing file is never replaced silently.
    if let Some(path) = &args.output {
        if !args.force && std::fs::symlink_metadata(path).is_ok() {
            return Err(CliError::Usage(format!(
                "{} exists: remove it, choose another name, or pass --force",
                path.display()
            )));
        }
    }
    let mut resolver = Resolver::new(ctx);
    let (text, count) = render(&template, |r| resolver.resolve(r))?;
    match &args.output {
        Some(path) => {
            if args.force {
                replace_private_file(path, text.as_bytes())?;
            } else {
                output::write_new_private_file(path, text.as_bytes())?;
            }
            if json {
                output::json(&json!({
                    "output": path.display().to_string(),
                    "references": count,
                }));
            } else {
                eprintln!(
                    "Wrote {} with {count} secret(s) filled in (mode 0600).",
                    path.display()
                );
            }
        }
        None if json => output::json(&json!({
            "output": null,
            "references": count,
            "text": *text,
        })),
        None => {
            std::io::stdout()
                .write_all(text.as_bytes())
                .map_err(|e| CliError::Other(format!("cannot write the output: {e}")))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(secrets: &[&str], chunks: &[&str]) -> String {
        let mut m = Masker::new(secrets.iter().map(|s| s.as_bytes()));
        let mut out = Vec::new();
        for c in chunks {
            out.extend(m.push(c.as_bytes()));
        }
        out.extend(m.finish());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn masker_masks_across_chunk_boundaries() {
        let c = "<concealed by coffer>";
        assert_eq!(
            masked(&["hunter2"], &["pw=hunt", "er2!"]),
            format!("pw={c}!")
        );
        assert_eq!(masked(&["hunter2"], &["hunter", "", "2"]), c);
        assert_eq!(masked(&["hunter2"], &["hunte"]), "hunte");
        assert_eq!(masked(&["abcdef", "cd"], &["abcd"]), format!("ab{c}"));
        assert_eq!(masked(&["abcdef", "cd"], &["abcdef"]), c);
        assert_eq!(masked(&["x"], &["xax"]), format!("{c}a{c}"));
        assert_eq!(masked(&[], &["plain"]), "plain");
        assert_eq!(masked(&[""], &["plain"]), "plain");
    }

    #[test]
    fn masker_holds_back_only_a_possible_prefix() {
        let mut m = Masker::new([b"secret".as_slice()]);
        assert_eq!(m.push(b"Password: "), b"Password: ");
        assert_eq!(m.push(b"sec"), b"");
        assert_eq!(m.push(b"ond"), b"second");
    }

    #[test]
    fn references_parse() {
        let r = Reference::parse("coffer://Personal/git%2Fhub/password").unwrap();
        assert_eq!(r.folder.as_deref(), Some("Personal"));
        assert_eq!(r.item, "git/hub");
        assert_eq!(r.field, "password");
        let r = Reference::parse("coffer://github/username").unwrap();
        assert_eq!((r.folder, r.item.as_str()), (None, "github"));
        for bad in [
            "op://a/b/c",
            "coffer://a",
            "coffer://a//c",
            "coffer://a/b/c/d",
            "coffer:///b",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn env_files_parse() {
        let text = "# comment\n\nexport A=1\nB = \"two words\"\nC='coffer://x/y'\nD=\n";
        let vars = parse_env_file(text, Path::new("f")).unwrap();
        assert_eq!(
            vars,
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "two words".into()),
                ("C".into(), "coffer://x/y".into()),
                ("D".into(), "".into()),
            ]
        );
        assert!(parse_env_file("NOEQUALS\n", Path::new("f")).is_err());
        assert!(parse_env_file("1A=x\n", Path::new("f")).is_err());
    }

    #[test]
    fn templates_render() {
        let (text, n) = render(
            "user={{coffer://a/user}} pw={{ coffer://a/pw }} keep={{ other }}",
            |r| Ok(Zeroizing::new(format!("<{r}>"))),
        )
        .unwrap();
        assert_eq!(
            &*text,
            "user=<coffer://a/user> pw=<coffer://a/pw> keep={{ other }}"
        );
        assert_eq!(n, 2);
        assert!(render("x {{ coffer://a/b", |_| Ok(Zeroizing::new(String::new()))).is_err());
        let (text, n) = render("{{ unclosed", |_| unreachable!()).unwrap();
        assert_eq!((text.as_str(), n), ("{{ unclosed", 0));
    }
}
