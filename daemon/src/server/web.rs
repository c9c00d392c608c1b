//! The local web app: an HTTP server on a loopback address (axum) that
//! serves the embedded page and forwards its calls to [`Shared::dispatch`],
//! the very function the IPC server runs, so every decision (roles, schema,
//! the PIN) stays the replica's and the vault's. No second implementation:
//! this file only checks who is asking and translates HTTP to a method.
//!
//! Who may ask (`docs/security.md`, "The local web app"):
//! - every request: the `Host` header names this listener by its loopback
//!   address or `localhost` (DNS rebinding);
//! - without a session only the login page and its script are served;
//!   `POST /api/session` spends the one-time token `coffer ui` printed
//!   (in the URL fragment: never sent in a URL) for an `HttpOnly`,
//!   `SameSite=Strict` cookie and a CSRF token the page keeps in memory;
//! - every API call needs the cookie *and* the CSRF token in a header;
//!   a POST also a same-origin `Origin`. Cookies do not tell ports apart,
//!   so the header is what a page served by another local port lacks;
//! - every response carries a strict Content-Security-Policy (no inline
//!   script or style) and `no-store`;
//! - the sessions end when the vault locks (`sessions.rs`).
//!
//! Not here: the methods' logic (server.rs and its `*_rpc.rs`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use coffer_ipc::methods::{self as m, Method};
use coffer_ipc::{ErrorCode, Event, RpcError};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc};
use tracing::{info, warn};
use zeroize::Zeroizing;

use super::Shared;

pub(crate) mod sessions;
use sessions::{Secret, Sessions};

/// The session cookie's name, before the listener's port: browsers send a
/// host's cookies to all its ports, so two daemons on one machine (two
/// users, or tests) must not overwrite each other's.
const COOKIE: &str = "coffer_session_";
/// The header carrying the session's CSRF token.
const CSRF_HEADER: &str = "x-coffer-csrf";
/// The page's policy: our own scripts, styles and fetches only.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
    connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

/// The methods the web app may call; every other one is refused here.
/// Left out: creating or erasing a vault, joining, file paths on this
/// machine (`import` and `backup` name one: the page imports with
/// `import.data`, the file's bytes in the body, and `export` returns its
/// text, which the page saves as a download), the event subscription (SSE
/// instead).
pub(crate) const METHODS: &[&str] = &[
    m::Status::NAME,
    m::Unlock::NAME,
    m::Lock::NAME,
    m::FolderCreate::NAME,
    m::FolderList::NAME,
    m::FolderRename::NAME,
    m::FolderRemove::NAME,
    m::ItemAdd::NAME,
    m::ItemGet::NAME,
    m::ItemList::NAME,
    m::ItemListPage::NAME,
    m::ItemSearch::NAME,
    m::ItemEdit::NAME,
    m::ItemTrash::NAME,
    m::ItemRestore::NAME,
    m::ItemHistory::NAME,
    m::ItemMove::NAME,
    m::TotpGet::NAME,
    m::TotpSet::NAME,
    m::TrashEmpty::NAME,
    m::TeamShow::NAME,
    m::UserList::NAME,
    m::UserRemove::NAME,
    m::UserPromote::NAME,
    m::UserDemote::NAME,
    m::GroupCreate::NAME,
    m::GroupDelete::NAME,
    m::GroupAdd::NAME,
    m::GroupRemove::NAME,
    m::GroupList::NAME,
    m::FolderShare::NAME,
    m::FolderRole::NAME,
    m::FolderUnshare::NAME,
    m::FolderMembers::NAME,
    m::DeviceList::NAME,
    m::DeviceRevoke::NAME,
    m::Peers::NAME,
    m::SyncStatus::NAME,
    m::InviteCreate::NAME,
    m::InvitePending::NAME,
    m::InviteList::NAME,
    m::InviteCancel::NAME,
    m::InviteConfirm::NAME,
    m::InviteReject::NAME,
    // The activity view, and what the page did with a value it was
    // served (copied, revealed): the daemon decides whose records a
    // session may read, as for `coffer audit`.
    m::ImportData::NAME,
    m::Export::NAME,
    m::AuditQuery::NAME,
    m::AuditVerify::NAME,
    m::AuditNote::NAME,
];

