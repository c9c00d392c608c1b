//! Origin binding: may an item's stored URL be filled into a page of a
//! given top-level origin? A pure function of the two strings (and of the
//! public-suffix list compiled into the `psl` crate), so the daemon and the
//! simulator decide alike, and the browser extension never decides.
//!
//! The rule (`docs/browser.md`, "What is filled when"):
//! 1. the page's origin is `http` or `https` with a host; anything else
//!    (`file:`, `data:`, an extension's page, an opaque origin) matches
//!    nothing;
//! 2. a stored URL without a scheme (`github.com/login`) means `https`;
//!    stored URLs of other schemes (`androidapp://`, `ftp://`) match nothing;
//! 3. scheme: equal, or an `http` item on an `https` page (an upgrade);
//!    **never an `https` item on an `http` page**;
//! 4. port: a port the stored URL names must be the page's; a stored URL
//!    without a port matches only the page scheme's default port;
//! 5. host: the *registrable domain* (public suffix + one label:
//!    `accounts.google.co.uk` → `google.co.uk`) must be equal; a host
//!    that has none (an IP address, `localhost`, a bare public suffix such
//!    as `github.io`) must be equal as a whole. Hosts are compared after
//!    IDNA/punycode normalisation by the `url` crate, so a look-alike
//!    (`examp1e.com`, `example.com.evil.net`, `exаmple.com` with a Cyrillic
//!    `а`) is another domain.

use url::{Host, Url};

/// The longest origin or stored URL looked at; longer ones match nothing.
pub const MAX_URL_LEN: usize = 2048;

/// Why a page origin is not one anything can be filled into.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OriginError {
    #[error("the page's origin is too long")]
    TooLong,
    #[error("the page's origin is not a URL: {0}")]
    NotAUrl(String),
    #[error("only http and https pages are filled, not {0}:")]
    Scheme(String),
    #[error("the page's origin has no host")]
    NoHost,
}

/// A top-level page's origin, parsed once and compared with many items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageOrigin {
    https: bool,
    host: String,
    /// The port, `None` for the scheme's default.
    port: Option<u16>,
    /// The registrable domain, `None` for an IP, `localhost`, a bare suffix.
    site: Option<String>,
}

impl PageOrigin {
    /// Parses a page's origin (`https://login.example.com[:port]`; a path,
    /// query or fragment is ignored).
    pub fn parse(origin: &str) -> Result<PageOrigin, OriginError> {
        if origin.len() > MAX_URL_LEN {
            return Err(OriginError::TooLong);
        }
        let url = Url::parse(origin).map_err(|e| OriginError::NotAUrl(e.to_string()))?;
        let https = match url.scheme() {
            "https" => true,
            "http" => false,
            other => return Err(OriginError::Scheme(other.to_string())),
        };
        let host = url.host().ok_or(OriginError::NoHost)?;
        let (host, site) = host_and_site(host);
        Ok(PageOrigin {
            https,
            host,
            port: url.port(),
            site,
        })
    }

    /// The origin as a browser serialises it (`https://host[:port]`).
    pub fn serialize(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        match self.port {
            Some(p) => format!("{scheme}://{}:{p}", self.host),
            None => format!("{scheme}://{}", self.host),
        }
    }

    /// Whether one stored URL may be filled into this page.
    pub fn matches(&self, stored: &str) -> bool {
        let Some(item) = StoredUrl::parse(stored) else {
            return false;
        };
        // Rule 3: never an https item on an http page.
        if item.https && !self.https {
            return false;
        }
        // Rule 4: a named port must be the page's; none means the page's
        // scheme's default port.
        if item.port != self.port {
            return false;
        }
        // Rule 5.
        match (&item.site, &self.site) {
            (Some(a), Some(b)) => a == b,
            _ => item.host == self.host,
        }
    }

    /// Whether any of an item's URLs may be filled into this page.
    pub fn matches_any<S: AsRef<str>>(&self, stored: &[S]) -> bool {
        stored.iter().any(|u| self.matches(u.as_ref()))
    }
}

struct StoredUrl {
    https: bool,
    host: String,
    port: Option<u16>,
    site: Option<String>,
}

impl StoredUrl {
    fn parse(stored: &str) -> Option<StoredUrl> {
        let stored = stored.trim();
        if stored.is_empty() || stored.len() > MAX_URL_LEN {
            return None;
        }
        // Rule 2: no scheme means https. `host:port` parses as a URL whose
        // scheme is the host, so look for `://` rather than trying first.
        let url = if stored.contains("://") {
            Url::parse(stored).ok()?
        } else {
            Url::parse(&format!("https://{stored}")).ok()?
        };
        let https = match url.scheme() {
            "https" => true,
            "http" => false,
            _ => return None,
        };
        let (host, site) = host_and_site(url.host()?);
        Some(StoredUrl {
            https,
            host,
            port: url.port(),
            site,
        })
    }
}

