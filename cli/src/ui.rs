//! `coffer ui`: the daemon's local web app. Asks cofferd for a one-time
//! token (`ui.open`), prints the address with the token in its fragment
//! (a fragment never travels to a server, and the page wipes it from the
//! address bar before it spends it), and opens a browser when this session
//! has a display. The token works once, for two minutes.

use clap::Args;
use coffer_ipc::methods as m;
use serde::Serialize;

use crate::{CliError, Ctx};

#[derive(Args, Debug)]
pub struct UiArgs {
    /// Print the address only; do not start a browser.
    #[arg(long)]
    pub no_open: bool,
}

#[derive(Serialize)]
struct Opened {
    url: String,
    opened: bool,
}

pub fn open(ctx: &mut Ctx, args: UiArgs) -> Result<(), CliError> {
    let r = ctx.call::<m::UiOpen>(&m::Empty {})?;
    let url = format!("{}#token={}", r.url, r.token);
    let opened = !args.no_open && !ctx.json && launch(&url);
    ctx.print(&Opened { url, opened }, |o| {
        println!("Coffer's web app (a one-time link, valid for two minutes):");
        println!("  {}", o.url);
        if o.opened {
            println!("Opened in your browser.");
        } else if !args.no_open {
            println!("No display here: open the link in a browser on this machine.");
        }
    });
    Ok(())
}

/// Starts the desktop's browser on `url` when there is a desktop; whether
/// it started. The token is on the opener's argv for the moment it runs:
/// it is single-use and spent by the page at once.
fn launch(url: &str) -> bool {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else if std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some()
    {
        "xdg-open"
    } else {
        return false;
    };
    std::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .is_ok()
}
