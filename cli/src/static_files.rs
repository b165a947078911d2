//! Static files for every `syncws` server (`--static DIR`): `GET` and
//! `HEAD` of the files under one folder, on the same port as the
//! WebSocket.
//!
//! Nothing outside the folder is ever served. The request path is
//! percent-decoded once, then split on `/`; a `..` segment (written
//! plainly or as `%2e%2e`) is refused with 403, and segments starting
//! with a dot (`.git`, `.env`) are not served (404). The file found is
//! then resolved with its symbolic links and must still lie under the
//! folder (also resolved once, at start): a link that leads out is
//! refused with 403. A folder serves its `index.html`; a folder asked
//! without its trailing slash is redirected to it, so relative links in
//! the page work.
//!
//! Bodies are read whole into memory (the library's HTTP responses carry
//! their body), so files larger than [`MAX_FILE`] are refused (403)
//! rather than loaded. The folder is trusted: whoever can write in it can
//! serve anything the server can read, as with any web server.

use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};

use syncws::{Request, Response};

/// Largest file served, in bytes: larger ones get 403.
pub const MAX_FILE: u64 = 32 << 20;

/// The files under one folder, served read-only.
#[derive(Debug, Clone)]
pub struct StaticFiles {
    /// The folder, with its symbolic links resolved.
    root: PathBuf,
}

/// Why a path was refused before touching the file system.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    /// `..`, an absolute path, a NUL byte: 403.
    Forbidden,
    /// A hidden segment or a malformed target: 404.
    NotFound,
}

impl StaticFiles {
    /// Serves the files under `dir`, which must be a folder.
    pub fn new(dir: &Path) -> std::io::Result<StaticFiles> {
        let root = dir.canonicalize()?;
        if !root.is_dir() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{} is not a folder", dir.display()),
            ));
        }
        Ok(StaticFiles { root })
    }

    /// The folder served, with its symbolic links resolved.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Answers `req`: the file, 301 to a folder's trailing slash, 403,
    /// 404, or 405 for methods other than `GET` and `HEAD`.
    pub fn serve(&self, req: &Request) -> Response {
        let head = match req.method.as_str() {
            "GET" => false,
            "HEAD" => true,
            _ => return Response::text(405, "only GET and HEAD\n").with_header("Allow", "GET, HEAD"),
        };
        let (path, query) = match req.path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (req.path.as_str(), None),
        };
        let relative = match relative_path(path) {
            Ok(r) => r,
            Err(Refusal::Forbidden) => return forbidden(),
            Err(Refusal::NotFound) => return not_found(),
        };
        let mut file = self.root.join(&relative);
        let Some(resolved) = self.inside(&file) else { return not_found_or_forbidden(&file) };
        file = resolved;
        if file.is_dir() {
            if !path.ends_with('/') {
                let location = match query {
                    Some(q) => format!("{path}/?{q}"),
                    None => format!("{path}/"),
                };
                return Response::text(301, "moved to the folder's slash\n").with_header("Location", location);
            }
            let index = file.join("index.html");
            match self.inside(&index) {
                Some(i) => file = i,
                None => return not_found_or_forbidden(&index),
            }
        }
        read(&file, head)
    }

    /// `path` with its links resolved, if it exists and lies under the root.
    fn inside(&self, path: &Path) -> Option<PathBuf> {
        let real = path.canonicalize().ok()?;
        real.starts_with(&self.root).then_some(real)
    }
}

/// 403 for a path that exists but resolves outside the root (a link out),
/// 404 for one that does not exist.
fn not_found_or_forbidden(path: &Path) -> Response {
    if path.canonicalize().is_ok() {
        forbidden()
    } else {
        not_found()
    }
}

fn forbidden() -> Response {
    Response::text(403, "forbidden\n")
}

fn not_found() -> Response {
    Response::text(404, "not found\n")
}