/// The host as text and its registrable domain, if it has one.
fn host_and_site(host: Host<&str>) -> (String, Option<String>) {
    match host {
        Host::Domain(d) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            let site = psl::domain_str(&d).map(str::to_string);
            (d, site)
        }
        Host::Ipv4(ip) => (ip.to_string(), None),
        Host::Ipv6(ip) => (format!("[{ip}]"), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fills(stored: &str, page: &str) -> bool {
        PageOrigin::parse(page).unwrap().matches(stored)
    }

    #[test]
    fn same_registrable_domain_fills() {
        assert!(fills("https://github.com/login", "https://github.com"));
        assert!(fills("github.com", "https://github.com"));
        assert!(fills("https://github.com", "https://gist.github.com"));
        assert!(fills(
            "https://accounts.google.co.uk/x",
            "https://mail.google.co.uk"
        ));
        assert!(fills("HTTPS://GitHub.COM.", "https://github.com"));
    }

    #[test]
    fn look_alikes_do_not_fill() {
        assert!(!fills("https://example.com", "https://examp1e.com"));
        assert!(!fills(
            "https://example.com",
            "https://example.com.evil.net"
        ));
        assert!(!fills("https://example.com", "https://example.co"));
        assert!(!fills("https://example.com", "https://myexample.com"));
        // A Cyrillic "а": punycode, another domain.
        assert!(!fills("https://example.com", "https://ex\u{430}mple.com"));
        assert!(!fills("https://co.uk", "https://evil.co.uk"));
    }

    #[test]
    fn public_suffix_hosts_are_sites_of_their_own() {
        assert!(fills("https://alice.github.io", "https://alice.github.io"));
        assert!(!fills("https://alice.github.io", "https://bob.github.io"));
        assert!(!fills("https://github.io", "https://bob.github.io"));
    }

    #[test]
    fn never_https_into_http() {
        assert!(!fills("https://bank.com", "http://bank.com"));
        assert!(!fills("bank.com", "http://bank.com"));
        // An http item on the https page is an upgrade.
        assert!(fills("http://bank.com", "https://bank.com"));
        assert!(fills("http://bank.com", "http://bank.com"));
    }

    #[test]
    fn ports_must_agree() {
        assert!(fills("http://127.0.0.1:8080/a", "http://127.0.0.1:8080"));
        assert!(!fills("http://127.0.0.1:8080", "http://127.0.0.1:8081"));
        assert!(!fills("https://bank.com", "https://bank.com:8443"));
        assert!(!fills("https://bank.com:8443", "https://bank.com"));
        assert!(fills("https://bank.com:443", "https://bank.com"));
    }

    #[test]
    fn addresses_and_localhost_match_exactly() {
        assert!(fills("http://localhost:3000", "http://localhost:3000"));
        assert!(!fills("http://127.0.0.1:3000", "http://localhost:3000"));
        assert!(!fills("http://10.0.0.1", "http://10.0.0.2"));
        assert!(fills("http://[::1]:80/x", "http://[::1]"));
    }

    #[test]
    fn other_schemes_and_garbage_match_nothing() {
        for page in [
            "file:///etc/passwd",
            "chrome-extension://abc/",
            "data:text/html,x",
        ] {
            assert!(PageOrigin::parse(page).is_err(), "{page}");
        }
        assert!(PageOrigin::parse("not a url").is_err());
        assert!(PageOrigin::parse(&format!("https://{}.com", "a".repeat(3000))).is_err());
        let page = PageOrigin::parse("https://bank.com").unwrap();
        for stored in [
            "",
            "  ",
            "androidapp://com.bank",
            "ftp://bank.com",
            "https://",
            "::::",
        ] {
            assert!(!page.matches(stored), "{stored:?}");
        }
        assert!(!page.matches_any::<&str>(&[]));
        assert!(page.matches_any(&["ftp://x", "bank.com"]));
    }

    #[test]
    fn serialises_like_a_browser() {
        let p = PageOrigin::parse("https://Login.Bank.com:443/path?q#f").unwrap();
        assert_eq!(p.serialize(), "https://login.bank.com");
        let p = PageOrigin::parse("http://127.0.0.1:8080/").unwrap();
        assert_eq!(p.serialize(), "http://127.0.0.1:8080");
    }
}
