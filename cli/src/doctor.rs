//! `coffer doctor`: a checklist of why this laptop and another may not see
//! each other. The daemon gathers the facts (the `doctor` method), the
//! decisions are `coffer_ipc::doctor::diagnose`; this prints them. It never
//! starts cofferd: a daemon that is not running is the first finding.

use coffer_ipc::doctor::{self, Report};
use coffer_ipc::methods as m;
use coffer_ipc::Client;

use crate::{output, CliError, Ctx};

/// Runs the checks and prints the report; `Err(Problems)` (exit 22) after
/// printing it when a check found a problem.
pub fn doctor(ctx: &mut Ctx) -> Result<(), CliError> {
    let report = match Client::connect(&ctx.target.socket) {
        Err(e) => {
            doctor::daemon_unreachable(&ctx.target.socket.display().to_string(), &e.to_string())
        }
        Ok(client) => {
            ctx.client = Some(client);
            let facts = ctx.call::<m::Doctor>(&m::Empty {})?;
            Report::new(doctor::diagnose(&facts), Some(facts))
        }
    };
    if ctx.json {
        output::json(&report);
    } else {
        print(&report);
    }
    if report.ok {
        Ok(())
    } else {
        Err(CliError::Problems(report.problems))
    }
}

fn print(report: &Report) {
    for c in &report.checks {
        println!("[{:^4}] {}: {}", c.verdict.label(), c.title, c.detail);
        if let Some(next) = &c.next {
            println!("       next: {next}");
        }
    }
    if report.ok {
        println!("No problem found.");
    } else {
        println!(
            "{} problem{} found.",
            report.problems,
            if report.problems == 1 { "" } else { "s" }
        );
    }
}
