//! TLS on the main listener (certificate reread on reload), and the operators'
//! surface on a listener of its own (`admin.listen`).

use std::path::{Path, PathBuf};

use audit_tests::test_app::{TestApp, event, spawn_app_with};
use serde_json::json;

/// A self-signed certificate for `localhost`, written as PEM files; returns its PEM.
fn write_certificate(cert_file: &Path, key_file: &Path) -> String {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let certificate = certified.cert.pem();
    std::fs::write(cert_file, &certificate).unwrap();
    std::fs::write(key_file, certified.key_pair.serialize_pem()).unwrap();
    certificate
}

/// A server whose main listener speaks TLS with a certificate made for the test.
struct TlsApp {
    app: TestApp,
    /// `https://localhost:port`, the name the certificate is for.
    https: String,
    /// The certificate's PEM.
    first: String,
    cert_file: PathBuf,
    key_file: PathBuf,
    /// Holds the files until the test ends.
    _directory: tempfile::TempDir,
}

async fn spawn_tls_app() -> TlsApp {
    let directory = tempfile::tempdir().unwrap();
    let cert_file = directory.path().join("cert.pem");
    let key_file = directory.path().join("key.pem");
    let first = write_certificate(&cert_file, &key_file);
    let app = spawn_app_with(|settings| {
        settings.tls.cert_file = Some(cert_file.clone());
        settings.tls.key_file = Some(key_file.clone());
    })
    .await;
    let https = app.address.replace("http://127.0.0.1", "https://localhost");
    TlsApp {
        app,
        https,
        first,
        cert_file,
        key_file,
        _directory: directory,
    }
}

/// A client that trusts only `certificate`, with no connection kept between calls.
fn client_trusting(certificate: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(certificate.as_bytes()).unwrap())
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

#[tokio::test]
async fn the_main_listener_speaks_tls_and_a_reload_rereads_the_certificate() {
    let TlsApp {
        app,
        https,
        first,
        cert_file,
        key_file,
        _directory,
    } = spawn_tls_app().await;
    let trusting_first = client_trusting(&first);

    let health = trusting_first
        .get(format!("{https}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let post = (trusting_first.post(format!("{https}/api/event")))
        .json(&json!([event("a", json!(1))]))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 201);
    assert!(
        app.http.get(app.url("/health")).send().await.is_err(),
        "plain HTTP answered"
    );

    // A renewed certificate in the same files: new connections get it after a reload.
    let second = write_certificate(&cert_file, &key_file);
    let trusting_second = client_trusting(&second);
    assert!(
        trusting_second
            .get(format!("{https}/health"))
            .send()
            .await
            .is_err()
    );
    let reload = trusting_first
        .post(format!("{https}/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(reload.status(), 200);
    let renewed = trusting_second
        .get(format!("{https}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(renewed.status(), 200);
    // A new client: the first one may resume its TLS session without a certificate.
    let new_client = client_trusting(&first);
    assert!(
        new_client
            .get(format!("{https}/health"))
            .send()
            .await
            .is_err()
    );

    // The metrics name the scheme the requests came in on.
    let metrics = trusting_second
        .get(format!("{https}/metrics"))
        .send()
        .await
        .unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics.contains(
            r#"http_requests_total{method="POST",path_template="/api/event",scheme="https"} 1"#
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_broken_certificate_is_refused_by_a_reload_and_the_old_one_stays() {
    // `_app` keeps the server's database until the test ends.
    let TlsApp {
        app: _app,
        https,
        first,
        key_file,
        _directory,
        ..
    } = spawn_tls_app().await;
    let client = client_trusting(&first);
    // A key that is not the certificate's.
    let other = rcgen::KeyPair::generate().unwrap();
    std::fs::write(&key_file, other.serialize_pem()).unwrap();

    let reload = client.post(format!("{https}/reload")).send().await.unwrap();

    assert_eq!(reload.status(), 422);
    assert_eq!(
        client
            .get(format!("{https}/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn with_admin_listen_the_operators_surface_moves_to_its_own_listener() {
    let app =
        spawn_app_with(|settings| settings.admin.listen = Some("127.0.0.1:0".to_owned())).await;
    let operators = app.operators_address.clone().unwrap();
    let get = |url: String| {
        let http = app.http.clone();
        async move { http.get(url).send().await.unwrap().status().as_u16() }
    };

    for path in ["/metrics", "/admin/tokens"] {
        assert_eq!(get(app.url(path)).await, 404, "{path} on the main listener");
        assert_eq!(get(format!("{operators}{path}")).await, 200, "{path}");
    }
    let reload_main = app.http.post(app.url("/reload")).send().await.unwrap();
    assert_eq!(reload_main.status(), 404);
    let reload = app
        .http
        .post(format!("{operators}/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(reload.status(), 200);
    assert_eq!(app.post_one_event().await, 201);
    assert_eq!(get(app.url("/ready")).await, 200);
    assert_eq!(get(format!("{operators}/api/event")).await, 404);
    assert_eq!(get(format!("{operators}/health")).await, 200);
}
