//! The web UI's files (built from `web/` by npm) at `/`: `index.html` and `/ui/*`. The
//! API works without them; then `/` says how to build the UI.

use axum::response::Html;
use axum::routing::get;
use std::path::{Path, PathBuf};

const NOT_BUILT: &str = "<!doctype html><title>Ferrox</title><h1>Ferrox</h1>\
<p>The web UI is not built on this node. Build it with <code>scripts/build-web.sh</code> \
(npm) and start the node with <code>--web-dir web/dist</code>; the API is at \
<a href=\"/api2/json\">/api2/json</a>.</p>";

/// Where the built UI is when `--web-dir` is not given: `FERROX_WEB_DIR`, the checkout's
/// `web/dist` (for a binary under `target/`), or `../share/ferrox/web` beside the binary.
pub fn default_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("FERROX_WEB_DIR") {
        return Some(PathBuf::from(dir));
    }
    let exe = std::env::current_exe().ok()?;
    let bin = exe.parent()?;
    let candidates = [bin.join("../../web/dist"), bin.join("../share/ferrox/web")];
    candidates
        .into_iter()
        .find(|d| d.join("index.html").is_file())
}

pub fn router(dir: Option<&Path>) -> axum::Router {
    match dir.filter(|d| d.join("index.html").is_file()) {
        Some(dir) => {
            let index = dir.join("index.html");
            axum::Router::new()
                .route_service("/", tower_http::services::ServeFile::new(index))
                .nest_service("/ui", tower_http::services::ServeDir::new(dir.join("ui")))
        }
        None => axum::Router::new().route("/", get(|| async { Html(NOT_BUILT) })),
    }
}