/// The request path as a relative path under the root: percent-decoded,
/// split on `/`, empty and `.` segments dropped.
fn relative_path(path: &str) -> Result<PathBuf, Refusal> {
    if !path.starts_with('/') {
        // `*`, or an absolute-form target (`http://host/...`).
        return Err(Refusal::NotFound);
    }
    let decoded = percent_decode(path).ok_or(Refusal::NotFound)?;
    if decoded.contains(&0) {
        return Err(Refusal::Forbidden);
    }
    // File names that are not UTF-8 are not served.
    let decoded = String::from_utf8(decoded).map_err(|_| Refusal::NotFound)?;
    let mut out = PathBuf::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => return Err(Refusal::Forbidden),
            s if s.starts_with('.') => return Err(Refusal::NotFound),
            s => out.push(s),
        }
    }
    Ok(out)
}

/// Decodes `%XX` escapes; `None` for a malformed one.
pub fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hi = (hex[0] as char).to_digit(16)?;
            let lo = (hex[1] as char).to_digit(16)?;
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

/// The file as a response (headers only for `HEAD`).
fn read(path: &Path, head: bool) -> Response {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => return io_refusal(path, &e),
    };
    let len = match file.metadata() {
        Ok(m) if m.is_file() => m.len(),
        Ok(_) => return not_found(),
        Err(e) => return io_refusal(path, &e),
    };
    if len > MAX_FILE {
        log::warn!("static: {} is {len} bytes, over the {MAX_FILE} served", path.display());
        return Response::text(403, "file too large for this server\n");
    }
    let content_type = content_type(path);
    let mut resp =
        Response::new(200).with_header("Content-Type", content_type).with_header("X-Content-Type-Options", "nosniff");
    if head {
        return resp.with_header("Content-Length", len.to_string());
    }
    let mut body = Vec::with_capacity(len as usize);
    // `take`: a file that grows while read is cut at the size checked.
    if let Err(e) = file.by_ref().take(MAX_FILE).read_to_end(&mut body) {
        return io_refusal(path, &e);
    }
    resp = resp.with_body(body, content_type);
    resp
}

fn io_refusal(path: &Path, e: &std::io::Error) -> Response {
    match e.kind() {
        std::io::ErrorKind::NotFound => not_found(),
        std::io::ErrorKind::PermissionDenied => forbidden(),
        _ => {
            log::warn!("static: reading {}: {e}", path.display());
            Response::text(500, "cannot read the file\n")
        }
    }
}

/// The `Content-Type` of the common web files, by extension.
pub fn content_type(path: &Path) -> &'static str {
    let ext = path.extension().and_then(OsStr::to_str).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" | "map" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        "md" => "text/markdown; charset=utf-8",
        "csv" => "text/csv; charset=utf-8",
        "xml" => "application/xml",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "ico" => "image/x-icon",
        "wasm" => "application/wasm",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "otf" => "font/otf",
        "pdf" => "application/pdf",
        "mp3" => "audio/mpeg",
        "ogg" => "audio/ogg",
        "wav" => "audio/wav",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_decoded_and_checked_before_the_file_system() {
        let ok = |p: &str| relative_path(p).unwrap();
        assert_eq!(ok("/"), PathBuf::new());
        assert_eq!(ok("/a/./b//c.html"), PathBuf::from("a/b/c.html"));
        assert_eq!(ok("/sp%20ace.txt"), PathBuf::from("sp ace.txt"));
        // An absolute path inside the request stays under the root.
        assert_eq!(ok("//etc/passwd"), PathBuf::from("etc/passwd"));
        for bad in ["/..", "/a/../../b", "/%2e%2e/x", "/%2E%2e%2fetc", "/a/..%2f..%2fb", "/x%00.html"] {
            assert_eq!(relative_path(bad), Err(Refusal::Forbidden), "{bad}");
        }
        for hidden in ["/.git/config", "/a/.env", "/%2egit", "*", "http://h/x", "/%zz"] {
            assert_eq!(relative_path(hidden), Err(Refusal::NotFound), "{hidden}");
        }
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type(Path::new("a/index.HTML")), "text/html; charset=utf-8");
        assert_eq!(content_type(Path::new("app.js")), "text/javascript; charset=utf-8");
        assert_eq!(content_type(Path::new("x.wasm")), "application/wasm");
        assert_eq!(content_type(Path::new("noext")), "application/octet-stream");
    }
}
