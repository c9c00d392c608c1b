//! Documentation generated from the command tree (`args.rs`): shell
//! completions (`coffer completion SHELL`, clap_complete) and man pages
//! (`coffer __man DIR`, clap_mangen; the package build runs it).

use std::path::Path;

use clap::CommandFactory;
use serde_json::json;

use crate::args::Cli;
use crate::{output, CliError};

/// Prints the completion script for `shell` (inside a JSON object with `--json`).
pub fn completion(shell: clap_complete::Shell, json: bool) -> Result<(), CliError> {
    crate::args::build_eagerly();
    let mut cmd = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "coffer", &mut script);
    if json {
        output::json(&json!({
            "shell": shell.to_string(),
            "script": String::from_utf8_lossy(&script),
        }));
    } else {
        use std::io::Write;
        std::io::stdout()
            .write_all(&script)
            .map_err(|e| CliError::Other(format!("cannot write the script: {e}")))?;
    }
    Ok(())
}

/// Writes `coffer.1` and one page per visible subcommand (`coffer-add-login.1`, ...) into `dir`.
pub fn man_pages(dir: &Path, json: bool) -> Result<(), CliError> {
    let fail =
        |e: std::io::Error| CliError::Other(format!("cannot write into {}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(fail)?;
    crate::args::build_eagerly();
    clap_mangen::generate_to(Cli::command(), dir).map_err(fail)?;
    let mut pages: Vec<String> = std::fs::read_dir(dir)
        .map_err(fail)?
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with("coffer") && n.ends_with(".1"))
        .collect();
    pages.sort();
    if json {
        output::json(&json!({ "dir": dir.display().to_string(), "pages": pages }));
    } else {
        println!("Wrote {} man pages into {}.", pages.len(), dir.display());
    }
    Ok(())
}
