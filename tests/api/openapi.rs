//! The OpenAPI document in the repository matches the routes the server has.

use audit_tests::test_app::spawn_app;
use serde_json::Value;

fn repository_document() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/audit-server/openapi.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `(path, [METHOD, ...])` for every documented operation, methods sorted.
fn documented_routes(document: &Value) -> Vec<(String, Vec<String>)> {
    document["paths"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(path, operations)| {
            let mut methods: Vec<String> = operations
                .as_object()
                .unwrap()
                .keys()
                .map(|method| method.to_uppercase())
                .collect();
            methods.sort();
            (path.clone(), methods)
        })
        .collect()
}

#[tokio::test]
async fn the_served_document_is_the_one_in_the_repository() {
    let app = spawn_app().await;

    let served: Value = app.get("/openapi.json").await.json().await.unwrap();

    assert_eq!(served, repository_document());
    assert_eq!(served["openapi"], "3.0.3");
}

#[tokio::test]
async fn every_documented_operation_exists_and_no_other_method_does() {
    let app = spawn_app().await;

    for (template, methods) in documented_routes(&repository_document()) {
        let path = template.replace("{name}", "nobody");
        for method in &methods {
            let request = app
                .http
                .request(method.parse().unwrap(), app.url(&path))
                .body(if method == "POST" { "[]" } else { "" });
            let response = request.send().await.unwrap();
            let status = response.status();
            // 404 from the route table says `not_found`; a route may answer 404 of
            // its own (an unknown token name) with another code.
            let text = response.text().await.unwrap();
            let code = serde_json::from_str::<Value>(&text).map(|body| body["error"].clone());
            let code = code.unwrap_or(Value::Null);
            assert!(
                status != 405 && !(status == 404 && code == "not_found"),
                "{method} {path} answered {status}"
            );
        }
        // A method the path does not have: DELETE, or PATCH where DELETE is one.
        let other = if methods.contains(&"DELETE".to_owned()) {
            "PATCH"
        } else {
            "DELETE"
        };
        let other = (app.http)
            .request(other.parse().unwrap(), app.url(&path))
            .send()
            .await
            .unwrap();
        assert_eq!(other.status(), 405, "{other:?} {path}");
        let allow = other.headers()["allow"].to_str().unwrap().to_owned();
        let mut allowed: Vec<String> = allow.split(", ").map(str::to_owned).collect();
        allowed.sort();
        assert_eq!(allowed, methods, "Allow of {path}");
    }
}

#[tokio::test]
async fn an_undocumented_path_is_404() {
    let app = spawn_app().await;

    assert_eq!(app.get("/api/events").await.status(), 404);
    assert_eq!(app.get("/admin").await.status(), 404);
}
