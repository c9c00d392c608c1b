//! Reading secrets: from a hidden prompt on a terminal, else from stdin.
//! Never from command-line arguments.

use std::io::{BufRead, IsTerminal, Read};

use zeroize::Zeroizing;

use crate::CliError;

/// A secret string, wiped from memory when dropped.
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(Zeroizing::new(value))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

pub fn stdin_is_tty() -> bool {
    std::io::stdin().is_terminal()
}

pub fn stdout_is_tty() -> bool {
    std::io::stdout().is_terminal()
}

fn read_stdin_line() -> Result<Secret, CliError> {
    let mut line = Zeroizing::new(String::new());
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| CliError::Other(format!("cannot read stdin: {e}")))?;
    Ok(Secret::new(line.trim_end_matches(['\n', '\r']).to_string()))
}

fn prompt(label: &str) -> Result<Secret, CliError> {
    rpassword::prompt_password(label)
        .map(Secret::new)
        .map_err(|e| CliError::Other(format!("cannot read from the terminal: {e}")))
}

/// The PIN: one stdin line with `from_stdin`, else a prompt (twice to confirm
/// a new one).
pub fn pin(from_stdin: bool, confirm: bool) -> Result<Secret, CliError> {
    pin_checked(from_stdin, confirm, |_| Ok(()))
}

/// A new PIN, which `check` (the daemon's rule, `pin.check`) judges after
/// it is typed once: a weak PIN is refused before it is asked for again.
/// From stdin it is not asked twice, and the daemon judges it when set.
pub fn new_pin(
    from_stdin: bool,
    check: impl FnOnce(&Secret) -> Result<(), CliError>,
) -> Result<Secret, CliError> {
    pin_checked(from_stdin, true, check)
}

fn pin_checked(
    from_stdin: bool,
    confirm: bool,
    check: impl FnOnce(&Secret) -> Result<(), CliError>,
) -> Result<Secret, CliError> {
    if from_stdin {
        return read_stdin_line();
    }
    if !stdin_is_tty() {
        return Err(CliError::Usage(
            "no terminal to ask for the PIN: pass --pin-stdin and give it on stdin".into(),
        ));
    }
    let pin = prompt("PIN: ")?;
    if confirm {
        check(&pin)?;
        let again = prompt("PIN again: ")?;
        if again.expose() != pin.expose() {
            return Err(CliError::Usage("the two PINs differ".into()));
        }
    }
    Ok(pin)
}

/// `coffer pin change`: the current PIN and the new one. On a terminal
/// (unless `from_stdin`) three hidden prompts (current, new, new again),
/// the new PIN judged by `check` (as [`new_pin`]) before it is asked for
/// again; else two stdin lines, the current PIN then the new one (the
/// daemon judges it when set).
pub fn pin_change(
    from_stdin: bool,
    check: impl FnOnce(&Secret) -> Result<(), CliError>,
) -> Result<(Secret, Secret), CliError> {
    if from_stdin || !stdin_is_tty() {
        let old = read_stdin_line()?;
        let new = read_stdin_line()?;
        if old.expose().is_empty() || new.expose().is_empty() {
            return Err(CliError::Usage(
                "expected two lines on stdin: the current PIN, then the new one".into(),
            ));
        }
        return Ok((old, new));
    }
    let old = prompt("Current PIN: ")?;
    let new = prompt("New PIN: ")?;
    check(&new)?;
    if prompt("New PIN again: ")?.expose() != new.expose() {
        return Err(CliError::Usage("the two new PINs differ".into()));
    }
    Ok((old, new))
}

/// The PIN asked again before `what` (an export or a backup): one stdin
/// line with `from_stdin`, else a hidden prompt; never from argv.
pub fn pin_again(from_stdin: bool, what: &str) -> Result<Secret, CliError> {
    if from_stdin {
        return read_stdin_line();
    }
    if !stdin_is_tty() {
        return Err(CliError::Usage(format!(
            "`coffer {what}` asks for the PIN again and there is no terminal to ask on: pass --pin-stdin and give it on stdin"
        )));
    }
    prompt(&format!("PIN (to confirm the {what}): "))
}

/// A backup passphrase: one stdin line with `from_stdin`, else a hidden
/// prompt (twice when making a backup).
pub fn passphrase(from_stdin: bool, confirm: bool) -> Result<Secret, CliError> {
    let value = if from_stdin {
        read_stdin_line()?
    } else if stdin_is_tty() {
        let value = prompt("Backup passphrase: ")?;
        if confirm && prompt("Passphrase again: ")?.expose() != value.expose() {
            return Err(CliError::Usage("the two passphrases differ".into()));
        }
        value
    } else {
        return Err(CliError::Usage(
            "no terminal to ask for the passphrase: pass --passphrase-stdin and give it on stdin"
                .into(),
        ));
    };
    if value.expose().is_empty() {
        return Err(CliError::Usage("the passphrase is empty".into()));
    }
    Ok(value)
}

/// Asks a yes/no question on the terminal; only `yes` (or `y`) agrees.
pub fn confirm(question: &str) -> Result<bool, CliError> {
    eprint!("{question}");
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| CliError::Other(format!("cannot read stdin: {e}")))?;
    Ok(matches!(
        line.trim().to_ascii_lowercase().as_str(),
        "yes" | "y"
    ))
}

/// Asks on the terminal to type `word` exactly; anything else declines.
pub fn confirm_word(question: &str, word: &str) -> Result<bool, CliError> {
    eprint!("{question}");
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| CliError::Other(format!("cannot read stdin: {e}")))?;
    Ok(line.trim() == word)
}

/// One secret line that may be empty (a KeePass database may have an empty
/// password): `None` when nothing was entered.
pub fn optional_secret_line(label: &str) -> Result<Option<Secret>, CliError> {
    let value = if stdin_is_tty() {
        prompt(label)?
    } else {
        read_stdin_line()?
    };
    Ok((!value.expose().is_empty()).then_some(value))
}

/// One secret line: a hidden prompt on a terminal (twice if `confirm`), else
/// the next stdin line. Empty is refused.
pub fn secret_line(label: &str, confirm: bool) -> Result<Secret, CliError> {
    let value = if stdin_is_tty() {
        let value = prompt(label)?;
        if confirm && prompt("Again: ")?.expose() != value.expose() {
            return Err(CliError::Usage("the two entries differ".into()));
        }
        value
    } else {
        read_stdin_line()?
    };
    if value.expose().is_empty() {
        return Err(CliError::Usage(format!(
            "{} is empty",
            label.trim_end_matches([' ', ':'])
        )));
    }
    Ok(value)
}

/// All of stdin (one trailing newline dropped); on a terminal, says what to type first.
pub fn all_stdin(label: &str) -> Result<Secret, CliError> {
    if stdin_is_tty() {
        eprintln!("{label}");
    }
    let mut text = Zeroizing::new(String::new());
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|e| CliError::Other(format!("cannot read stdin: {e}")))?;
    let trimmed = text.strip_suffix('\n').unwrap_or(&text);
    Ok(Secret::new(trimmed.to_string()))
}
