//! Where the worker API is: `TRELLIS_URL` checked (https, or plain http to
//! loopback only unless allowed) and turned into the `/api` base.

use reqwest::Url;

use crate::settings::secure_url;

/// A bad `TRELLIS_URL`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UrlError(pub(super) String);

/// Checks `TRELLIS_URL` and returns the `/api` base (see [`secure_url`], in settings).
pub fn api_base(trellis_url: &str, allow_insecure_http: bool) -> Result<Url, UrlError> {
    let mut api = secure_url(trellis_url, allow_insecure_http).map_err(UrlError)?;
    if let Ok(mut path) = api.path_segments_mut() {
        path.pop_if_empty().push("api");
    }
    Ok(api)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_and_loopback_http_are_accepted() {
        assert_eq!(
            api_base("https://t.example.com", false).unwrap().as_str(),
            "https://t.example.com/api"
        );
        assert_eq!(
            api_base("https://t.example.com/base/", false)
                .unwrap()
                .as_str(),
            "https://t.example.com/base/api"
        );
        assert!(api_base("http://127.0.0.1:8080", false).is_ok());
        assert!(api_base("http://localhost:8080", false).is_ok());
        assert!(api_base("http://[::1]:8080", false).is_ok());
    }

    #[test]
    fn plain_http_elsewhere_is_refused_unless_allowed() {
        let error = api_base("http://trellis.internal", false).unwrap_err();
        assert!(
            error.to_string().contains("refusing plain http://"),
            "{error}"
        );
        assert!(api_base("http://trellis.internal", true).is_ok());
        assert!(api_base("ftp://trellis.internal", true).is_err());
    }
}
