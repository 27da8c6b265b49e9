//! The dashboard: a web UI at `/`, made of plain ES modules and hand-written CSS in
//! `node/src/http/ui/`, embedded in the binary with `include_str!`.
//!
//! There is no build step, so what is served is exactly what is committed: reproducible by
//! construction, nothing fetched at run time (no CDN, no font, no external image). Assets
//! are under `/ui/<rev>/…`, where `<rev>` is a hash of all of them: a browser caches them for
//! good, and a new binary's page asks for new URLs. The page itself is never cached. A
//! strict Content-Security-Policy lets the page load only this node's own scripts and
//! styles and talk only to this node.

use std::sync::OnceLock;

use axum::{
    extract::Path,
    http::{header, HeaderValue},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use offgrid_api as api;

use super::{error::ApiError, AppState};

/// The assets: file name, content type, body.
const ASSETS: &[(&str, &str, &str)] = &[
    ("app.js", JS, include_str!("ui/app.js")),
    ("api.js", JS, include_str!("ui/api.js")),
    ("util.js", JS, include_str!("ui/util.js")),
    ("overview.js", JS, include_str!("ui/overview.js")),
    ("peers.js", JS, include_str!("ui/peers.js")),
    ("jobs.js", JS, include_str!("ui/jobs.js")),
    ("storage.js", JS, include_str!("ui/storage.js")),
    ("ledger.js", JS, include_str!("ui/ledger.js")),
    ("radio.js", JS, include_str!("ui/radio.js")),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("ui/style.css"),
    ),
    ("icon.svg", "image/svg+xml", include_str!("ui/icon.svg")),
];

const JS: &str = "text/javascript; charset=utf-8";
const INDEX: &str = include_str!("ui/index.html");

/// What the page may load and talk to: this node only.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// A short hash of every asset: the `<rev>` of their URLs.
pub fn rev() -> &'static str {
    static REV: OnceLock<String> = OnceLock::new();
    REV.get_or_init(|| {
        let mut h = blake3::Hasher::new();
        for (name, _, body) in ASSETS {
            h.update(name.as_bytes());
            h.update(&(body.len() as u64).to_le_bytes());
            h.update(body.as_bytes());
        }
        hex::encode(&h.finalize().as_bytes()[..6])
    })
}

/// The page with its asset URLs filled in.
fn index_html() -> &'static str {
    static PAGE: OnceLock<String> = OnceLock::new();
    PAGE.get_or_init(|| INDEX.replace("{REV}", rev()))
}

/// Bytes of the page and of every asset, for the size check and the report.
pub fn sizes() -> Vec<(&'static str, usize)> {
    let mut v = vec![("index.html", index_html().len())];
    v.extend(ASSETS.iter().map(|(n, _, b)| (*n, b.len())));
    v
}

/// The routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/ui/{rev}/{file}", get(asset))
}

fn with_headers(mut resp: Response, content_type: &'static str, cache: &'static str) -> Response {
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

#[utoipa::path(get, path = "/", tag = "dashboard",
    responses((status = 200, description = "The dashboard (HTML). Reading needs no token; actions ask for the bearer token once and keep it in the browser's session storage", content_type = "text/html", body = String)))]
pub(crate) async fn index() -> Response {
    let mut resp = with_headers(
        index_html().into_response(),
        "text/html; charset=utf-8",
        "no-cache",
    );
    resp.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    resp
}

#[utoipa::path(get, path = "/ui/{rev}/{file}", tag = "dashboard",
    params(("rev" = String, Path, description = "Revision of the assets (the page names it); an old one still gets today's asset, uncached"),
        ("file" = String, Path, description = "Asset file name, e.g. app.js")),
    responses((status = 200, description = "A script, the style sheet or the icon",
            content((String = "text/javascript"), (String = "text/css"), (String = "image/svg+xml"))),
        (status = 404, description = "No such asset (not_found)", body = api::ErrorBody)))]
pub(crate) async fn asset(Path((r, file)): Path<(String, String)>) -> Result<Response, ApiError> {
    let (_, ty, body) = ASSETS
        .iter()
        .find(|(n, _, _)| *n == file)
        .ok_or_else(|| ApiError::not_found(format!("no asset {file:?}")))?;
    let cache = if r == rev() {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    Ok(with_headers(body.into_response(), ty, cache))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The page names every script it needs by this build's revision, each module the
    /// scripts import is served, and the whole dashboard stays small for slow links.
    #[test]
    fn the_page_and_its_modules_resolve_and_stay_small() {
        let page = index_html();
        assert!(page.contains(&format!("/ui/{}/app.js", rev())), "{page}");
        assert!(!page.contains("{REV}"));
        for (name, _, body) in ASSETS {
            for line in body.lines().filter(|l| l.starts_with("import ")) {
                let target = line
                    .split(['\'', '"'])
                    .nth(1)
                    .and_then(|t| t.strip_prefix("./"))
                    .unwrap_or_else(|| panic!("{name}: import not relative: {line}"));
                assert!(
                    ASSETS.iter().any(|(n, _, _)| *n == target),
                    "{name} imports {target}, which is not served"
                );
            }
            // Nothing from elsewhere.
            for bad in ["http://", "https://", "//cdn", "@import url("] {
                let hits: Vec<&str> = body
                    .lines()
                    .filter(|l| l.contains(bad) && !l.contains("www.w3.org/2000/svg"))
                    .collect();
                assert!(hits.is_empty(), "{name} refers outside the node: {hits:?}");
            }
            assert!(body.lines().count() <= 600, "{name} is over 600 lines");
        }
        let total: usize = sizes().iter().map(|(_, n)| n).sum();
        assert!(total < 96 * 1024, "the dashboard weighs {total} bytes");
    }
}