const LOGIN_HTML: &str = include_str!("web/assets/login.html");
const APP_HTML: &str = include_str!("web/assets/app.html");

/// The embedded files: (name, content type, body, needs a session).
const ASSETS: &[(&str, &str, &str, bool)] = &[
    (
        "login.js",
        "text/javascript; charset=utf-8",
        include_str!("web/assets/login.js"),
        false,
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("web/assets/style.css"),
        false,
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("web/assets/app.js"),
        true,
    ),
];

struct Web {
    shared: Arc<Shared>,
    sessions: Sessions,
    /// The `Host` values this listener answers to.
    hosts: Vec<String>,
    /// The `Origin` values a POST may come from.
    origins: Vec<String>,
    /// This listener's cookie name.
    cookie: String,
}

/// The listener, bound before the daemon reports ready; `None` (with a
/// warning) when the address is taken or unusable: the daemon runs on
/// without its web app.
pub(crate) fn bind(addr: SocketAddr) -> Option<TcpListener> {
    let std = match std::net::TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            warn!(%addr, error = %e, "cannot serve the web app (is the port taken? --ui-listen ADDR or --no-ui); running without it");
            return None;
        }
    };
    if let Err(e) = std.set_nonblocking(true) {
        warn!(error = %e, "cannot serve the web app; running without it");
        return None;
    }
    match TcpListener::from_std(std) {
        Ok(l) => Some(l),
        Err(e) => {
            warn!(error = %e, "cannot serve the web app; running without it");
            None
        }
    }
}

/// `addr`, or the same address on a free port when its port is one the
/// swarm listens on: libp2p dials from its listen port, and a web app
/// holding that port on loopback made every dial fail (the chaos suite's
/// setup, where a device's peer port was 7374, never converged).
/// `coffer ui` asks the daemon for the address, so a moved port only
/// changes the link.
pub(crate) fn off_peer_ports(addr: SocketAddr, peer_ports: &[u16]) -> SocketAddr {
    if addr.port() != 0 && peer_ports.contains(&addr.port()) {
        warn!(%addr, "the web app's port is a peer-to-peer listen port: serving it on a free port instead (see --ui-listen)");
        SocketAddr::new(addr.ip(), 0)
    } else {
        addr
    }
}

/// The names a browser may use for `addr` in `Host` and `Origin`.
fn host_names(addr: SocketAddr) -> Vec<String> {
    let port = addr.port();
    let mut hosts = vec![format!("localhost:{port}")];
    hosts.push(match addr {
        SocketAddr::V4(a) => format!("{}:{port}", a.ip()),
        SocketAddr::V6(a) => format!("[{}]:{port}", a.ip()),
    });
    hosts
}

/// Serves the web app until the daemon stops (a task of its own).
pub(crate) fn spawn(listener: TcpListener, shared: Arc<Shared>, sessions: Sessions) {
    let Ok(addr) = listener.local_addr() else {
        warn!("the web app's listener has no address; running without it");
        return;
    };
    let hosts = host_names(addr);
    let origins = hosts.iter().map(|h| format!("http://{h}")).collect();
    let web = Arc::new(Web {
        shared,
        sessions,
        hosts,
        origins,
        cookie: format!("{COOKIE}{}", addr.port()),
    });
    let app = Router::new()
        .route("/", get(index))
        .route("/assets/{name}", get(asset))
        .route("/api/session", post(start_session))
        .route("/api/logout", post(logout))
        .route("/api/rpc", post(rpc))
        .route("/api/events", get(events))
        .fallback(not_found)
        .layer(axum::middleware::map_response(secure_headers))
        .with_state(web);
    info!(url = %format!("http://{addr}/"), "web app ready (open it with `coffer ui`)");
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            warn!(error = %e, "the web app stopped");
        }
    });
}

async fn secure_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// Why a request is refused, as the browser sees it (no detail that helps
/// an attacker beyond the status).
fn refuse(status: StatusCode, why: &'static str) -> Response {
    (status, axum::Json(json!({ "error": { "message": why } }))).into_response()
}

/// A refusal decided by a check, turned into a response by the handler.
struct Refused(StatusCode, &'static str);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        refuse(self.0, self.1)
    }
}

impl Web {
    fn host_ok(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .is_some_and(|h| self.hosts.iter().any(|ok| ok.eq_ignore_ascii_case(h)))
    }

