//! A pull with registry credentials, spoken to Docker directly.
//!
//! Docker reads `X-Registry-Auth` as URL-safe base64 and, on a pull, silently drops a header
//! it cannot decode; bollard encodes it with the standard alphabet (its fix, PR #169, is not
//! merged). About one password in four then pulls anonymously and fails as "unauthorized"
//! for no visible reason. So credentialed pulls are one HTTP/1.0 request on the forwarded
//! Docker socket, with the header encoded as the docker CLI encodes it; HTTP/1.0 makes Docker
//! stream the progress without chunking and close when the pull is over.

use crate::secret::Secret;
use base64::Engine;
use std::path::Path;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Credentials for one pull.
pub struct PullAuth<'a> {
    pub user: &'a str,
    pub password: &'a Secret,
    /// The registry they are for (as cluster.yml's `url`).
    pub server: &'a str,
}

/// Why a credentialed pull failed.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The socket could not be used (the SSH link may be gone).
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Docker refused or the registry did (Docker's message).
    #[error("{0}")]
    Refused(String),
    /// Docker sent nothing for this long: the pull is abandoned (closing the request
    /// cancels it in Docker).
    #[error("no progress for {} s", .0.as_secs())]
    Stalled(std::time::Duration),
}

/// The `X-Registry-Auth` value: the JSON Docker expects, URL-safe base64 with padding.
pub fn auth_header(auth: &PullAuth<'_>) -> String {
    let json = serde_json::json!({
        "username": auth.user,
        "password": auth.password.expose(),
        "serveraddress": auth.server,
    });
    base64::engine::general_purpose::URL_SAFE.encode(json.to_string())
}

/// Percent-encodes a query value (everything but RFC 3986's unreserved characters).
fn query_value(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The request line and headers of a pull of `image` (`name:tag` or `name@digest`).
pub fn request(api_version: &str, image: &str, auth: &PullAuth<'_>) -> String {
    format!(
        "POST /v{api_version}/images/create?fromImage={} HTTP/1.0\r\nHost: docker\r\nX-Registry-Auth: {}\r\nContent-Length: 0\r\n\r\n",
        query_value(image),
        auth_header(auth)
    )
}

/// What Docker answered: `Ok` when the pull completed, else Docker's or the registry's
/// message. Docker reports failures that come before any progress with an error status and
/// `{"message": …}`, later ones as `{"error": …}` in the 200 stream.
pub fn outcome(response: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status: u16 = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let messages = body.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l.trim()).ok());
    if !(200..300).contains(&status) {
        let said = messages.filter_map(|v| v.get("message")?.as_str().map(str::to_string)).next();
        return Err(said.unwrap_or_else(|| match status {
            0 => "Docker sent no HTTP answer".to_string(),
            s => format!("Docker answered HTTP {s}"),
        }));
    }
    let mut complete = false;
    for v in messages {
        if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
            return Err(e.to_string());
        }
        complete |= v.get("status").and_then(|s| s.as_str()).is_some_and(|s| s.starts_with("Status:"));
    }
    // Docker ends every finished pull with "Status: Downloaded newer image…" or "…up to date".
    if complete { Ok(()) } else { Err("the pull ended without Docker saying it was complete".to_string()) }
}

/// Pulls `image` through the Docker socket at `socket`, speaking API `api_version`.
/// Docker streams progress all along a pull, so `silence` without a byte means it stalled.
pub async fn pull(
    socket: &Path,
    api_version: &str,
    image: &str,
    auth: &PullAuth<'_>,
    silence: std::time::Duration,
) -> Result<(), PullError> {
    let mut stream = tokio::net::UnixStream::connect(socket).await?;
    stream.write_all(request(api_version, image, auth).as_bytes()).await?;
    let mut response = Vec::new();
    let mut chunk = vec![0u8; 8192];
    loop {
        match tokio::time::timeout(silence, stream.read(&mut chunk)).await {
            Err(_) => return Err(PullError::Stalled(silence)),
            Ok(read) => match read? {
                0 => break,
                n => response.extend_from_slice(&chunk[..n]),
            },
        }
    }
    outcome(&response).map_err(|m| PullError::Refused(crate::secret::redact(&m, &[auth.password])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_docker_that_goes_silent_is_a_stalled_pull() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("docker.sock");
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        // Answers the headers and one progress line, then says nothing more.
        let server = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            conn.write_all(b"HTTP/1.0 200 OK\r\n\r\n{\"status\":\"Pulling\"}\r\n").await.unwrap();
            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
            drop(conn);
        });
        let password = Secret::new("p");
        let auth = PullAuth { user: "u", password: &password, server: "r" };
        let silence = std::time::Duration::from_millis(300);
        let r = pull(&socket, "1.41", "r/lab/etcd:v1", &auth, silence).await;
        assert!(matches!(r, Err(PullError::Stalled(d)) if d == silence), "{r:?}");
        server.abort();
    }

    #[test]
    fn the_auth_header_is_url_safe_base64_whatever_the_password() {
        // Standard base64 of this JSON has `+` or `/`: Docker would drop it.
        let password = Secret::new("ab>>>?cd~~~");
        let auth = PullAuth { user: "ci", password: &password, server: "10.77.0.1:5443" };
        let header = auth_header(&auth);
        assert!(!header.contains(['+', '/']), "{header}");
        let json = base64::engine::general_purpose::URL_SAFE.decode(&header).unwrap();
        let standard = base64::engine::general_purpose::STANDARD.encode(&json);
        assert!(standard.contains(['+', '/']), "bollard's encoding of it would be dropped: {standard}");
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"username": "ci", "password": "ab>>>?cd~~~", "serveraddress": "10.77.0.1:5443"})
        );
    }

    #[test]
    fn the_request_names_the_image_percent_encoded() {
        let password = Secret::new("p");
        let auth = PullAuth { user: "u", password: &password, server: "r" };
        let req = request("1.41", "10.77.0.1:5443/lab/etcd:v3.4.23", &auth);
        assert!(
            req.starts_with("POST /v1.41/images/create?fromImage=10.77.0.1%3A5443%2Flab%2Fetcd%3Av3.4.23 HTTP/1.0\r\n")
        );
        assert!(req.ends_with("Content-Length: 0\r\n\r\n"));
    }

    #[test]
    fn outcomes_of_a_pull() {
        let ok = b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{\"status\":\"Pulling from lab/etcd\"}\r\n{\"status\":\"Status: Downloaded newer image for r/lab/etcd:v1\"}\r\n";
        assert_eq!(outcome(ok), Ok(()));
        let denied = b"HTTP/1.0 500 Internal Server Error\r\n\r\n{\"message\":\"Head \\\"https://r/v2/lab/etcd/manifests/v1\\\": no basic auth credentials\"}\n";
        assert_eq!(
            outcome(denied),
            Err("Head \"https://r/v2/lab/etcd/manifests/v1\": no basic auth credentials".into())
        );
        let midway = b"HTTP/1.0 200 OK\r\n\r\n{\"status\":\"Pulling\"}\r\n{\"errorDetail\":{\"message\":\"unexpected EOF\"},\"error\":\"unexpected EOF\"}\r\n";
        assert_eq!(outcome(midway), Err("unexpected EOF".into()));
        assert!(outcome(b"HTTP/1.0 200 OK\r\n\r\n{\"status\":\"Pulling\"}\r\n").is_err(), "cut short");
        assert!(outcome(b"").is_err());
    }
}
