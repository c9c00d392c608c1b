//! Process hardening shared by `coffer` and `cofferd`, run first thing in
//! both `main`s: a core dump would hold whatever secret was in memory, and a
//! debugger of the same user could read it live.
//!
//! - Linux: the soft `RLIMIT_CORE` goes to 0 and `PR_SET_DUMPABLE` to 0 (no
//!   core file, no ptrace attach by other processes of the user, /proc/PID
//!   files such as `environ` readable by root only).
//! - macOS: the soft `RLIMIT_CORE` goes to 0 and `ptrace(PT_DENY_ATTACH)`
//!   refuses debuggers.
//!
//! Only the soft limit is lowered, so a program that `coffer run` starts can
//! be given the limit it would have had ([`CoreLimit::restore`]).

use std::io;

/// The core-dump limit this process had before [`harden`].
#[derive(Debug, Clone, Copy)]
pub struct CoreLimit {
    soft: libc::rlim_t,
}

impl CoreLimit {
    /// Sets the soft core limit back to what it was before [`harden`]. Meant
    /// for a child between fork and exec: it only calls `setrlimit`, which is
    /// async-signal-safe.
    pub fn restore(&self) -> io::Result<()> {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_CORE, &mut lim) != 0 {
                return Err(io::Error::last_os_error());
            }
            lim.rlim_cur = self.soft.min(lim.rlim_max);
            if libc::setrlimit(libc::RLIMIT_CORE, &lim) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

/// Turns core dumps (and, where the OS has it, debugger attachment) off for
/// this process. Returns the core limit it had, for children that should get
/// it back.
pub fn harden() -> io::Result<CoreLimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // Every step is tried even when one fails (a seccomp filter may refuse
    // setrlimit where the service manager already set the limit to 0); the
    // first failure is reported.
    let mut result = Ok(());
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    let prior = unsafe {
        if libc::getrlimit(libc::RLIMIT_CORE, &mut lim) != 0 {
            result = Err(io::Error::last_os_error());
        }
        let prior = CoreLimit { soft: lim.rlim_cur };
        if lim.rlim_cur != 0 {
            lim.rlim_cur = 0;
            if libc::setrlimit(libc::RLIMIT_CORE, &lim) != 0 && result.is_ok() {
                result = Err(io::Error::last_os_error());
            }
        }
        prior
    };
    #[cfg(any(target_os = "linux", target_os = "android"))]
    // SAFETY: PR_SET_DUMPABLE takes one integer argument and touches no memory.
    unsafe {
        if libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) != 0 && result.is_ok() {
            result = Err(io::Error::last_os_error());
        }
    }
    #[cfg(target_os = "macos")]
    // SAFETY: PT_DENY_ATTACH on ourselves takes no address and touches no memory.
    unsafe {
        if libc::ptrace(libc::PT_DENY_ATTACH, 0, std::ptr::null_mut(), 0) != 0 && result.is_ok() {
            result = Err(io::Error::last_os_error());
        }
    }
    result.map(|()| prior)
}

/// Whether this process may dump core (Linux: `PR_GET_DUMPABLE`); `None`
/// where the OS cannot tell.
pub fn dumpable() -> Option<bool> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        // SAFETY: PR_GET_DUMPABLE takes no argument and touches no memory.
        let v = unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) };
        Some(v > 0)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn harden_turns_core_dumps_off_and_restore_gives_the_limit_back() {
        let prior = super::harden().expect("harden");
        let mut lim = libc::rlimit {
            rlim_cur: 1,
            rlim_max: 1,
        };
        // SAFETY: getrlimit writes the struct we pass.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_CORE, &mut lim) }, 0);
        assert_eq!(lim.rlim_cur, 0);
        if cfg!(target_os = "linux") {
            assert_eq!(super::dumpable(), Some(false));
        }
        prior.restore().expect("restore");
        // SAFETY: as above.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_CORE, &mut lim) }, 0);
        assert_eq!(lim.rlim_cur, prior.soft.min(lim.rlim_max));
    }
}

/// Who is at the other end of a Unix socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    /// Its pid, where the platform tells (Linux).
    pub pid: Option<u32>,
}

/// The credentials of the process at the other end of `stream`.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn peer_of(stream: &std::os::unix::net::UnixStream) -> std::io::Result<Peer> {
    use std::os::fd::AsRawFd;
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: SO_PEERCRED writes at most `len` bytes into `cred`.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(Peer {
        uid: cred.uid,
        pid: (cred.pid > 0).then_some(cred.pid as u32),
    })
}

/// The credentials of the process at the other end of `stream`.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub fn peer_of(stream: &std::os::unix::net::UnixStream) -> std::io::Result<Peer> {
    use std::os::fd::AsRawFd;
    let (mut uid, mut gid) = (0, 0);
    // SAFETY: getpeereid writes the two ids of a connected socket.
    let rc = unsafe { libc::getpeereid(stream.as_raw_fd(), &mut uid, &mut gid) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(Peer { uid, pid: None })
}
