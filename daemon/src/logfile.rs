//! `cofferd --log-file PATH`: the daemon's stderr (its log, early errors and
//! panics alike) in a file that rotates by size, for the daemons no journal
//! collects (the one `coffer` starts itself, the launchd agent). Past
//! `max_bytes`, PATH becomes PATH.1 (replacing the previous PATH.1) and a
//! fresh PATH takes over file descriptor 2, so at most about twice
//! `max_bytes` stays on disk. Not a general logging framework: one file,
//! one old generation, size only. The log holds no secrets (the daemon
//! never logs them); the file is still created 0600.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Default size at which the log rotates.
pub const DEFAULT_MAX_BYTES: u64 = 4 << 20;

/// Writes to stderr, which it keeps pointed at a size-capped file.
#[derive(Debug)]
pub struct RotatingStderr {
    path: PathBuf,
    max_bytes: u64,
    size: u64,
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

/// Points file descriptor 2 at `file`.
fn onto_stderr(file: &File) -> io::Result<()> {
    // SAFETY: dup2 only duplicates a descriptor we own onto fd 2; the
    // original closes when `file` drops, fd 2 stays open.
    if unsafe { libc::dup2(file.as_raw_fd(), libc::STDERR_FILENO) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl RotatingStderr {
    /// Opens (appends to) `path` as this process's stderr, rotating first
    /// when it is already past `max_bytes`.
    pub fn open(path: &Path, max_bytes: u64) -> io::Result<Self> {
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        onto_stderr(&file)?;
        let mut log = RotatingStderr {
            path: path.to_path_buf(),
            max_bytes: max_bytes.max(1),
            size,
        };
        if size >= log.max_bytes {
            log.roll_over()?;
        }
        Ok(log)
    }

    /// The previous generation: PATH.1.
    pub fn old_path(path: &Path) -> PathBuf {
        let mut name = path.as_os_str().to_owned();
        name.push(".1");
        PathBuf::from(name)
    }

    fn roll_over(&mut self) -> io::Result<()> {
        let _ = io::stderr().flush();
        std::fs::rename(&self.path, Self::old_path(&self.path))?;
        let file = open_append(&self.path)?;
        onto_stderr(&file)?;
        self.size = 0;
        Ok(())
    }
}

impl Write for RotatingStderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.size > 0 && self.size + buf.len() as u64 > self.max_bytes {
            // A failed rotation keeps writing to the current file.
            let _ = self.roll_over();
        }
        io::stderr().write_all(buf)?;
        self.size += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}
