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

use super::http_fake::HttpFake;

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
    server: HttpFake,
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
            "id": format!("/subscriptions/{sub}/resourceGroups/dns-rg/providers/Microsoft.Network/dnszones/shop.example"),
            "properties": {"zoneType": "Public", "numberOfRecordSets": 2}}]}),
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
        let server = HttpFake::serve(|url| {
            *expected.base.lock().unwrap() = url.to_string();
            Router::new()
                .route("/{tenant}/oauth2/v2.0/token", post(token))
                .route("/subscriptions/{*path}", get(arm))
                .with_state(expected)
        });
        FakeAzure { server }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }
}
