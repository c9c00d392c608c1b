//! Unit tests of the command tree itself (`args.rs`).

use clap::CommandFactory;

use crate::args::Cli;

/// Every command and every argument, hidden ones included, as (path, what's missing).
fn undocumented(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
    if cmd
        .get_about()
        .is_none_or(|a| a.to_string().trim().is_empty())
    {
        out.push(format!("`{path}` has no description"));
    }
    for arg in cmd.get_arguments() {
        let id = arg.get_id().as_str();
        if matches!(id, "help" | "version") {
            continue;
        }
        if arg
            .get_help()
            .is_none_or(|h| h.to_string().trim().is_empty())
        {
            out.push(format!("`{path}`: argument {id} has no help text"));
        }
    }
    for sub in cmd.get_subcommands() {
        if sub.get_name() == "help" {
            continue;
        }
        undocumented(sub, &format!("{path} {}", sub.get_name()), out);
    }
}

#[test]
fn every_command_and_argument_has_help_text() {
    let mut cmd = Cli::command();
    cmd.build();
    let mut missing = Vec::new();
    undocumented(&cmd, "coffer", &mut missing);
    assert!(missing.is_empty(), "missing help:\n{}", missing.join("\n"));
}

#[test]
fn the_command_tree_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn json_is_global() {
    let cmd = Cli::command();
    let json = cmd
        .get_arguments()
        .find(|a| a.get_id() == "json")
        .expect("--json");
    assert!(json.is_global_set());
}