    /// A state-changing request comes from our own page: `Origin` is ours,
    /// and `Sec-Fetch-Site`, when sent, says same-origin.
    fn origin_ok(&self, headers: &HeaderMap) -> bool {
        let origin = headers
            .get(header::ORIGIN)
            .and_then(|h| h.to_str().ok())
            .is_some_and(|o| self.origins.iter().any(|ok| ok.eq_ignore_ascii_case(o)));
        let site = headers
            .get("sec-fetch-site")
            .and_then(|h| h.to_str().ok())
            .is_none_or(|s| s == "same-origin");
        origin && site
    }

    /// The first check of every request.
    fn check_host(&self, headers: &HeaderMap) -> Result<(), Refused> {
        if self.host_ok(headers) {
            Ok(())
        } else {
            warn!("web request refused: foreign Host header");
            Err(Refused(StatusCode::MISDIRECTED_REQUEST, "unknown host"))
        }
    }

    /// Whether the request's cookie names a live session (pages only:
    /// the API also wants the CSRF token).
    async fn has_session(&self, headers: &HeaderMap) -> bool {
        match cookie(headers, &self.cookie) {
            Some(c) => self.sessions.live(c).await,
            None => false,
        }
    }

    /// An API call: host, the session cookie and its CSRF token, and for a
    /// POST a same-origin `Origin`.
    async fn check_api(&self, headers: &HeaderMap, post: bool) -> Result<Secret, Refused> {
        self.check_host(headers)?;
        if post && !self.origin_ok(headers) {
            warn!("web request refused: cross-origin");
            return Err(Refused(StatusCode::FORBIDDEN, "cross-origin request"));
        }
        let Some(cookie) = cookie(headers, &self.cookie) else {
            return Err(Refused(StatusCode::UNAUTHORIZED, "no session"));
        };
        let csrf = headers.get(CSRF_HEADER).and_then(|h| h.to_str().ok());
        if !self.sessions.check(cookie.clone(), csrf).await {
            return Err(Refused(StatusCode::UNAUTHORIZED, "no session"));
        }
        Ok(cookie)
    }
}

/// The session cookie's value, if the request has one.
fn cookie(headers: &HeaderMap, name: &str) -> Option<Secret> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(';'))
        .find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == name && !v.is_empty()).then(|| Zeroizing::new(v.to_string()))
        })
}

