//! A fake of Microsoft Entra's token endpoint and of Azure Resource Manager
//! (no real Azure is reachable here). It checks what the real ones check: the
//! grant type, the client assertion type and value, the scope, the tenant,
//! the bearer token and the api-version; and answers in their shapes,
//! including a second page behind `nextLink`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde_json::{json, Value};

pub const ACCESS_TOKEN: &str = "arm-access-token-0123456789";

#[derive(Clone)]
struct Expected {
    tenant: String,
    client_id: String,
    assertion: String,
    subscription: String,
    base: Arc<Mutex<String>>,
}

pub struct FakeAzure {
    url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn reply(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

async fn token(
    State(expected): State<Expected>,
    Path(tenant): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or_default();
    if field("grant_type") != "client_credentials"
        || field("client_assertion_type")
            != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        || field("scope") != "https://management.azure.com/.default"
    {
        return reply(
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_request",
            "error_description": "AADSTS900144: The request body must contain the right grant and assertion type."}),
        );
    }
    if tenant != expected.tenant
        || field("client_id") != expected.client_id
        || field("client_assertion") != expected.assertion
    {
        return reply(
            StatusCode::UNAUTHORIZED,
            json!({"error": "invalid_client",
            "error_description": "AADSTS700213: No matching federated identity record found for presented assertion subject."}),
        );
    }
    reply(
        StatusCode::OK,
        json!({"token_type": "Bearer", "expires_in": 3599, "access_token": ACCESS_TOKEN}),
    )
}

async fn arm(
    State(expected): State<Expected>,
    Path(path): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let bearer = headers.get("authorization").and_then(|v| v.to_str().ok());
    if bearer != Some(&format!("Bearer {ACCESS_TOKEN}")) {
        return reply(
            StatusCode::UNAUTHORIZED,
            json!({"error": {"code": "InvalidAuthenticationToken",
            "message": "The access token is invalid."}}),
        );
    }
    if !query.contains_key("api-version") {
        return reply(
            StatusCode::BAD_REQUEST,
            json!({"error": {"code": "MissingApiVersionParameter",
            "message": "The api-version query parameter (?api-version=) is required for all requests."}}),
        );
    }
    let sub = &expected.subscription;
    let base = expected.base.lock().unwrap().clone();
    let network = format!("/subscriptions/{sub}/resourceGroups/net-rg/providers/Microsoft.Network");
    let body = match path.strip_prefix(sub.as_str()).unwrap_or("?") {
        "" => json!({"subscriptionId": sub, "displayName": "Vintner Test", "state": "Enabled"}),
        "/locations" => json!({"value": [{"name": "westeurope"}, {"name": "northeurope"}]}),
        "/providers/Microsoft.Network/virtualNetworks" if query.contains_key("page") => {
            json!({"value": [
            {"name": "spoke", "id": format!("{network}/virtualNetworks/spoke"), "location": "northeurope",
             "properties": {"addressSpace": {"addressPrefixes": ["10.2.0.0/16"]}, "subnets": []}}]})
        }
        "/providers/Microsoft.Network/virtualNetworks" => json!({"value": [
            {"name": "hub", "id": format!("{network}/virtualNetworks/hub"), "location": "westeurope",
             "properties": {"addressSpace": {"addressPrefixes": ["10.1.0.0/16"]}, "subnets": [
                {"name": "aks", "id": format!("{network}/virtualNetworks/hub/subnets/aks"),
                 "properties": {"addressPrefix": "10.1.1.0/24"}}]}}],
            "nextLink": format!("{base}/subscriptions/{sub}/providers/Microsoft.Network/virtualNetworks?api-version=2023-09-01&page=2")}),
        "/providers/Microsoft.Network/dnszones" => json!({"value": [{"name": "shop.example",
            "id": format!("/subscriptions/{sub}/resourceGroups/dns-rg/providers/Microsoft.Network/dnszones/shop.example")}]}),
        _ => {
            return reply(
                StatusCode::NOT_FOUND,
                json!({"error": {"code": "NotFound", "message": "no such path"}}),
            )
        }
    };
    reply(StatusCode::OK, body)
}

impl FakeAzure {
    pub fn start(tenant: &str, client_id: &str, assertion: &str, subscription: &str) -> FakeAzure {
        let expected = Expected {
            tenant: tenant.into(),
            client_id: client_id.into(),
            assertion: assertion.into(),
            subscription: subscription.into(),
            base: Arc::new(Mutex::new(String::new())),
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        *expected.base.lock().unwrap() = url.clone();
        let app = Router::new()
            .route("/{tenant}/oauth2/v2.0/token", post(token))
            .route("/subscriptions/{*path}", get(arm))
            .with_state(expected);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        FakeAzure {
            url,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        self.url.clone()
    }
}

impl Drop for FakeAzure {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
