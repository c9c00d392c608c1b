//! Unit tests of the command tree itself (`args.rs`).

use clap::{CommandFactory, Parser};

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
    crate::args::build_eagerly();
    Cli::command().debug_assert();
}

/// Every command path, from the whole tree.
fn paths(cmd: &clap::Command, path: Vec<String>, out: &mut Vec<Vec<String>>) {
    out.push(path.clone());
    for sub in cmd.get_subcommands() {
        let mut p = path.clone();
        p.push(sub.get_name().to_owned());
        paths(sub, p, out);
    }
}

/// What `coffer ARGS` prints when clap stops it (help, or a usage error).
fn rendered(args: &[String]) -> String {
    let argv = std::iter::once("coffer".to_owned()).chain(args.iter().cloned());
    match Cli::try_parse_from(argv) {
        Ok(_) => "parsed".to_owned(),
        Err(e) => format!("{:?}\n{}", e.kind(), e.render()),
    }
}

/// Building subcommands only when they run (`args::Lazy`) changes nothing
/// a user sees: help of every command and usage errors read the same as
/// from the tree built at once.
#[test]
fn help_and_errors_read_the_same_built_lazily() {
    let mut whole = {
        let eager = std::thread::spawn(|| {
            crate::args::build_eagerly();
            Cli::command()
        });
        eager.join().expect("eager tree")
    };
    whole.build();
    let mut all = Vec::new();
    paths(&whole, Vec::new(), &mut all);
    assert!(all.len() > 80, "{} command paths", all.len());
    let mut cases: Vec<Vec<String>> = Vec::new();
    for p in &all {
        for tail in [&["--help"][..], &["-h"], &["--no-such-flag"], &[]] {
            let mut c = p.clone();
            c.extend(tail.iter().map(|s| (*s).to_owned()));
            cases.push(c);
        }
    }
    cases.push(vec!["gett".into(), "x".into()]);
    cases.push(vec![
        "get".into(),
        "x".into(),
        "--fild".into(),
        "password".into(),
    ]);
    cases.push(vec!["--version".into()]);
    cases.push(vec!["team".into(), "--version".into()]);
    let lazy: Vec<String> = cases.iter().map(|c| rendered(c)).collect();
    let eager = {
        let cases = cases.clone();
        std::thread::spawn(move || {
            crate::args::build_eagerly();
            cases.iter().map(|c| rendered(c)).collect::<Vec<String>>()
        })
        .join()
        .expect("eager renders")
    };
    for ((case, l), e) in cases.iter().zip(&lazy).zip(&eager) {
        assert_eq!(l, e, "coffer {}", case.join(" "));
    }
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