fn html(body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

async fn index(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    if let Err(r) = web.check_host(&headers) {
        return r.into_response();
    }
    if web.has_session(&headers).await {
        html(APP_HTML)
    } else {
        html(LOGIN_HTML)
    }
}

async fn asset(
    State(web): State<Arc<Web>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = web.check_host(&headers) {
        return r.into_response();
    }
    let Some((_, kind, body, private)) = ASSETS.iter().find(|a| a.0 == name) else {
        return not_found().await;
    };
    if *private && !web.has_session(&headers).await {
        return refuse(StatusCode::UNAUTHORIZED, "no session");
    }
    ([(header::CONTENT_TYPE, *kind)], *body).into_response()
}

async fn not_found() -> Response {
    refuse(StatusCode::NOT_FOUND, "not found")
}

#[derive(Deserialize)]
struct TokenBody {
    token: String,
}

async fn start_session(State(web): State<Arc<Web>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = web.check_host(&headers) {
        return r.into_response();
    }
    if !web.origin_ok(&headers) {
        warn!("web login refused: cross-origin");
        return refuse(StatusCode::FORBIDDEN, "cross-origin request");
    }
    let Ok(TokenBody { token }) = serde_json::from_slice::<TokenBody>(&body) else {
        return refuse(StatusCode::BAD_REQUEST, "expected {\"token\": ...}");
    };
    let token = Zeroizing::new(token);
    match web.sessions.redeem(token).await {
        Ok(Some(started)) => {
            info!("web session started");
            let set = format!(
                "{}={}; HttpOnly; SameSite=Strict; Path=/",
                web.cookie,
                started.cookie.as_str()
            );
            let Ok(set) = HeaderValue::from_str(&set) else {
                return refuse(StatusCode::INTERNAL_SERVER_ERROR, "cookie");
            };
            let mut response = axum::Json(json!({ "csrf": started.csrf.as_str() })).into_response();
            response.headers_mut().insert(header::SET_COOKIE, set);
            response
        }
        Ok(None) => {
            warn!("web login refused: unknown, spent or expired token");
            refuse(
                StatusCode::UNAUTHORIZED,
                "this link was used or has expired: run `coffer ui` again",
            )
        }
        Err(_) => refuse(StatusCode::SERVICE_UNAVAILABLE, "shutting down"),
    }
}

async fn logout(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    match web.check_api(&headers, true).await {
        Ok(cookie) => {
            web.sessions.end(cookie).await;
            let mut response = axum::Json(json!({})).into_response();
            response.headers_mut().insert(
                header::SET_COOKIE,
                HeaderValue::from_static(
                    "coffer_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0",
                ),
            );
            response
        }
        Err(r) => r.into_response(),
    }
}

#[derive(Deserialize)]
struct Call {
    method: String,
    #[serde(default)]
    params: Value,
}

/// One method call: the same `Shared::dispatch` as a socket request, on
/// the blocking pool.
async fn rpc(State(web): State<Arc<Web>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = web.check_api(&headers, true).await {
        return r.into_response();
    }
    let Ok(call) = serde_json::from_slice::<Call>(&body) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "expected {\"method\": ..., \"params\": ...}",
        );
    };
    if !METHODS.contains(&call.method.as_str()) {
        return error_reply(RpcError::new(
            ErrorCode::MethodNotFound,
            format!("{:?} is not available in the web app", call.method),
        ));
    }
    let shared = web.shared.clone();
    let done = tokio::task::spawn_blocking(move || {
        // Progress notes are for the CLI's long imports: none here.
        let (progress, _) = mpsc::channel(1);
        shared.dispatch(&call.method, call.params, progress)
    })
    .await;
    match done {
        Ok(Ok(result)) => axum::Json(json!({ "result": result })).into_response(),
        Ok(Err(e)) => error_reply(e),
        Err(_) => error_reply(RpcError::new(ErrorCode::Internal, "request handler failed")),
    }
}

fn error_reply(e: RpcError) -> Response {
    let status = match e.code {
        c if c == ErrorCode::PermissionDenied as i64 => StatusCode::FORBIDDEN,
        _ => StatusCode::OK,
    };
    (
        status,
        axum::Json(json!({ "error": { "code": e.code, "message": e.message } })),
    )
        .into_response()
}

/// Server-sent events from the daemon's event bus, while the session
/// lives: a lock is sent, then the stream ends (so does the session); a
/// session ended otherwise (logout, a lagging bus) ends it at its next event.
async fn events(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    let cookie = match web.check_api(&headers, false).await {
        Ok(cookie) => cookie,
        Err(r) => return r.into_response(),
    };
    let rx = web.shared.events.subscribe();
    let sessions = web.sessions.clone();
    let state = (rx, false, sessions, cookie);
    let stream = futures::stream::unfold(state, |(mut rx, ended, sessions, cookie)| async move {
        if ended {
            return None;
        }
        let (sse, locked) = match rx.recv().await {
            Ok(event) => {
                let locked = matches!(event, Event::LockState { locked: true, .. });
                if !locked && !sessions.live(cookie.clone()).await {
                    return None;
                }
                let data = serde_json::to_string(&event).unwrap_or_else(|_| "{}".into());
                (SseEvent::default().event("event").data(data), locked)
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {
                (SseEvent::default().event("lagged").data("{}"), false)
            }
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        Some((
            Ok::<_, std::convert::Infallible>(sse),
            (rx, locked, sessions, cookie),
        ))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_web_app_keeps_off_the_peer_ports() {
        let addr: SocketAddr = "127.0.0.1:7374".parse().expect("addr");
        assert_eq!(off_peer_ports(addr, &[7373]), addr);
        assert_eq!(off_peer_ports(addr, &[7373, 7374]).port(), 0);
        let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        assert_eq!(off_peer_ports(any, &[0]), any);
    }

    #[test]
    fn hosts_and_origins_name_the_listener_only() {
        let hosts = host_names("127.0.0.1:7374".parse().expect("addr"));
        assert_eq!(hosts, ["localhost:7374", "127.0.0.1:7374"]);
        let v6 = host_names("[::1]:80".parse().expect("addr"));
        assert_eq!(v6, ["localhost:80", "[::1]:80"]);
    }
}
