//! A fake of Google's STS token exchange, IAM Credentials impersonation, and
//! the Compute and Cloud DNS list APIs (no real GCP is reachable here). It
//! checks what the real ones check: the grant type, audience, subject token
//! type and value, the scope, and the bearer token of each call; lists come
//! in pages behind `nextPageToken`.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde_json::{json, Value};

use super::http_fake::HttpFake;

pub const FEDERATED_TOKEN: &str = "federated-access-token-abc123";
pub const SERVICE_ACCOUNT_TOKEN: &str = "ya29.impersonated-token-xyz789";
pub const AUDIENCE: &str = "//iam.googleapis.com/projects/42/locations/global/workloadIdentityPools/vintner/providers/tendril";

#[derive(Clone)]
struct Expected {
    subject: String,
}

pub struct FakeGcp {
    server: HttpFake,
}

fn reply(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

async fn exchange(
    State(expected): State<Expected>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or_default();
    let aws = field("subject_token_type") == "urn:ietf:params:aws:token-type:aws4_request";
    if field("grant_type") != "urn:ietf:params:oauth:grant-type:token-exchange"
        || field("requested_token_type") != "urn:ietf:params:oauth:token-type:access_token"
        || !(aws || field("subject_token_type") == "urn:ietf:params:oauth:token-type:jwt")
        || field("scope") != "https://www.googleapis.com/auth/cloud-platform"
    {
        return reply(
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_request",
            "error_description": "Invalid value for grant_type, requested_token_type, subject_token_type or scope."}),
        );
    }
    if field("audience") != AUDIENCE {
        return reply(
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_target",
            "error_description": "The target service indicated by the \"audience\" parameters is invalid."}),
        );
    }
    let subject_ok = if aws {
        aws_request_ok(field("subject_token"))
    } else {
        field("subject_token") == expected.subject
    };
    if !subject_ok {
        return reply(
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_grant",
            "error_description": "The audience in ID Token does not match the expected audience."}),
        );
    }
    reply(
        StatusCode::OK,
        json!({"access_token": FEDERATED_TOKEN, "issued_token_type":
        "urn:ietf:params:oauth:token-type:access_token", "token_type": "Bearer", "expires_in": 3600}),
    )
}

/// What Google's STS checks of an AWS subject token before it replays it:
/// a URL-encoded, signed STS GetCallerIdentity request bound to the audience.
/// (The signature itself is AWS's to check; no AWS STS is reachable here.)
fn aws_request_ok(token: &str) -> bool {
    let decoded: String = url::form_urlencoded::parse(format!("t={token}").as_bytes())
        .next()
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default();
    let Ok(request) = serde_json::from_str::<Value>(&decoded) else {
        return false;
    };
    let header = |name: &str| {
        request["headers"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|h| {
                h["key"]
                    .as_str()
                    .is_some_and(|k| k.eq_ignore_ascii_case(name))
            })
            .and_then(|h| h["value"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    let authorization = header("authorization");
    request["url"]
        == "https://sts.us-east-1.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15"
        && request["method"] == "POST"
        && header("host") == "sts.us-east-1.amazonaws.com"
        && header("x-goog-cloud-target-resource") == AUDIENCE
        && !header("x-amz-date").is_empty()
        && authorization.starts_with("AWS4-HMAC-SHA256 Credential=testing/")
        && authorization.contains("/us-east-1/sts/aws4_request")
        && authorization.contains("x-goog-cloud-target-resource")
}

async fn impersonate(headers: HeaderMap, Json(body): Json<Value>) -> Response {
    if bearer(&headers) != Some(FEDERATED_TOKEN) {
        return reply(
            StatusCode::UNAUTHORIZED,
            json!({"error": {"code": 401, "message":
            "Request had invalid authentication credentials.", "status": "UNAUTHENTICATED"}}),
        );
    }
    if body["scope"] != json!(["https://www.googleapis.com/auth/cloud-platform"]) {
        return reply(
            StatusCode::BAD_REQUEST,
            json!({"error": {"code": 400, "message": "Invalid scope"}}),
        );
    }
    reply(
        StatusCode::OK,
        json!({"accessToken": SERVICE_ACCOUNT_TOKEN, "expireTime": "2099-01-01T00:00:00Z"}),
    )
}

/// The APIs take the service account's token, or a federated token used
/// directly (no impersonation).
fn api_token_ok(headers: &HeaderMap) -> bool {
    matches!(
        bearer(headers),
        Some(SERVICE_ACCOUNT_TOKEN | FEDERATED_TOKEN)
    )
}

async fn compute(
    Path(path): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if !api_token_ok(&headers) {
        return reply(
            StatusCode::UNAUTHORIZED,
            json!({"error": {"code": 401, "message": "Invalid Credentials"}}),
        );
    }
    let link = |kind: &str, name: &str| {
        format!("https://www.googleapis.com/compute/v1/projects/shop-prod/{kind}/{name}")
    };
    let body = match (path.as_str(), query.get("pageToken").map(String::as_str)) {
        ("shop-prod/regions", None) => {
            json!({"items": [{"name": "europe-west1"}], "nextPageToken": "page-2"})
        }
        ("shop-prod/regions", Some("page-2")) => json!({"items": [{"name": "us-central1"}]}),
        ("shop-prod/global/networks", None) => {
            json!({"items": [
                {"name": "default", "autoCreateSubnetworks": true, "selfLink": link("global/networks", "default")},
                {"name": "shop-vpc", "autoCreateSubnetworks": false, "selfLink": link("global/networks", "shop-vpc")}]})
        }
        ("shop-prod/aggregated/subnetworks", None) => json!({"items": {
            "regions/europe-west1": {"subnetworks": [{"name": "shop-eu", "network": link("global/networks", "shop-vpc"),
                "region": link("regions", "europe-west1"), "ipCidrRange": "10.10.0.0/20"}]},
            "regions/us-central1": {"warning": {"code": "NO_RESULTS_ON_PAGE"}}}}),
        _ => {
            return reply(
                StatusCode::NOT_FOUND,
                json!({"error": {"code": 404, "message": "not found"}}),
            )
        }
    };
    reply(StatusCode::OK, body)
}

async fn dns(Path(project): Path<String>, headers: HeaderMap) -> Response {
    if !api_token_ok(&headers) || project != "shop-prod" {
        return reply(
            StatusCode::UNAUTHORIZED,
            json!({"error": {"code": 401, "message": "Invalid Credentials"}}),
        );
    }
    reply(
        StatusCode::OK,
        json!({"managedZones": [{"name": "shop", "dnsName": "shop.example.", "visibility": "public"},
                                {"name": "internal", "dnsName": "shop.internal.", "visibility": "private"}]}),
    )
}

impl FakeGcp {
    pub fn start(subject_token: &str) -> FakeGcp {
        let expected = Expected {
            subject: subject_token.into(),
        };
        let server = HttpFake::serve(|_| {
            Router::new()
                .route("/v1/token", post(exchange))
                .route(
                    "/v1/projects/-/serviceAccounts/{account}",
                    post(impersonate),
                )
                .route("/compute/v1/projects/{*path}", get(compute))
                .route("/dns/v1/projects/{project}/managedZones", get(dns))
                .with_state(expected)
        });
        FakeGcp { server }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }
}
