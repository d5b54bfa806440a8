//! TLS on the listeners and the HTTP clients, with certificates made here
//! (rcgen): syslog and Fluent forward over TLS from a rustls client, an
//! HTTP sink that presents a client certificate to an `http` source that
//! requires one, curl with and without that certificate, and the admin API
//! over HTTPS.

use crate::common::*;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

/// Sends `bytes` over TLS to 127.0.0.1:`port`, trusting `ca.crt`.
fn send_tls(dir: &Path, port: u16, bytes: &[u8]) {
    weir::install_tls_provider();
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(dir.join("ca.crt")).unwrap();
    use rustls::pki_types::pem::PemObject;
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        tls.write_all(bytes).await.unwrap();
        tls.shutdown().await.unwrap();
    });
}

fn curl(args: &[&str]) -> (bool, String) {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "20",
            "-H",
            "Content-Type: application/json",
        ])
        .args(args)
        .output()
        .expect("curl (Debian's package; scripts/test installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &stderr(&out);
    (out.status.success(), text)
}

#[test]
fn listeners_and_clients_speak_tls_with_certificates_made_here() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    crate::common::tls::certificates(d);
    let [api, syslog, forward, http] = [(); 4].map(|()| free_port());
    let out = d.join("out.jsonl");
    let server = r#"tls = { crt_file = "server.crt", key_file = "server.key" }"#;
    let alert = firing_alert("hook");
    let p = pipeline(
        d,
        &format!(
            r#"
[api]
address = "127.0.0.1:{api}"
{server}

[sources.syslog]
type = "syslog"
address = "127.0.0.1:{syslog}"
{server}

[sources.forward]
type = "fluent_forward"
address = "127.0.0.1:{forward}"
{server}

# Only clients with a certificate signed by ca.crt.
[sources.http]
type = "http"
address = "127.0.0.1:{http}"
tls = {{ crt_file = "server.crt", key_file = "server.key", ca_file = "ca.crt" }}

# Syslog goes on to the http source, over TLS with a client certificate.
[sinks.relay]
type = "http"
inputs = ["syslog"]
uri = "https://127.0.0.1:{http}/"
tls = {{ ca_file = "ca.crt", crt_file = "client.crt", key_file = "client.key" }}

# An alert whose webhook goes to the http source, with the certificate.
{alert}
[receivers.hook]
type = "webhook"
url = "https://127.0.0.1:{http}/"
tls = {{ ca_file = "ca.crt", crt_file = "client.crt", key_file = "client.key" }}

[sinks.out]
type = "file"
path = "{}"
inputs = ["forward", "http"]
"#,
            out.display()
        ),
    );
    let weir = start(&p, &[]);
    listening(&[api, syslog, forward, http]);
    let ca = d.join("ca.crt").display().to_string();
    let (crt, key) = (
        d.join("client.crt").display().to_string(),
        d.join("client.key").display().to_string(),
    );

    send_tls(
        d,
        syslog,
        b"<13>Oct 11 22:14:15 host app: syslog over tls\n",
    );
    let forward_msg = fluent_message("app", &[("message", "forward over tls")]);
    send_tls(d, forward, &forward_msg);
    let url = format!("https://127.0.0.1:{http}/");
    let body = r#"{"message":"curl with a client certificate"}"#;
    let (ok, text) = curl(&[
        "--cacert", &ca, "--cert", &crt, "--key", &key, "-d", body, &url,
    ]);
    assert!(ok && text.contains("\"events\":1"), "{text}");
    // Without a client certificate, or without trusting weir's CA, no.
    let (ok, text) = curl(&["--cacert", &ca, "-d", "{\"message\":\"no cert\"}", &url]);
    assert!(!ok, "{text}");
    let (ok, text) = curl(&["-d", "{\"message\":\"no ca\"}", &url]);
    assert!(!ok, "{text}");
    // Plain text to a TLS port is refused too.
    let mut plain = std::net::TcpStream::connect(("127.0.0.1", forward)).unwrap();
    let _ = plain.write_all(&forward_msg);

    eventually(30, "the events sent over TLS", || {
        let events = events_in(&out);
        [
            "syslog over tls",
            "forward over tls",
            "curl with a client certificate",
        ]
        .iter()
        .all(|m| events.iter().any(|e| e["message"] == *m))
            && events
                .iter()
                .any(|e| e["receiver"] == "hook" && e["status"] == "firing")
    });
    let events = events_in(&out);
    assert!(!events.iter().any(|e| e["message"] == "no cert"));
    assert!(!events.iter().any(|e| e["message"] == "no ca"));

    let (ok, text) = curl(&["--cacert", &ca, &format!("https://127.0.0.1:{api}/health")]);
    assert!(ok && text.contains("\"live\":true"), "{text}");
    let (ok, metrics) = curl(&["--cacert", &ca, &format!("https://127.0.0.1:{api}/metrics")]);
    assert!(ok, "{metrics}");
    let count = |component: &str| {
        metrics
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!(
                    "weir_component_failures_total{{component=\"{component}\",reason=\"tls\"}} "
                ))
            })
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    assert!(count("http") >= 2.0, "{metrics}");
    assert!(count("forward") >= 1.0, "{metrics}");
    drop(plain);
    stop(weir);
}
