//! The listening socket: its backlog holds a burst of connections.

use std::process::Command;

use audit_tests::test_app::spawn_app_with;

/// The backlog of the socket listening on `port`, as `ss` reports it (its Send-Q).
fn listen_backlog(port: u16) -> u32 {
    let output = Command::new("ss")
        .args(["-Hltn", &format!("sport = :{port}")])
        .output()
        .expect("ss (iproute2) runs");
    let text = String::from_utf8(output.stdout).unwrap();
    let columns: Vec<&str> = text.split_whitespace().collect();
    columns[2]
        .parse()
        .unwrap_or_else(|_| panic!("ss said {text:?}"))
}

fn somaxconn() -> u32 {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn the_listener_queues_http_backlog_connections_capped_by_somaxconn() {
    let app = spawn_app_with(|settings| settings.http.backlog = 2048).await;
    let port: u16 = app.address.rsplit(':').next().unwrap().parse().unwrap();

    let backlog = listen_backlog(port);

    assert_eq!(backlog, 2048.min(somaxconn()));
}
