//! nginx (Debian's package) run by a test as a real peer: an HTTPS server with its own
//! certificate (for TLS passthrough and TLS to backends), or a stream server.

use std::net::SocketAddr;
use std::path::Path;

use tokio::net::TcpStream;

use super::dns::free_port;
use super::wait_until;

/// An nginx listening on 127.0.0.1 at `port`, stopped when dropped.
pub struct Nginx {
    child: std::process::Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Nginx {
    /// Writes `files` (name, contents) into nginx's own folder and starts it with the
    /// configuration `blocks` makes from that folder and the port (the `http {}` or
    /// `stream {}` blocks, with any `load_module` first; logs, pid and temporary files are
    /// kept in the folder).
    pub async fn start(files: &[(&str, &str)], blocks: impl FnOnce(&Path, u16) -> String) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        for (name, contents) in files {
            std::fs::write(dir.path().join(name), contents).unwrap();
        }
        let port = free_port();
        let conf = format!(
            "daemon off;
master_process off;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
{blocks}
events {{}}
",
            dir = dir.path().display(),
            blocks = blocks(dir.path(), port),
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        let child = std::process::Command::new("nginx")
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nginx (Debian's nginx package)");
        let nginx = Nginx {
            child,
            port,
            _dir: dir,
        };
        let addr = nginx.addr();
        wait_until("nginx listening", || async {
            TcpStream::connect(addr).await.is_ok()
        })
        .await;
        nginx
    }

    /// An HTTPS server presenting `cert_pem` (with `key_pem`) that answers every request with
    /// 200 and `nginx over TLS: SERVER_NAME CLIENT_SUBJECT`; with `client_ca`, a client
    /// certificate signed by it is required (nginx answers 400 without one).
    pub async fn https(cert_pem: &str, key_pem: &str, client_ca: Option<&str>) -> Nginx {
        let mut files = vec![("server.crt", cert_pem), ("server.key", key_pem)];
        if let Some(ca) = client_ca {
            files.push(("client-ca.crt", ca));
        }
        Nginx::start(&files, |dir, port| {
            let verify_client = if client_ca.is_some() {
                format!(
                    "ssl_verify_client on;\n    ssl_client_certificate {}/client-ca.crt;",
                    dir.display()
                )
            } else {
                String::new()
            };
            http_block(
                dir,
                &format!(
                    "server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {dir}/server.crt;
    ssl_certificate_key {dir}/server.key;
    {verify_client}
    location / {{
      default_type text/plain;
      return 200 \"nginx over TLS: $ssl_server_name $ssl_client_s_dn\\n\";
    }}
  }}",
                    dir = dir.display()
                ),
            )
        })
        .await
    }

    pub fn addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An `http {}` block holding `servers`, its logs off and temporary files in nginx's folder
/// `dir`.
pub fn http_block(dir: &Path, servers: &str) -> String {
    let dir = dir.display();
    format!(
        "http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  {servers}
}}
"
    )
}
