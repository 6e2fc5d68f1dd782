//! The check on a URL that credentials will be sent to (Trellis's, with the
//! worker token; Supabase's, with the service-role key): https, or plain
//! http only to loopback unless insecure http is allowed.

use std::net::IpAddr;

use url::Url;

/// Parses `text` as a URL that credentials may be sent to; the problem, in
/// words, when it is none.
pub fn secure_url(text: &str, allow_insecure_http: bool) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("'{text}' is not a URL: {e}"))?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if allow_insecure_http || is_loopback(&url) => Ok(url),
        "http" => Err(format!(
            "refusing plain http:// to {}: credentials would cross the network in clear \
             (use https://, or --allow-insecure-http / TENDRIL_ALLOW_INSECURE_HTTP=true for a test network)",
            url.host_str().unwrap_or("?")
        )),
        other => Err(format!("'{other}' is not http or https")),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => name == "localhost",
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}
